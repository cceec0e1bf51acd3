"""The doctor against one test root per failure: real gcc-built driver libraries, real caches from
ldconfig -r, procfs files in their real layouts, device nodes from mknod, a gcc-built nvidia.ko.
Each test checks the finding id, its severity and its evidence."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gpudock.doctor import gather, run_checks
from gpudock.doctor.checks import CHECK_IDS
from gpudock.host.root import HostRoot
from helpers import kernelroot as K
from helpers.libroot import make_driver_root

LIB = "/usr/lib/x86_64-linux-gnu"
OLD = "/usr/lib64/nvidia"


def by_id(findings):
    return {f.id: f for f in findings}


def ev_values(finding, source):
    return [e.value for e in finding.evidence if e.source == source]


def healthy(tmp_path: Path, version="535.129.03", flavor="proprietary") -> Path:
    root = tmp_path / "host"
    make_driver_root(root, {version: [LIB]})
    K.kernel(root, version, flavor=flavor)
    K.gpu(root, "0000:3b:00.0", 0)
    K.gpu(root, "0000:86:00.0", 1, uuid="GPU-ffffffff-0000-1111-2222-333344445555")
    K.nodes(root, minors=(0, 1))
    K.module_ko(root, version)
    return root


def run(root):
    facts = gather(HostRoot(root), None, None, use_docker=False)
    return facts, by_id(run_checks(facts))


def test_every_check_runs_and_has_evidence(tmp_path):
    _, fs = run(healthy(tmp_path))
    assert list(fs) == list(CHECK_IDS)
    for f in fs.values():
        assert f.evidence, f.id
        json.dumps(f.to_json())


def test_healthy_root_is_ok(tmp_path):
    _, fs = run(healthy(tmp_path))
    for fid in (
        "driver-library-mismatch",
        "stray-driver-libraries",
        "uvm",
        "device-nodes",
        "nouveau",
        "reboot-pending",
        "gpu-lost",
    ):
        assert fs[fid].severity == "ok", (fid, fs[fid].summary)
    assert "535.129.03" in ev_values(fs["driver-library-mismatch"], "/proc/driver/nvidia/version")


@pytest.mark.parametrize("flavor", ["proprietary", "open"])
def test_both_version_file_layouts(tmp_path, flavor):
    facts, fs = run(healthy(tmp_path, "555.42.06", flavor))
    assert facts.driver.version == "555.42.06" and facts.driver.flavor == flavor
    assert fs["driver-library-mismatch"].severity == "ok"


def test_mismatch_after_upgrade_says_reboot_pending(tmp_path):
    root = tmp_path / "host"
    make_driver_root(root, {"535.129.03": [LIB]})
    K.kernel(root, "535.104.05")  # the old module is still in memory
    K.gpu(root, "0000:3b:00.0", 0)
    K.nodes(root)
    ko = K.module_ko(root, "535.129.03")  # packages already replaced the module on disk
    _, fs = run(root)
    f = fs["driver-library-mismatch"]
    assert f.severity == "error"
    assert "reboot or module reload is pending" in f.summary
    assert f.data["pending_reboot"] is True
    assert ev_values(f, "/proc/driver/nvidia/version") == ["535.104.05"]
    assert ev_values(f, "/sys/module/nvidia/version") == ["535.104.05"]
    cache = [e for e in f.evidence if e.source == "/etc/ld.so.cache"]
    assert {e.value for e in cache} == {"535.129.03"}
    assert any("libnvidia-ml.so.1" in e.line and e.line.endswith("libnvidia-ml.so.535.129.03") for e in cache)
    assert any("libcuda.so.1" in e.line for e in cache)
    assert ev_values(f, ko) == ["535.129.03"]
    assert "Reboot" in f.fix
    rp = fs["reboot-pending"]
    assert rp.severity == "warning" and "535.129.03" in rp.summary


def test_mismatch_without_pending_reboot(tmp_path):
    root = tmp_path / "host"
    make_driver_root(root, {"535.129.03": [LIB]})
    K.kernel(root, "535.104.05")
    K.module_ko(root, "535.104.05")
    _, fs = run(root)
    f = fs["driver-library-mismatch"]
    assert f.severity == "error" and f.data["pending_reboot"] is False
    assert "pending" not in f.title


def test_stray_old_install_picked_by_loader(tmp_path):
    # An old 470 install in /usr/lib64/nvidia, listed first in ld.so.conf: the loader picks it.
    root = tmp_path / "host"
    make_driver_root(root, {"470.57.02": [OLD], "535.129.03": [LIB]})
    K.kernel(root, "535.129.03")
    K.module_ko(root, "535.129.03")
    _, fs = run(root)
    s = fs["stray-driver-libraries"]
    assert s.severity == "error"
    assert set(s.data["versions"]) == {"470.57.02", "535.129.03"}
    assert "470.57.02 in /usr/lib64/nvidia" in s.summary and f"535.129.03 in {LIB}" in s.summary
    assert {e.value for e in s.evidence} >= {"470.57.02", "535.129.03"}
    assert any(e.line.startswith("libnvidia-ml.so.1") and "/usr/lib64/nvidia/" in e.line for e in s.evidence)
    m = fs["driver-library-mismatch"]
    assert m.severity == "error" and m.data["pending_reboot"] is False
    assert "shadows" in m.summary
    assert f"{LIB}/libnvidia-ml.so.535.129.03" in [e.line for e in m.evidence]


def test_stray_old_install_not_picked_is_a_warning(tmp_path):
    root = tmp_path / "host"
    make_driver_root(root, {"535.129.03": [LIB], "470.57.02": [OLD]})
    K.kernel(root, "535.129.03")
    _, fs = run(root)
    assert fs["driver-library-mismatch"].severity == "ok"
    s = fs["stray-driver-libraries"]
    assert s.severity == "warning"
    assert "/usr/lib64/nvidia" in s.summary


def test_dangling_link_is_listed_with_its_directory(tmp_path):
    root = tmp_path / "host"
    make_driver_root(root, {"535.129.03": [LIB]})
    K.kernel(root, "535.129.03")
    os.unlink(root / LIB.lstrip("/") / "libnvidia-cfg.so.535.129.03")
    _, fs = run(root)
    s = fs["stray-driver-libraries"]
    assert s.severity == "warning"
    assert s.data["dangling"] == [f"{LIB}/libnvidia-cfg.so.1"]
    assert f"dangling link {LIB}/libnvidia-cfg.so.1" in s.summary
    assert ev_values(s, f"{LIB}/libnvidia-cfg.so.1") == [None]


def test_missing_uvm(tmp_path):
    root = tmp_path / "host"
    make_driver_root(root, {"535.129.03": [LIB]})
    K.kernel(root, "535.129.03", modules=("nvidia", "nvidia_modeset"), uvm_major=None)
    K.gpu(root, "0000:3b:00.0", 0)
    K.nodes(root, uvm_major=None)
    _, fs = run(root)
    f = fs["uvm"]
    assert f.severity == "error" and f.title == "nvidia_uvm is not loaded"
    assert f.evidence[0].source == "/proc/modules" and f.evidence[0].value == "not loaded"
    assert "modprobe nvidia-uvm" in f.fix


def test_uvm_node_with_stale_major(tmp_path):
    root = healthy(tmp_path)
    K.node(root, "/dev/nvidia-uvm", 507, 0)  # from an earlier boot; /proc/devices says 511
    _, fs = run(root)
    f = fs["uvm"]
    assert f.severity == "error"
    assert ev_values(f, "/proc/devices") == ["511"]
    assert ev_values(f, "/dev/nvidia-uvm") == ["507:0"]
    assert "earlier boot" in f.summary


def test_nouveau_loaded_and_bound(tmp_path):
    root = tmp_path / "host"
    make_driver_root(root, {"535.129.03": [LIB]})
    K.kernel(root, None, modules=("nouveau",))
    K.pci(root, "0000:01:00.0", cls=0x030000, driver="nouveau")
    K.write(root, "/etc/modprobe.d/blacklist-nouveau.conf", "blacklist nouveau\n")
    _, fs = run(root)
    f = fs["nouveau"]
    assert f.severity == "error" and f.title == "nouveau owns the GPU"
    assert ev_values(f, "/proc/modules") == ["loaded"]
    assert ev_values(f, "/sys/bus/pci/devices/0000:01:00.0/driver") == ["nouveau"]
    assert ev_values(f, "/etc/modprobe.d/blacklist-nouveau.conf") == ["blacklisted"]
    assert "initramfs" in f.summary and "update-initramfs" in f.fix
    assert fs["device-nodes"].severity == "info"  # no nvidia module: nodes not checked


def test_device_node_wrong_minor_and_missing(tmp_path):
    root = healthy(tmp_path)
    K.node(root, "/dev/nvidia0", 195, 1)  # wrong minor for GPU 0000:3b:00.0
    os.unlink(root / "dev/nvidia1")  # GPU 0000:86:00.0 has no node
    _, fs = run(root)
    f = fs["device-nodes"]
    assert f.severity == "error"
    assert "/dev/nvidia0 is 195:1, expected 195:0 (GPU 0000:3b:00.0)" in f.summary
    assert "/dev/nvidia1 is missing (GPU 0000:86:00.0)" in f.summary
    assert ev_values(f, "/dev/nvidia0") == ["195:1"]
    assert ev_values(f, "/dev/nvidia1") == ["missing"]
    assert ev_values(f, "/proc/driver/nvidia/gpus/0000:3b:00.0/information") == ["0"]


def test_device_node_not_char(tmp_path):
    root = healthy(tmp_path)
    os.unlink(root / "dev/nvidiactl")
    (root / "dev/nvidiactl").write_text("")
    _, fs = run(root)
    f = fs["device-nodes"]
    assert f.severity == "error" and "/dev/nvidiactl is not a character device" in f.summary


def test_gpu_off_the_bus(tmp_path):
    root = healthy(tmp_path)
    K.pci(root, "0000:86:00.0", config_vendor=0xFFFF)
    _, fs = run(root)
    f = fs["gpu-lost"]
    assert f.severity == "error"
    assert ev_values(f, "/sys/bus/pci/devices/0000:86:00.0/config") == ["0xffff"]


def test_reboot_required_file(tmp_path):
    root = healthy(tmp_path)
    K.write(root, "/var/run/reboot-required", "*** System restart required ***\n")
    K.write(root, "/var/run/reboot-required.pkgs", "linux-image-6.1.0-14-amd64\nnvidia-kernel-dkms\n")
    _, fs = run(root)
    f = fs["reboot-pending"]
    assert f.severity == "warning"
    assert ev_values(f, "/var/run/reboot-required") == ["present"]
    assert "nvidia-kernel-dkms" in f.summary


def test_unreadable_things_are_info_not_crashes(tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    (root / "etc").mkdir()
    (root / "etc/ld.so.cache").write_bytes(b"glibc-ld.so.cache1.1" + b"\xff" * 7)  # truncated
    facts, fs = run(root)
    assert fs["driver-library-mismatch"].severity == "info"
    assert "ld.so.cache" in fs["driver-library-mismatch"].summary
    assert fs["stray-driver-libraries"].severity == "info"
    assert fs["uvm"].severity == "info"
    assert not any(f.severity == "error" for f in fs.values())


def test_a_crashing_check_becomes_info(tmp_path, monkeypatch):
    root = healthy(tmp_path)

    def boom(f):
        raise RuntimeError("bug")

    from gpudock.doctor import checks

    monkeypatch.setattr(checks, "CHECKS", (("uvm", boom),) + checks.CHECKS[1:])
    fs = run_checks(gather(HostRoot(root), use_docker=False))
    assert fs[0].id == "uvm" and fs[0].severity == "info" and "RuntimeError: bug" in fs[0].summary


# -- toolkit-side findings on test roots ------------------------------------------------------------

from helpers.libroot import add_lib, run_ldconfig  # noqa: E402


def _toolkit_lib(root, version):
    add_lib(root, LIB, f"libnvidia-container.so.{version}", "libnvidia-container.so.1")
    run_ldconfig(root, "new")


def test_cgroup_v2_with_old_libnvidia_container(tmp_path):
    root = healthy(tmp_path)
    _toolkit_lib(root, "1.7.0")
    K.write(root, "/sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory pids\n")
    _, fs = run(root)
    f = fs["cgroup-v2-old-toolkit"]
    assert f.severity == "error"
    assert [e.value for e in f.evidence if e.source == "/sys/fs/cgroup/cgroup.controllers"] == ["cgroup v2"]
    assert [e.value for e in f.evidence if e.source == "/etc/ld.so.cache"] == ["1.7.0"]
    assert "cgroup subsystem devices not found" in f.summary
    # The toolkit library is not a driver library: no stray finding because of it.
    assert fs["stray-driver-libraries"].severity == "ok"


def test_cgroup_v2_with_new_toolkit_and_v1(tmp_path):
    root = healthy(tmp_path)
    _toolkit_lib(root, "1.13.5")
    K.write(root, "/sys/fs/cgroup/cgroup.controllers", "cpu memory\n")
    _, fs = run(root)
    assert fs["cgroup-v2-old-toolkit"].severity == "ok"
    os.unlink(root / "sys/fs/cgroup/cgroup.controllers")
    _toolkit_lib(root, "1.7.0")
    _, fs = run(root)
    assert fs["cgroup-v2-old-toolkit"].severity == "ok" and "cgroup v1" in fs["cgroup-v2-old-toolkit"].title


CDI = """---
cdiVersion: 0.5.0
kind: nvidia.com/gpu
devices:
- name: "0"
  containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
containerEdits:
  deviceNodes:
  - path: /dev/nvidia-uvm
    major: {uvm}
    minor: 0
  - path: /dev/nvidiactl
  mounts:
  - hostPath: /usr/lib/x86_64-linux-gnu/libcuda.so.{v}
    containerPath: /usr/lib/x86_64-linux-gnu/libcuda.so.{v}
    options: [ro, nosuid, nodev, bind]
"""


def test_cdi_spec_current(tmp_path):
    root = healthy(tmp_path)
    K.write(root, "/etc/cdi/nvidia.yaml", CDI.format(uvm=511, v="535.129.03"))
    _, fs = run(root)
    assert fs["cdi-spec-stale"].severity == "ok", fs["cdi-spec-stale"].summary


def test_cdi_spec_stale_after_upgrade_and_reboot(tmp_path):
    root = healthy(tmp_path)
    K.write(root, "/var/run/cdi/nvidia.yaml", CDI.format(uvm=507, v="535.104.05"))
    K.write(root, "/etc/nvidia-container-runtime/config.toml", '[nvidia-container-runtime]\nmode = "cdi"\n')
    _, fs = run(root)
    f = fs["cdi-spec-stale"]
    assert f.severity == "error"  # CDI mode: every GPU container uses this spec
    assert "generated for driver 535.104.05, the loaded module is 535.129.03" in f.summary
    assert "/dev/nvidia-uvm as 507:0, the node is 511:0" in f.summary
    vals = {(e.line, e.value) for e in f.evidence if e.source == "/var/run/cdi/nvidia.yaml"}
    assert ("hostPath: /usr/lib/x86_64-linux-gnu/libcuda.so.535.104.05", "missing") in vals
    assert ("deviceNodes: /dev/nvidia-uvm 507:0", "511:0") in vals
    assert "nvidia-ctk cdi generate" in f.fix


def test_cdi_mode_without_spec(tmp_path):
    root = healthy(tmp_path)
    K.write(root, "/etc/nvidia-container-runtime/config.toml", '[nvidia-container-runtime]\nmode = "cdi"\n')
    _, fs = run(root)
    f = fs["cdi-spec-stale"]
    assert f.severity == "warning" and "unresolvable CDI devices" in f.summary
    assert [e.value for e in f.evidence if e.source == "/etc/nvidia-container-runtime/config.toml"] == ["cdi"]


def test_cdi_specs_read_where_daemon_json_and_the_toolkit_say(tmp_path):
    root = healthy(tmp_path)
    K.write(root, "/etc/docker/daemon.json", json.dumps({"features": {"cdi": True}, "cdi-spec-dirs": ["/srv/cdi/"]}))
    K.write(
        root,
        "/etc/nvidia-container-runtime/config.toml",
        '[nvidia-container-runtime.modes.cdi]\nspec-dirs = ["/opt/cdi", "/etc/cdi"]\n',
    )
    K.write(root, "/srv/cdi/nvidia.yaml", CDI.format(uvm=507, v="535.129.03"))
    K.write(root, "/opt/cdi/nvidia.json", json.dumps({"kind": "nvidia.com/gpu", "devices": []}))
    facts, fs = run(root)
    assert [(d.path, d.named_by) for d in facts.cdi_spec_dirs] == [
        ("/srv/cdi", ("/etc/docker/daemon.json cdi-spec-dirs",)),
        ("/opt/cdi", ("/etc/nvidia-container-runtime/config.toml spec-dirs",)),
        ("/etc/cdi", ("/etc/nvidia-container-runtime/config.toml spec-dirs", "CDI default")),
        ("/var/run/cdi", ("CDI default",)),
    ]
    f = fs["cdi-spec-stale"]
    assert f.data["specs"] == ["/srv/cdi/nvidia.yaml", "/opt/cdi/nvidia.json"]
    assert f.severity == "warning" and "/srv/cdi/nvidia.yaml gives /dev/nvidia-uvm as 507:0" in f.summary
    assert ev_values(f, "/opt/cdi/nvidia.json") == ["current"]  # the stale one beside it does not taint it
    (dirs,) = [e.line for e in f.evidence if e.source == "CDI spec dirs"]
    assert dirs.startswith("/srv/cdi (/etc/docker/daemon.json cdi-spec-dirs); /opt/cdi (")


def test_one_spec_reached_through_two_dir_names_is_read_once(tmp_path):
    root = healthy(tmp_path)
    K.write(root, "/run/cdi/nvidia.yaml", CDI.format(uvm=511, v="535.129.03"))
    (root / "var").mkdir(exist_ok=True)
    (root / "var/run").symlink_to("/run")  # absolute: resolved inside the root
    K.write(root, "/etc/docker/daemon.json", json.dumps({"cdi-spec-dirs": ["/run/cdi"]}))
    facts, fs = run(root)
    assert [s.path for s in facts.cdi_specs] == ["/run/cdi/nvidia.yaml"]
    assert fs["cdi-spec-stale"].severity == "ok"


def _cdi_container(name: str, device_ids) -> dict:
    return {
        "Id": name * 8,
        "Name": f"/{name}",
        "Config": {"Env": ["NVIDIA_VISIBLE_DEVICES=all"]},
        "HostConfig": {"Runtime": "runc", "DeviceRequests": [{"Driver": "cdi", "DeviceIDs": device_ids}]},
    }


def test_a_stale_spec_is_an_error_when_running_containers_use_cdi(tmp_path):
    root = healthy(tmp_path)
    K.write(root, "/var/run/cdi/nvidia.yaml", CDI.format(uvm=507, v="535.129.03"))
    facts, fs = run(root)
    assert fs["cdi-spec-stale"].severity == "warning"  # nothing uses CDI here: a warning
    facts.docker_checked = True
    facts.docker_info = {"ServerVersion": "26.1.5", "CDISpecDirs": ["/var/run/cdi"], "Runtimes": {"runc": {}}}
    facts.containers = (
        _cdi_container("eval", ["nvidia.com/gpu=0"]),
        _cdi_container("other-vendor", ["intel.com/gpu=0"]),
    )
    f = by_id(run_checks(facts))["cdi-spec-stale"]
    assert f.severity == "error" and f.data["containers"] == ["eval"]
    assert "Running containers that use CDI devices (eval) cannot start again" in f.summary
    assert ("docker info", "CDISpecDirs: /var/run/cdi", "on") in [(e.source, e.line, e.value) for e in f.evidence]
    # and with no spec at all, they cannot start either
    facts.cdi_specs = ()
    f = by_id(run_checks(facts))["cdi-spec-stale"]
    assert f.severity == "warning" and f.title == "No NVIDIA CDI spec although running containers use CDI devices"


def test_absolute_symlinks_resolve_inside_the_root(tmp_path):
    # A host copied with absolute soname links (as some installers make them): resolved inside
    # the root, never against this machine's /usr.
    root = tmp_path / "host"
    make_driver_root(root, {"535.129.03": [LIB]})
    link = root / LIB.lstrip("/") / "libnvidia-ml.so.1"
    link.unlink()
    link.symlink_to(f"{LIB}/libnvidia-ml.so.535.129.03")
    K.kernel(root, "535.104.05")
    K.module_ko(root, "535.129.03")
    _, fs = run(root)
    f = fs["driver-library-mismatch"]
    assert f.data["pending_reboot"] is True
    assert any(e.line.endswith(f"-> {LIB}/libnvidia-ml.so.535.129.03") for e in f.evidence)
