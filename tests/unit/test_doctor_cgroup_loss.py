"""cgroup-device-loss on inspect dicts: who loses GPUs at the next daemon-reload, and who does not."""

from __future__ import annotations

from gpudock.doctor.checks import docker as dchecks
from gpudock.doctor.facts import HostFacts
from gpudock.host.root import HostRoot

INFO = {
    "CgroupDriver": "systemd",
    "CgroupVersion": "2",
    "DefaultRuntime": "runc",
    "Runtimes": {"runc": {"path": "runc"}, "nvidia": {"path": "nvidia-container-runtime"}},
}


def _inspect(name: str, *, privileged: bool = False, env: str | None = "0", devices=()) -> dict:
    return {
        "Id": name * 4,
        "Name": "/" + name,
        "State": {"Running": True, "Status": "running"},
        "Config": {"Env": [f"NVIDIA_VISIBLE_DEVICES={env}"] if env else [], "Image": "img"},
        "HostConfig": {"Runtime": "nvidia", "Privileged": privileged, "Devices": list(devices), "DeviceRequests": None},
    }


def _facts(tmp_path, *containers) -> HostFacts:
    f = HostFacts(root=HostRoot(str(tmp_path)))
    f.docker_checked = True
    f.docker_info = INFO
    f.containers = tuple(containers)
    return f


def test_hook_only_containers_are_at_risk_and_privileged_ones_are_not(tmp_path):
    f = _facts(tmp_path, _inspect("envonly"), _inspect("priv", privileged=True))
    finding = dchecks.cgroup_device_loss(f)
    assert finding.severity == "warning"
    assert finding.data["containers"] == ["envonly"]


def test_only_privileged_containers_is_no_risk(tmp_path):
    finding = dchecks.cgroup_device_loss(_facts(tmp_path, _inspect("priv", privileged=True)))
    assert finding.severity == "ok", finding.summary
    assert "no running container depends on the hook alone" in finding.summary
