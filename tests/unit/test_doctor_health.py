"""The "persistence" and "fabric-manager" findings on test roots: processes as /proc shows them
(comm cut to 15 bytes), the persistenced socket and pid file, NVSwitch in /proc/devices and on
the PCI bus; per-GPU persistence mode from an NVML snapshot (the simulated library's, and a
hand-made one)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from gpudock.doctor import gather, run_checks
from gpudock.host.nvml import NvmlSession
from gpudock.host.root import HostRoot
from gpudock.model import Gpu, HostSnapshot
from gpudock.sim.libnvml import sim_library_loader
from gpudock.sim.scenario import builtin_scenario
from helpers import kernelroot as K

PM = "/usr/bin/nvidia-persistenced"
FM = "/usr/bin/nv-fabricmanager"


def _root(tmp_path: Path) -> Path:
    root = tmp_path / "host"
    K.kernel(root, "535.129.03")
    K.gpu(root, "0000:3b:00.0", 0)
    K.process(root, 1, "systemd", ["/sbin/init"])
    K.process(root, 812, "sshd", ["sshd: /usr/sbin/sshd -D"])
    return root


def _snap(*modes) -> HostSnapshot:
    return HostSnapshot(
        "535.129.03",
        "12.2",
        "12.535.129.03",
        gpus=tuple(
            Gpu(
                i,
                f"GPU-{i:08x}-0000-1111-2222-333344445555",
                pci_bus_id=f"00000000:{0x3B + i:02X}:00.0",
                persistence_mode=m,
            )
            for i, m in enumerate(modes)
        ),
    )


def _run(root, nvml=None):
    facts = gather(HostRoot(root), use_docker=False)
    if nvml is not None:
        facts.nvml, facts.nvml_checked = nvml, True
    return facts, {f.id: f for f in run_checks(facts)}


def test_persistence_off_without_daemon_is_a_warning(tmp_path):
    root = _root(tmp_path)
    _, fs = _run(root, _snap(True, False, False))
    f = fs["persistence"]
    assert f.severity == "warning", f.summary
    assert "GPU 1 (00000000:3C:00.0), GPU 2 (00000000:3D:00.0)" in f.summary
    assert "driver rpc error: timed out" in f.summary
    assert [(e.line, e.value) for e in f.evidence if e.source == "NVML"] == [
        ("GPU 1 (00000000:3C:00.0) persistence mode: Disabled", "off"),
        ("GPU 2 (00000000:3D:00.0) persistence mode: Disabled", "off"),
        ("persistence mode Enabled on 1 other GPU(s)", "1"),
    ]
    assert [e.value for e in f.evidence if e.source == "/proc"] == ["not running"]
    assert "systemctl enable --now nvidia-persistenced" in f.fix
    assert f.data["persistence_off"] == [
        "GPU-00000001-0000-1111-2222-333344445555",
        "GPU-00000002-0000-1111-2222-333344445555",
    ]


def test_persistence_daemon_found_by_its_truncated_comm(tmp_path):
    root = _root(tmp_path)
    K.process(root, 1402, "nvidia-persistenced", [PM, "--user", "nvidia-persistenced"])
    K.write(root, "/run/nvidia-persistenced/nvidia-persistenced.pid", "1402\n")
    assert (root / "proc/1402/comm").read_text() == "nvidia-persiste\n"
    _, fs = _run(root, _snap(True, True))
    f = fs["persistence"]
    assert f.severity == "ok" and "nvidia-persistenced runs (pid 1402)" in f.summary
    assert ("/proc/1402/cmdline", f"{PM} --user nvidia-persistenced", "running") in [
        (e.source, e.line, e.value) for e in f.evidence
    ]
    assert [e.value for e in f.evidence if e.source == "/run/nvidia-persistenced/nvidia-persistenced.pid"] == [
        "running"
    ]
    # the daemon runs but a GPU was switched off by hand: info, not a warning
    _, fs = _run(root, _snap(True, False))
    assert fs["persistence"].severity == "info" and "--no-persistence-mode" in fs["persistence"].summary


def test_another_program_with_the_same_15_bytes_is_not_the_daemon(tmp_path):
    root = _root(tmp_path)
    K.process(root, 2000, "nvidia-persistenced-exporter", ["/opt/bin/nvidia-persistenced-exporter"])
    K.process(root, 2001, "nvidia-persistenced", ["/opt/bin/nvidia-persistence-check"])  # comm matches, argv0 not
    _, fs = _run(root, _snap(False))
    assert fs["persistence"].severity == "warning"


def _bind(monkeypatch, directory: Path) -> socket.socket:
    """A real UNIX socket at directory/socket (bound relative: AF_UNIX paths are short)."""
    directory.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX)
    with monkeypatch.context() as m:
        m.chdir(directory)
        sock.bind("socket")
    return sock


def test_stale_pid_file_and_socket_are_not_a_running_daemon(tmp_path, monkeypatch):
    root = _root(tmp_path)
    K.write(root, "/run/nvidia-persistenced/nvidia-persistenced.pid", "1402\n")
    sock = _bind(monkeypatch, root / "run/nvidia-persistenced")
    _, fs = _run(root, _snap(False))
    f = fs["persistence"]
    sock.close()
    assert f.severity == "warning"
    assert "left from an earlier run" in f.summary
    vals = {e.source: e.value for e in f.evidence}
    assert vals["/run/nvidia-persistenced/nvidia-persistenced.pid"] == "stale"
    assert vals["/run/nvidia-persistenced/socket"] == "socket"


def test_copied_root_without_proc_trusts_the_socket(tmp_path, monkeypatch):
    root = tmp_path / "copy"
    K.kernel(root, "535.129.03")
    sock = _bind(monkeypatch, root / "run/nvidia-persistenced")
    _, fs = _run(root)
    sock.close()
    f = fs["persistence"]
    assert f.severity == "ok" and "no /proc here to confirm" in f.summary
    os.unlink(root / "run/nvidia-persistenced/socket")
    _, fs = _run(root)  # no NVML, no daemon: info, with the fix
    assert fs["persistence"].severity == "info" and fs["persistence"].fix


def test_persistence_from_the_simulated_nvml(tmp_path):
    root = _root(tmp_path)
    session = NvmlSession(sim_library_loader(builtin_scenario("demo")), source="sim:demo")
    try:
        facts = gather(HostRoot(root), session, None, use_docker=False)
    finally:
        session.shutdown()
    f = {x.id: x for x in run_checks(facts)}["persistence"]
    off = [g.index for g in facts.nvml.gpus if g.persistence_mode is False]
    assert off, "the demo scenario has a GPU in persistence mode off"
    assert f.severity == "warning" and all(f"GPU {i} " in f.summary for i in off)


# -- fabric-manager ------------------------------------------------------------------------------------


def test_no_nvswitch_is_ok(tmp_path):
    _, fs = _run(_root(tmp_path))
    f = fs["fabric-manager"]
    assert f.severity == "ok" and [e.line for e in f.evidence] == ["no nvidia-nvswitch line"]


def test_nvswitch_without_fabric_manager_is_an_error(tmp_path):
    root = _root(tmp_path)
    K.char_major(root, 508, "nvidia-nvswitch")
    K.nvswitch(root, "0000:05:00.0")
    _, fs = _run(root)
    f = fs["fabric-manager"]
    assert f.severity == "error", f.summary
    assert "system not yet initialized" in f.summary and "535.129.03" in f.fix
    assert ("/proc/devices", "508 nvidia-nvswitch", "508") in [(e.source, e.line, e.value) for e in f.evidence]
    assert ("/sys/bus/pci/devices/0000:05:00.0", "NVSwitch") in [(e.source, e.value) for e in f.evidence]
    assert [e.value for e in f.evidence if e.source == "/proc"] == ["not running"]


def test_nvswitch_with_fabric_manager_running_is_ok(tmp_path):
    root = _root(tmp_path)
    K.char_major(root, 508, "nvidia-nvswitch")
    K.process(root, 2222, "nv-fabricmanager", [FM, "-c", "/usr/share/nvidia/nvswitch/fabricmanager.cfg"])
    _, fs = _run(root)
    f = fs["fabric-manager"]
    assert f.severity == "ok" and "pid 2222" in f.summary
    assert (root / "proc/2222/comm").read_text() == "nv-fabricmanage\n"


def test_nvswitch_on_a_copied_root_without_proc_is_a_warning(tmp_path):
    root = tmp_path / "copy"
    K.kernel(root, "535.129.03")
    K.char_major(root, 508, "nvidia-nvswitch")
    _, fs = _run(root)
    assert fs["fabric-manager"].severity == "warning"
    os.unlink(root / "proc/devices")
    _, fs = _run(root)
    assert fs["fabric-manager"].severity == "info"
