"""The legacy driver volume, built from a host root with real ELF libraries of two driver versions
and a real ld.so.cache written by ldconfig."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gpudock.host.root import HostRoot
from gpudock.launch.spec import LaunchError
from gpudock.launch.volume import build_driver_volume, kernel_module_version
from helpers.driverhost import CURRENT, STALE, driver_host


def listing(path: str) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, path)
            out[rel] = "-> " + os.readlink(p) if os.path.islink(p) else ("dir" if os.path.isdir(p) else "file")
    return out


def test_only_the_running_versions_files_land_hard_linked(tmp_path):
    root = driver_host(tmp_path)
    hr = HostRoot(root)
    assert kernel_module_version(hr) == CURRENT
    vol = build_driver_volume(hr, str(tmp_path / "volumes"))
    assert vol.name == "nvidia_driver_535.129.03"
    assert vol.path == str(tmp_path / "volumes/nvidia_driver/535.129.03")
    files = listing(vol.path)
    assert files["lib64/libcuda.so.535.129.03"] == "file"
    assert files["lib64/libcuda.so.1"] == "-> libcuda.so.535.129.03"
    assert files["lib64/libcuda.so"] == "-> libcuda.so.535.129.03"
    assert files["lib64/libGLX_indirect.so.0"] == "-> libGLX_nvidia.so.535.129.03"
    assert files["lib64/libnvidia-glcore.so.535.129.03"] == "file"
    assert files["lib/libnvidia-ml.so.535.129.03"] == "file"  # the i386 copy goes to lib/
    assert files["lib/libnvidia-ml.so.1"] == "-> libnvidia-ml.so.535.129.03"
    assert files["bin/nvidia-smi"] == "file" and files["bin/nvidia-cuda-mps-control"] == "file"
    assert not any(STALE in name for name in files), "the 470 leftovers must not land"
    assert not any(name.startswith("lib64/libGL.so") for name in files), "Mesa's libGL is not the driver's"
    assert files["lib64/libnvidia-cfg.so.535.129.03"] == "file"  # utility libraries land too
    assert any(STALE in s for s in vol.skipped)

    # hard links: the very same inodes as the host's files
    src = root / "usr/lib/x86_64-linux-gnu/libcuda.so.535.129.03"
    assert os.stat(Path(vol.path, "lib64/libcuda.so.535.129.03")).st_ino == os.stat(src).st_ino
    smi = next(f for f in vol.files if f.name == "bin/nvidia-smi")
    assert (smi.how, smi.source) == ("link", "/usr/lib/nvidia/bin/nvidia-smi")
    assert os.stat(Path(vol.path, "bin/nvidia-smi")).st_ino == os.stat(root / "usr/lib/nvidia/bin/nvidia-smi").st_ino
    assert {f.how for f in vol.files if f.name.startswith("lib64/libcuda.so.5")} == {"link"}
    assert oct(os.stat(Path(vol.path, "lib64")).st_mode & 0o777) == "0o755"


def test_the_other_filesystem_gets_copies(tmp_path):
    other_fs = Path("/dev/shm")
    assert os.stat(other_fs).st_dev != os.stat(tmp_path).st_dev, "needs /dev/shm on another filesystem"
    root = driver_host(tmp_path)
    out = Path(os.environ.get("GPUDOCK_TEST_SHM", "/dev/shm")) / f"gpudock-vol-{os.getpid()}-{tmp_path.name}"
    try:
        vol = build_driver_volume(HostRoot(root), str(out))
        libs = [f for f in vol.files if f.how != "symlink"]
        assert libs and {f.how for f in libs} == {"copy"}
        copied = Path(vol.path, "lib64/libnvidia-ml.so.535.129.03")
        original = root / "usr/lib/x86_64-linux-gnu/libnvidia-ml.so.535.129.03"
        assert copied.read_bytes() == original.read_bytes()
        assert copied.read_bytes()[:4] == b"\x7fELF"
        assert os.stat(copied).st_mode == os.stat(original).st_mode
    finally:
        import shutil

        shutil.rmtree(out, ignore_errors=True)


def test_rebuild_replaces_the_version_directory(tmp_path):
    root = driver_host(tmp_path)
    first = build_driver_volume(HostRoot(root), str(tmp_path / "v"))
    Path(first.path, "lib64/junk").write_text("x")
    second = build_driver_volume(HostRoot(root), str(tmp_path / "v"))
    assert not Path(second.path, "lib64/junk").exists()
    assert sorted(os.listdir(tmp_path / "v/nvidia_driver")) == [CURRENT]


def test_asking_for_the_stale_version_gives_the_stale_files(tmp_path):
    root = driver_host(tmp_path)
    vol = build_driver_volume(HostRoot(root), str(tmp_path / "v"), version=STALE)
    names = listing(vol.path)
    assert names["lib64/libcuda.so.470.57.02"] == "file"
    assert not any(CURRENT in n for n in names)


def test_no_kernel_module_is_a_clear_error(tmp_path):
    (tmp_path / "etc").mkdir()
    with pytest.raises(LaunchError, match="no NVIDIA kernel module is loaded"):
        build_driver_volume(HostRoot(tmp_path), str(tmp_path / "v"))
    with pytest.raises(LaunchError, match="cannot read the ld.so.cache"):
        build_driver_volume(HostRoot(tmp_path), str(tmp_path / "v"), version=CURRENT)
    assert not (tmp_path / "v/nvidia_driver").exists() or not os.listdir(tmp_path / "v/nvidia_driver")
