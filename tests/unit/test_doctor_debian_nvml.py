"""Debian 12's real NVIDIA user-space libraries (non-free libnvidia-ml1, libcuda1) unpacked with
dpkg -x into a test root, with no kernel module: the real libnvidia-ml says "Driver Not Loaded"
and the doctor explains it. Also the CLI's exit codes and JSON shape on test roots."""

from __future__ import annotations

import json

import pytest

from gpudock.cli import main
from gpudock.doctor import gather, run_checks
from gpudock.host.nvml import NvmlSession
from gpudock.host.root import HostRoot
from helpers import kernelroot as K
from helpers.libroot import make_driver_root


@pytest.fixture(scope="module")
def debian_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("debian") / "host"
    root.mkdir()
    version = K.debian_driver_root(root)
    K.kernel(root, None, modules=())  # no nvidia module loaded, /proc/driver/nvidia absent
    return root, version


def test_real_libnvidia_ml_says_driver_not_loaded(debian_root):
    import ctypes

    root, version = debian_root
    lib = HostRoot(root).real("/usr/lib/x86_64-linux-gnu/nvidia/current/libnvidia-ml.so.1")
    assert lib.endswith(f"libnvidia-ml.so.{version}")
    session = NvmlSession(lambda: ctypes.CDLL(lib))
    try:
        facts = gather(HostRoot(root), session, None, use_docker=False, nvml_library=lib)
    finally:
        session.shutdown()
    assert facts.nvml.nvml_failure.code == 9
    fs = {f.id: f for f in run_checks(facts)}
    f = fs["nvml-init"]
    assert f.severity == "error"
    assert f.title == "NVML cannot start: Driver Not Loaded"
    assert f.data["code"] == 9
    assert f.evidence[0].source == "NVML" and f.evidence[0].value == "9" and lib in f.evidence[0].line
    assert [e.value for e in f.evidence if e.source == "/proc/modules"] == ["not loaded"]
    assert [e.line for e in f.evidence if e.source == "/proc/driver/nvidia/version"] == [None]
    # No nvidia.ko for the running kernel in this root: the doctor says to build it.
    assert "No nvidia.ko exists for the running kernel 6.1.0-13-amd64" in f.summary
    assert "dkms" in f.fix
    # The libraries themselves are fine and one version; the mismatch check has nothing to compare.
    assert fs["stray-driver-libraries"].severity == "ok"
    assert fs["driver-library-mismatch"].severity == "info"
    assert version in [e.value for e in fs["driver-library-mismatch"].evidence]


def test_cli_doctor_json_on_debian_root(debian_root, capsys):
    root, version = debian_root
    rc = main(["doctor", "--json", "--root", str(root), "--no-docker"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert out["root"] == str(root) and out["worst"] == "error"
    f = {x["id"]: x for x in out["findings"]}
    assert f["nvml-init"]["severity"] == "error" and f["nvml-init"]["data"]["code"] == 9
    assert set(f["nvml-init"]) >= {"id", "severity", "title", "summary", "evidence", "fix"}
    assert set(f["nvml-init"]["evidence"][0]) == {"source", "line", "value"}
    assert sum(out["counts"].values()) == len(out["findings"])


def test_a_real_root_with_simulated_gpus_is_refused(tmp_path, capsys):
    # --demo is a whole simulated host: mixing it with a real root's files was the "split brain"
    root = tmp_path / "host"
    K.kernel(root, "535.129.03")
    rc = main(["doctor", "--json", "--root", str(root), "--demo", "--no-docker"])
    err = capsys.readouterr().err
    assert rc == 2 and "--root names part of a real one" in err and "leave out --root" in err


def test_cli_doctor_exit_1_and_text(tmp_path, capsys):
    root = tmp_path / "host"
    make_driver_root(root, {"535.129.03": ["/usr/lib/x86_64-linux-gnu"]})
    K.kernel(root, "535.104.05")
    K.module_ko(root, "535.129.03")
    rc = main(["doctor", "--root", str(root), "--no-docker", "--only", "driver-library-mismatch"])
    text = capsys.readouterr().out
    assert rc == 1
    assert text.startswith("[ERROR] driver-library-mismatch: Driver/library version mismatch: module 535.104.05")
    assert "fix: Reboot the host" in text


def test_cli_libs_json(tmp_path, capsys):
    root = tmp_path / "host"
    make_driver_root(root, {"470.57.02": ["/usr/lib64/nvidia"], "535.129.03": ["/usr/lib/x86_64-linux-gnu"]})
    assert main(["libs", "--json", "--root", str(root)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["versions"] == ["470.57.02", "535.129.03"]
    assert out["versions_by_directory"] == {
        "/usr/lib/x86_64-linux-gnu": ["535.129.03"],
        "/usr/lib64/nvidia": ["470.57.02"],
    }
    ml = [x for x in out["libraries"] if x["soname"] == "libnvidia-ml.so.1"]
    assert [(x["path"], x["version"], x["loader_pick"]) for x in ml] == [
        ("/usr/lib64/nvidia/libnvidia-ml.so.1", "470.57.02", True),
        ("/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1", "535.129.03", False),
    ]
    assert ml[0]["resolved"] == "/usr/lib64/nvidia/libnvidia-ml.so.470.57.02"
    assert ml[0]["flag_text"] == "libc6,x86-64"


def test_cli_libs_text_and_unreadable(tmp_path, capsys):
    root = tmp_path / "host"
    make_driver_root(root, {"535.129.03": ["/usr/lib/x86_64-linux-gnu"]})
    assert main(["libs", "--root", str(root)]) == 0
    text = capsys.readouterr().out
    assert "* libnvidia-ml.so.1" in text and "535.129.03" in text
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["libs", "--root", str(empty)]) == 2
    assert "cannot read the loader's cache" in capsys.readouterr().err
