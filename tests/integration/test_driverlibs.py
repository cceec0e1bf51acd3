"""gpudock.host.driverlibs on real fake hosts: real ELF libraries, real ldconfig caches, --root.

The scenarios are the ones the doctor reports (failures.md 1B): stray versions in another
directory, leftovers hidden next to the current files, dangling and looping soname links, and
vendor-neutral GL/OpenCL loaders that are not NVIDIA's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gpudock.host import ldcache
from gpudock.host.driverlibs import (
    DriverLib,
    cache_directories,
    driver_files,
    driver_libraries,
    driver_versions,
    driver_versions_by_dir,
    library_group,
    version_suffix,
)
from gpudock.host.root import HostRoot
from helpers.libroot import DRIVER_LIBS, add_lib, make_driver_root, run_ldconfig, write_ld_so_conf

NEW, OLD = "535.129.03", "470.57.02"
X64 = "/usr/lib/x86_64-linux-gnu"
I386 = "/usr/lib/i386-linux-gnu"


def _load(root: str) -> tuple[HostRoot, tuple[DriverLib, ...]]:
    h = HostRoot(root)
    return h, driver_libraries(ldcache.read(h), h)


def _by(libs, soname: str, arch: int = 0x0300) -> list[DriverLib]:
    return [lib for lib in libs if lib.soname == soname and lib.arch == arch]


def test_clean_install_with_32bit(tmp_path: Path) -> None:
    dr = make_driver_root(tmp_path / "r", versions={NEW: [X64]}, lib32={NEW: [I386]})
    _, libs = _load(dr.root)
    assert len(libs) == 2 * len(DRIVER_LIBS)
    assert driver_versions(libs) == {NEW}
    assert driver_versions_by_dir(libs) == {I386: {NEW}, X64: {NEW}}
    assert all(lib.loader_pick and not lib.dangling and lib.error is None for lib in libs)
    ml = _by(libs, "libnvidia-ml.so.1")[0]
    assert ml.group == "utility" and ml.flag_text == "libc6,x86-64" and ml.directory == X64
    assert ml.path == f"{X64}/libnvidia-ml.so.1" and ml.resolved == f"{X64}/libnvidia-ml.so.{NEW}"
    ml32 = _by(libs, "libnvidia-ml.so.1", 0x0000)[0]
    assert ml32.flag_text == "libc6" and ml32.resolved == f"{I386}/libnvidia-ml.so.{NEW}"
    groups = {lib.soname: lib.group for lib in libs}
    assert groups["libcuda.so.1"] == "compute" and groups["libnvcuvid.so.1"] == "video"
    assert groups["libGLX_nvidia.so.0"] == "glvnd" and groups[f"libnvidia-glcore.so.{NEW}"] == "graphics"
    assert json.loads(json.dumps([lib.to_json() for lib in libs]))[0]["version"] == NEW


def test_stray_driver_in_an_earlier_directory_wins(tmp_path: Path) -> None:
    # /usr/lib64/nvidia from an old .run install is listed first in ld.so.conf: the loader picks
    # its libnvidia-ml.so.1 (470) although the packaged driver (535) is installed too.
    dr = make_driver_root(tmp_path / "r", versions={OLD: ["/usr/lib64/nvidia"], NEW: [X64]})
    _, libs = _load(dr.root)
    assert driver_versions(libs) == {OLD, NEW}
    assert driver_versions_by_dir(libs) == {"/usr/lib64/nvidia": {OLD}, X64: {NEW}}
    ml = _by(libs, "libnvidia-ml.so.1")
    assert [(lib.version, lib.loader_pick) for lib in ml] == [(OLD, True), (NEW, False)]
    picked = {lib.soname: lib.version for lib in libs if lib.loader_pick}
    assert picked["libcuda.so.1"] == OLD
    # sonames carrying the version are distinct, so both glcores are "picked" for their soname
    assert picked[f"libnvidia-glcore.so.{NEW}"] == NEW


def test_leftover_hidden_next_to_the_current_files(tmp_path: Path) -> None:
    # Both versions in one directory; the soname links point at 535, so the cache shows only 535
    # but the 470 files are still there.
    dr = make_driver_root(tmp_path / "r", versions={OLD: [X64], NEW: [X64]})
    h = HostRoot(dr.root)
    c = ldcache.read(h)
    libs = driver_libraries(c, h)
    assert driver_versions(libs) == {OLD, NEW}  # only through libnvidia-glcore.so.470.57.02
    assert {lib.version for lib in libs if lib.soname == "libnvidia-ml.so.1"} == {NEW}
    files = driver_files(h, cache_directories(c), libs)
    hidden = sorted(os.path.basename(f.path) for f in files if not f.in_cache)
    assert f"libnvidia-ml.so.{OLD}" in hidden and f"libcuda.so.{OLD}" in hidden
    assert all(f.version == OLD for f in files if not f.in_cache)
    assert f"{X64}/libnvidia-ml.so.{NEW}" in {f.path for f in files if f.in_cache}
    assert {f.version for f in files} == {OLD, NEW}


def test_dangling_and_looping_links(tmp_path: Path) -> None:
    dr = make_driver_root(tmp_path / "r", versions={NEW: [X64]})
    lib = Path(dr.root, X64.lstrip("/"))
    (lib / f"libcuda.so.{NEW}").unlink()  # package removed the file, cache not rebuilt
    (lib / "libnvidia-cfg.so.1").unlink()
    (lib / "libnvidia-cfg.so.1").symlink_to("libnvidia-cfg.so.1")  # self loop
    _, libs = _load(dr.root)
    cuda = _by(libs, "libcuda.so.1")[0]
    assert cuda.dangling and cuda.version == NEW and cuda.resolved == f"{X64}/libcuda.so.{NEW}"
    assert cuda.error is None
    cfg = _by(libs, "libnvidia-cfg.so.1")[0]
    assert cfg.dangling and cfg.resolved is None and cfg.version is None and "loop" in cfg.error
    ml = _by(libs, "libnvidia-ml.so.1")[0]
    assert not ml.dangling and ml.version == NEW
    # dangling entries load nothing: they do not count as installed versions unless asked
    (lib / f"libnvidia-ml.so.{NEW}").unlink()
    (lib / "libnvidia-ml.so.1").unlink()
    (lib / "libnvidia-ml.so.1").symlink_to(f"libnvidia-ml.so.{OLD}")
    _, libs = _load(dr.root)
    assert OLD not in driver_versions(libs) and OLD in driver_versions(libs, include_dangling=True)
    assert OLD in driver_versions_by_dir(libs, include_dangling=True)[X64]


def test_absolute_links_resolve_inside_the_root(tmp_path: Path) -> None:
    dr = make_driver_root(tmp_path / "r", versions={NEW: [X64]})
    link = Path(dr.root, X64.lstrip("/"), "libnvidia-ml.so.1")
    link.unlink()
    link.symlink_to(f"{X64}/libnvidia-ml.so.{NEW}")  # absolute: means the root's file
    (Path(dr.root) / "lib").symlink_to("/usr/lib")
    _, libs = _load(dr.root)
    ml = _by(libs, "libnvidia-ml.so.1")[0]
    assert ml.resolved == f"{X64}/libnvidia-ml.so.{NEW}" and not ml.dangling


def test_vendor_neutral_loaders_only_when_nvidia_ships_them(tmp_path: Path) -> None:
    r = tmp_path / "r"
    mesa = "/usr/lib/mesa"
    add_lib(r, mesa, "libGL.so.1.7.0", "libGL.so.1")  # GLVND/Mesa: not the driver's
    add_lib(r, mesa, "libOpenCL.so.1.0.0", "libOpenCL.so.1")  # ocl-icd
    add_lib(r, mesa, "libEGL.so.1.1.0", "libEGL.so.1")
    add_lib(r, X64, f"libGL.so.{NEW}", "libGL.so.1")  # pre-GLVND NVIDIA libGL: versioned file
    add_lib(r, X64, f"libnvidia-ml.so.{NEW}", "libnvidia-ml.so.1")
    add_lib(r, X64, "libnvidia-egl-wayland.so.1.1.13", "libnvidia-egl-wayland.so.1")
    add_lib(r, X64, f"libnvidia-newthing.so.{NEW}", "libnvidia-newthing.so.1")
    write_ld_so_conf(r, [mesa, X64])
    run_ldconfig(r)
    _, libs = _load(str(r))
    names = {(lib.soname, lib.directory) for lib in libs}
    assert ("libGL.so.1", X64) in names and ("libGL.so.1", mesa) not in names
    assert not any(lib.soname.startswith(("libOpenCL", "libEGL.so")) for lib in libs)
    gl = _by(libs, "libGL.so.1")[0]
    assert gl.group == "compat" and gl.version == NEW and not gl.loader_pick  # Mesa's comes first
    wl = _by(libs, "libnvidia-egl-wayland.so.1")[0]
    assert wl.group == "graphics" and wl.version is None  # its own 1.1.13, not a driver version
    assert _by(libs, "libnvidia-newthing.so.1")[0].group == "other"
    assert driver_versions(libs) == {NEW}


@pytest.mark.parametrize(
    "name, version",
    [
        ("libnvidia-ml.so.535.129.03", "535.129.03"),
        ("/usr/lib/libcuda.so.375.26", "375.26"),
        ("libcuda.so.1", None),
        ("libcuda.so", None),
        ("libGL.so.1.7.0", None),
        ("libnvidia-egl-wayland.so.1.1.13", None),
        ("libnvidia-glcore.so.550.54.14", "550.54.14"),
        ("libnvidia-ml.so.535.129.03.bak", None),
    ],
)
def test_version_suffix(name: str, version: str | None) -> None:
    assert version_suffix(name) == version


@pytest.mark.parametrize(
    "soname, group",
    [
        ("libnvidia-ml.so.1", "utility"),
        ("libcuda.so", "compute"),
        ("libnvidia-pkcs11-openssl3.so.535.129.03", "compute"),
        ("libnvidia-pkcs11.so.535.129.03", "compute"),
        ("libnvoptix.so.1", "graphics"),
        ("libGLESv1_CM_nvidia.so.1", "glvnd"),
        ("libnvidia-ngx.so.1", "ngx"),
        ("libGLESv2.so.2", "compat"),
        ("libnvidia-gtk3.so.535.129.03", "other"),
        ("libcudart.so.12", None),
        ("libc.so.6", None),
        ("libcudax.so.1", None),
    ],
)
def test_library_group(soname: str, group: str | None) -> None:
    assert library_group(soname) == group


def test_driverlib_is_immutable(tmp_path: Path) -> None:
    dr = make_driver_root(tmp_path / "r", versions={NEW: [X64]})
    _, libs = _load(dr.root)
    with pytest.raises(AttributeError):
        libs[0].version = "1"  # type: ignore[misc]


def test_driver_files_through_a_merged_usr_link(tmp_path: Path) -> None:
    dr = make_driver_root(tmp_path / "r", versions={OLD: [X64], NEW: [X64]})
    (Path(dr.root) / "lib").symlink_to("usr/lib")
    h = HostRoot(dr.root)
    libs = driver_libraries(ldcache.read(h), h)
    files = driver_files(h, ["/lib/x86_64-linux-gnu", X64, "/nonexistent"], libs)
    paths = [f.path for f in files]
    assert len(paths) == len(set(paths)) and all(p.startswith(X64 + "/") for p in paths)
    assert f"{X64}/libcuda.so.{NEW}" in {f.path for f in files if f.in_cache}
