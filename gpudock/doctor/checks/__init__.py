"""The doctor's checks: pure functions ``HostFacts -> Finding``, one module per family.

``CHECKS`` is the order findings are shown in (the driver first: most other findings follow from
it). :func:`run_checks` runs them all; a check that raises becomes an ``info`` finding that says
so, because one bug in one check must not hide the other findings during an outage.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from gpudock.doctor.checks import devices, docker, driver, health, images
from gpudock.doctor.facts import HostFacts
from gpudock.doctor.finding import Evidence, Finding

log = logging.getLogger(__name__)

Check = Callable[[HostFacts], Finding]

CHECKS: tuple[tuple[str, Check], ...] = (
    ("nvml-init", driver.nvml_init),
    ("driver-library-mismatch", driver.driver_library_mismatch),
    ("stray-driver-libraries", driver.stray_driver_libraries),
    ("reboot-pending", driver.reboot_pending),
    ("nouveau", devices.nouveau),
    ("device-nodes", devices.device_nodes),
    ("uvm", devices.uvm),
    ("gpu-lost", devices.gpu_lost),
    ("xid", health.xid),
    ("persistence", health.persistence),
    ("fabric-manager", health.fabric_manager),
    ("container-runtime", docker.container_runtime),
    ("unprivileged-envvar", docker.unprivileged_envvar),
    ("cgroup-device-loss", docker.cgroup_device_loss),
    ("cgroup-v2-old-toolkit", docker.cgroup_v2_old_toolkit),
    ("cdi-spec-stale", docker.cdi_spec_stale),
    ("cuda-compat", images.cuda_compat),
)

CHECK_IDS: tuple[str, ...] = tuple(i for i, _ in CHECKS)


def run_checks(facts: HostFacts) -> tuple[Finding, ...]:
    out = []
    for check_id, fn in CHECKS:
        try:
            out.append(fn(facts))
        except Exception as e:  # noqa: BLE001 - see module docstring
            log.debug("check %s failed", check_id, exc_info=True)
            out.append(
                Finding(
                    check_id,
                    "info",
                    f"{check_id}: the check itself failed",
                    f"gpudock could not evaluate this check: {type(e).__name__}: {e}",
                    (Evidence("gpudock", f"{type(e).__name__}: {e}", None),),
                    "Report this as a gpudock bug with 'gpudock doctor --json' output attached.",
                )
            )
    return tuple(out)
