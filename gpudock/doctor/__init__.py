"""The doctor: live troubleshooting of driver/library mismatches and the other known GPU-container
failures (failures.md), from the host alone.

Plain Python, no Textual: ``gather`` reads the host once (:mod:`gpudock.doctor.facts`), the checks
are pure functions of those facts (:mod:`gpudock.doctor.checks`), and :func:`diagnose` does both.
The CLI (``gpudock doctor``) and the diagnostics screen are thin layers over :func:`diagnose`.
"""

from __future__ import annotations

import os

from gpudock.doctor.checks import CHECK_IDS, CHECKS, run_checks
from gpudock.doctor.facts import HostFacts, gather
from gpudock.doctor.finding import SEVERITIES, Evidence, Finding, severity_rank

__all__ = [
    "CHECK_IDS",
    "CHECKS",
    "Evidence",
    "Finding",
    "HostFacts",
    "SEVERITIES",
    "diagnose",
    "gather",
    "run_checks",
    "severity_rank",
    "worst",
    "report_json",
    "fingerprint",
    "WATCHED",
]

# Files whose change means "the host changed under us": a driver (re)load, an ldconfig run after a
# package install, a Docker config edit. Cheap to stat every few seconds.
WATCHED = (
    "/proc/driver/nvidia/version",
    "/sys/module/nvidia/version",
    "/etc/ld.so.cache",
    "/etc/docker/daemon.json",
    "/etc/nvidia-container-runtime/config.toml",
)


def diagnose(root="/", nvml_session=None, docker=None, **kw) -> tuple[HostFacts, tuple[Finding, ...]]:
    """Gather the facts and run every check: (facts, findings in CHECKS order)."""
    facts = gather(root, nvml_session, docker, **kw)
    return facts, run_checks(facts)


def worst(findings) -> str:
    return max((f.severity for f in findings), key=severity_rank, default="ok")


def report_json(facts: HostFacts, findings) -> dict:
    counts = {s: 0 for s in SEVERITIES}
    for f in findings:
        counts[f.severity] += 1
    return {
        "root": facts.root.root,
        "taken_at": facts.taken_at,
        "worst": worst(findings),
        "counts": counts,
        "findings": [f.to_json() for f in findings],
    }


def fingerprint(root, paths=WATCHED, environ=None) -> tuple:
    """(mtime_ns, inode, size) or None per watched file: equal fingerprints mean nothing to re-check.
    A reloaded module gives /proc/driver/nvidia/version a new inode; ldconfig replaces the cache.
    With the default paths, config.toml is also watched where the toolkit's lookup finds it
    (``$NVIDIA_CTK_CONFIG_FILE_PATH`` or ``$XDG_CONFIG_HOME`` may put it elsewhere)."""
    from gpudock.host.root import HostRoot
    from gpudock.toolkit.config import locate_config

    root = root if isinstance(root, HostRoot) else HostRoot(root)
    out = []

    def add(stat) -> None:
        try:
            st = stat()
            out.append((st.st_mtime_ns, st.st_ino, st.st_size))
        except (OSError, ValueError):
            out.append(None)

    for p in paths:
        add(lambda p=p: root.stat(p))
    if paths is WATCHED:
        located = locate_config(root=root, environ=environ).path
        add(lambda: os.stat(located))
    return tuple(out)
