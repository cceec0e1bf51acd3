"""The doctor reads config.toml where the toolkit screen and CLI find it (one lookup,
``locate_config``, resolved inside --root), and its "unprivileged-envvar" finding."""

from __future__ import annotations

from pathlib import Path

from gpudock.doctor import gather, run_checks
from gpudock.doctor.finding import Evidence
from gpudock.host.root import HostRoot
from gpudock.toolkit import config as tc
from helpers import kernelroot as K

CFG = "/etc/nvidia-container-runtime/config.toml"


def _root(tmp_path: Path) -> Path:
    root = tmp_path / "host"
    K.kernel(root, "535.129.03")
    return root


def test_doctor_and_toolkit_agree_on_the_override(tmp_path):
    root = _root(tmp_path)
    K.write(root, CFG, '[nvidia-container-runtime]\nmode = "legacy"\n')
    K.write(root, "/opt/ctk.toml", '[nvidia-container-runtime]\nmode = "cdi"\n')
    env = {"NVIDIA_CTK_CONFIG_FILE_PATH": "/opt/ctk.toml"}
    facts = gather(HostRoot(root), use_docker=False, environ=env)
    loc = tc.locate_config(root=str(root), environ=env)
    assert facts.toolkit_config.path == loc.host_path == "/opt/ctk.toml"
    assert facts.toolkit_config_source == "NVIDIA_CTK_CONFIG_FILE_PATH"
    f = {x.id: x for x in run_checks(facts)}["cdi-spec-stale"]
    assert [e.value for e in f.evidence if e.source == "/opt/ctk.toml"] == ["cdi"]
    facts = gather(HostRoot(root), use_docker=False, environ={})
    assert (
        facts.toolkit_config.path == CFG and facts.toolkit_config.parsed["nvidia-container-runtime"]["mode"] == "legacy"
    )


def test_doctor_config_symlink_resolves_inside_the_root(tmp_path):
    root = _root(tmp_path)
    outside = tmp_path / "outside.toml"
    outside.write_text('[nvidia-container-runtime]\nmode = "cdi"\n')
    link = root / CFG.lstrip("/")
    link.parent.mkdir(parents=True)
    link.symlink_to(str(outside))
    facts = gather(HostRoot(root), use_docker=False, environ={})
    assert facts.toolkit_config.text is None  # the host's own file at that path: not there
    K.write(root, str(outside), '[nvidia-container-runtime]\nmode = "legacy"\n')
    facts = gather(HostRoot(root), use_docker=False, environ={})
    assert facts.toolkit_config.parsed == {"nvidia-container-runtime": {"mode": "legacy"}}


# -- unprivileged-envvar --------------------------------------------------------------------------------

HARDENED = (
    "accept-nvidia-visible-devices-envvar-when-unprivileged = false\n"
    "#accept-nvidia-visible-devices-as-volume-mounts = false\n\n[nvidia-container-cli]\nload-kmods = true\n"
)


def _inspect(name, *, env=(), runtime="runc", requests=None, privileged=False, cap_add=None, mounts=()):
    """A running container as 'docker inspect' gives it (the fields the checks read)."""
    return {
        "Id": f"{name:0<64}"[:64],
        "Name": f"/{name}",
        "State": {"Running": True, "Pid": 4242},
        "Config": {"Env": ["PATH=/usr/bin", *env]},
        "Mounts": list(mounts),
        "HostConfig": {
            "Runtime": runtime,
            "Privileged": privileged,
            "CapAdd": cap_add,
            "Devices": [],
            "DeviceRequests": requests,
        },
    }


GPUS_ALL = [{"Driver": "", "Count": -1, "DeviceIDs": None, "Capabilities": [["gpu"]], "Options": {}}]


class FakeEngine:
    """The four Engine API calls gather_docker makes, answering with inspect dicts."""

    def __init__(self, containers):
        self._c = {c["Id"]: c for c in containers}

    def info(self):
        return {
            "Runtimes": {"runc": {"path": "runc"}, "nvidia": {"path": "/usr/bin/nvidia-container-runtime"}},
            "DefaultRuntime": "runc",
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": "2",
        }

    def containers(self, filters=None):
        return [{"Id": i} for i in self._c]

    def inspect_container(self, cid):
        return self._c[cid]

    def images(self):
        return []


def _unpriv(root, containers=None, environ=None):
    engine = FakeEngine(containers) if containers is not None else None
    facts = gather(HostRoot(root), None, engine, use_docker=containers is not None, environ=environ or {})
    return facts, {f.id: f for f in run_checks(facts)}["unprivileged-envvar"]


def test_unprivileged_default_is_ok(tmp_path):
    root = _root(tmp_path)
    _, f = _unpriv(root)
    assert f.severity == "ok" and f.evidence[0].value == "true (default)"
    K.write(root, CFG, "#accept-nvidia-visible-devices-envvar-when-unprivileged = true\n")
    _, f = _unpriv(root, [_inspect("train", env=["NVIDIA_VISIBLE_DEVICES=0"], runtime="nvidia")])
    assert f.severity == "ok"
    assert f.evidence[0].line.startswith("#accept-nvidia-visible-devices-envvar-when-unprivileged = true  (commented")


def test_unprivileged_false_names_the_containers_that_got_no_gpu(tmp_path):
    root = _root(tmp_path)
    K.write(root, CFG, HARDENED)
    containers = [
        _inspect("train", env=["NVIDIA_VISIBLE_DEVICES=0,1"], runtime="nvidia"),  # runtime + env var
        _inspect("infer", requests=GPUS_ALL),  # --gpus all
        _inspect("admin", env=["NVIDIA_VISIBLE_DEVICES=all"], runtime="nvidia", privileged=True),
        _inspect("capped", requests=GPUS_ALL, cap_add=["SYS_ADMIN"]),  # CAP_SYS_ADMIN: privileged for the hook
        _inspect("web", env=["NVIDIA_VISIBLE_DEVICES=all"]),  # runc: the variable does nothing anyway
        _inspect("void", env=["NVIDIA_VISIBLE_DEVICES=void"], runtime="nvidia"),
    ]
    _, f = _unpriv(root, containers)
    assert f.severity == "error", f.summary
    assert f.data["containers"] == ["train", "infer"]
    assert f.evidence[0] == Evidence(CFG, "accept-nvidia-visible-devices-envvar-when-unprivileged = false", "false")
    lines = {e.source: (e.line, e.value) for e in f.evidence}
    assert lines["docker inspect train"] == (
        "Privileged=False CapAdd=[] DeviceRequests=0 NVIDIA_VISIBLE_DEVICES=0,1",
        "0,1",
    )
    assert lines["docker inspect infer"][1] == "count=all"
    assert "docker inspect admin" not in lines and "docker inspect capped" not in lines
    assert f"accept-nvidia-visible-devices-envvar-when-unprivileged = true' in {CFG}" in f.fix
    assert "nvidia.com/gpu=0" in f.fix


def test_unprivileged_false_with_nobody_affected_or_no_engine(tmp_path):
    root = _root(tmp_path)
    K.write(root, CFG, HARDENED)
    _, f = _unpriv(root, [_inspect("admin", requests=GPUS_ALL, privileged=True)])
    assert f.severity == "warning" and "No running container is affected now" in f.summary
    _, f = _unpriv(root)  # the engine not asked: the config alone
    assert f.severity == "warning" and "Running containers were not checked" in f.summary
    # volume-mount device lists accepted: a deliberate setup (the device plugin's volume-mounts)
    K.write(
        root,
        CFG,
        HARDENED.replace(
            "#accept-nvidia-visible-devices-as-volume-mounts = false",
            "accept-nvidia-visible-devices-as-volume-mounts = true",
        ),
    )
    _, f = _unpriv(root)
    assert f.severity == "info"
    listed = _inspect(
        "pod",
        requests=GPUS_ALL,
        mounts=[{"Type": "bind", "Source": "/dev/null", "Destination": "/var/run/nvidia-container-devices/GPU-0a1b"}],
    )
    _, f = _unpriv(root, [listed, _inspect("train", requests=GPUS_ALL)])
    assert f.severity == "error" and f.data["containers"] == ["train"]


def test_unprivileged_reads_the_overridden_config(tmp_path):
    root = _root(tmp_path)
    K.write(root, "/opt/ctk.toml", HARDENED)
    _, f = _unpriv(root, environ={"NVIDIA_CTK_CONFIG_FILE_PATH": "/opt/ctk.toml"})
    assert f.severity == "warning" and f.evidence[0].source == "/opt/ctk.toml"
    assert ("$NVIDIA_CTK_CONFIG_FILE_PATH", "/opt/ctk.toml") in [(e.source, e.value) for e in f.evidence]
    _, f = _unpriv(root)
    assert f.severity == "ok"


def test_unprivileged_invalid_config_is_info(tmp_path):
    root = _root(tmp_path)
    K.write(root, CFG, "accept-nvidia-visible-devices-envvar-when-unprivileged = \n")
    _, f = _unpriv(root)
    assert f.severity == "info" and "invalid TOML" in f.summary


def test_the_doctor_watches_the_config_file_the_lookup_finds(tmp_path):
    from gpudock.doctor import fingerprint

    root = _root(tmp_path)
    K.write(root, "/opt/ctk.toml", '[nvidia-container-runtime]\nmode = "cdi"\n')
    env = {"NVIDIA_CTK_CONFIG_FILE_PATH": "/opt/ctk.toml"}
    before = fingerprint(str(root), environ=env)
    assert fingerprint(str(root), environ=env) == before
    K.write(root, "/opt/ctk.toml", '[nvidia-container-runtime]\nmode = "legacy"\n# edited\n')
    assert fingerprint(str(root), environ=env) != before  # an edit of the override re-checks
    assert fingerprint(str(root), environ={}) == fingerprint(str(root), environ={})


def test_daemon_json_and_other_edited_files_resolve_inside_the_root(tmp_path):
    root = _root(tmp_path)
    K.write(root, "/srv/docker/daemon.json", "{}\n")
    (root / "etc/docker").mkdir(parents=True, exist_ok=True)
    (root / "etc/docker/daemon.json").symlink_to("/srv/docker/daemon.json")  # absolute, as on the host
    assert tc.host_file(str(root), "/etc/docker/daemon.json") == str(root / "srv/docker/daemon.json")
    assert tc.host_file("/", "/etc/hostname") == "/etc/hostname"
