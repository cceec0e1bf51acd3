"""Fake host roots with REAL ELF shared libraries and a REAL ld.so.cache written by ldconfig.

For every test that needs "a host with driver X installed here and leftovers of driver Y there":
the doctor (driver-library-mismatch, stray-driver-libraries), the driver volume, ``gpudock libs``.

    from helpers.libroot import make_driver_root
    dr = make_driver_root(tmp_path, versions={"535.129.03": ["/usr/lib/x86_64-linux-gnu"],
                                              "470.57.02": ["/usr/lib64/nvidia"]})
    cache = ldcache.read(HostRoot(dr.root))

Libraries are built with gcc (``-shared -fPIC -Wl,-soname,...``) and the cache with
``ldconfig -r ROOT`` from the root's own /etc/ld.so.conf, so what the tests read is exactly what a
host would have. Missing gcc or ldconfig is a failure (:class:`ToolMissing`), never a skip.

32-bit: this image has no 32-bit libc/crt files, so ``gcc -m32`` cannot link a normal library.
``gcc -m32 -nostdlib`` still produces a real i386 ELF shared object; we link it against a stub
i386 ``libc.so.6`` (built the same way, kept outside the root) so that it has ``DT_NEEDED
libc.so.6`` and ldconfig types it ``libc6`` like a distribution's i386 library. x32 works the
same way (``-mx32``).
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ToolMissing",
    "require_tools",
    "build_lib",
    "add_lib",
    "write_ld_so_conf",
    "run_ldconfig",
    "ldconfig_print",
    "DriverRoot",
    "make_driver_root",
    "make_many_root",
    "DRIVER_LIBS",
    "ARCHES",
]

ARCHES = ("x86-64", "i386", "x32")

# (file name stem, soname): what a driver install puts in each library directory. The soname of
# libnvidia-glcore / -tls / -eglcore carries the full driver version, as NVIDIA's do ("{v}").
DRIVER_LIBS: tuple[tuple[str, str], ...] = (
    ("libnvidia-ml.so", "libnvidia-ml.so.1"),
    ("libcuda.so", "libcuda.so.1"),
    ("libnvidia-ptxjitcompiler.so", "libnvidia-ptxjitcompiler.so.1"),
    ("libnvidia-cfg.so", "libnvidia-cfg.so.1"),
    ("libnvidia-encode.so", "libnvidia-encode.so.1"),
    ("libnvcuvid.so", "libnvcuvid.so.1"),
    ("libGLX_nvidia.so", "libGLX_nvidia.so.0"),
    ("libEGL_nvidia.so", "libEGL_nvidia.so.0"),
    ("libnvidia-glcore.so", "libnvidia-glcore.so.{v}"),
)


class ToolMissing(AssertionError):
    """gcc or ldconfig is not usable: the test must fail, not skip."""


_EMPTY_C = "int gpudock_test_symbol = 1;\n"
_build_dir: Path | None = None
_built: dict[tuple[str, str], Path] = {}


def _workdir() -> Path:
    global _build_dir
    if _build_dir is None:
        _build_dir = Path(tempfile.mkdtemp(prefix="gpudock-libroot-"))
        atexit.register(shutil.rmtree, _build_dir, True)
        (_build_dir / "empty.c").write_text(_EMPTY_C)
    return _build_dir


def _tool(name: str) -> str:
    for d in (os.environ.get("PATH", "") + ":/sbin:/usr/sbin").split(":"):
        p = os.path.join(d or ".", name)
        if os.access(p, os.X_OK):
            return p
    raise ToolMissing(f"{name} not found on PATH or in /sbin, /usr/sbin: these tests need it")


def require_tools() -> None:
    """Fail (AssertionError) unless gcc and ldconfig are usable."""
    _tool("gcc")
    _tool("ldconfig")


def _run(cmd: list[str]) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise ToolMissing(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")


def _stub_libc32(flag: str) -> Path:
    out = _workdir() / f"stub{flag}" / "libc.so.6"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        _run(
            [
                _tool("gcc"),
                flag,
                "-shared",
                "-fPIC",
                "-nostdlib",
                "-Wl,-soname,libc.so.6",
                "-o",
                str(out),
                str(_workdir() / "empty.c"),
            ]
        )
    return out


def build_lib(soname: str, arch: str = "x86-64") -> Path:
    """A real ELF shared library with DT_SONAME ``soname`` for ``arch`` (x86-64, i386, x32).

    Built once per (arch, soname) per test session and then copied, so building roots stays fast.
    """
    key = (arch, soname)
    got = _built.get(key)
    if got is not None and got.exists():
        return got
    gcc = _tool("gcc")
    out = _workdir() / arch / soname
    out.parent.mkdir(parents=True, exist_ok=True)
    src = str(_workdir() / "empty.c")
    if arch == "x86-64":
        cmd = [gcc, "-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o", str(out), src]
    elif arch in ("i386", "x32"):
        flag = "-m32" if arch == "i386" else "-mx32"
        stub = _stub_libc32(flag)
        cmd = [
            gcc,
            flag,
            "-shared",
            "-fPIC",
            "-nostdlib",
            f"-Wl,-soname,{soname}",
            "-o",
            str(out),
            src,
            "-Wl,--no-as-needed",
            str(stub),
        ]
    else:
        raise ValueError(f"arch must be one of {ARCHES}, not {arch!r}")
    _run(cmd)
    _built[key] = out
    return out


def add_lib(
    root: str | os.PathLike[str],
    directory: str,
    filename: str,
    soname: str,
    *,
    arch: str = "x86-64",
    soname_link: bool = True,
) -> str:
    """Install a library file ``directory/filename`` (host paths) into ``root``, plus the relative
    soname symlink ``directory/soname -> filename`` as a package would. Returns the host path."""
    d = Path(root, directory.lstrip("/"))
    d.mkdir(parents=True, exist_ok=True)
    dst = d / filename
    shutil.copyfile(build_lib(soname, arch), dst)
    os.chmod(dst, 0o755)
    if soname_link and soname != filename:
        link = d / soname
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(filename)
    return directory.rstrip("/") + "/" + filename


def write_ld_so_conf(root: str | os.PathLike[str], directories: list[str]) -> None:
    """/etc/ld.so.conf in ``root`` listing ``directories`` (host paths), one per line."""
    etc = Path(root, "etc")
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "ld.so.conf").write_text("".join(d + "\n" for d in directories))


def run_ldconfig(
    root: str | os.PathLike[str], fmt: str = "new", cache: str = "/etc/ld.so.cache", *, update_links: bool = False
) -> Path:
    """Run the real ``ldconfig -r ROOT -c FMT -C CACHE`` and return the cache's real path.

    ``update_links`` False passes ``-X``, so the soname links stay exactly as the test made them
    (a stale link is the point of some tests); True lets ldconfig fix them like on a real host.
    """
    if fmt not in ("old", "new", "compat"):
        raise ValueError(fmt)
    root = Path(root)
    (root / "var/cache/ldconfig").mkdir(parents=True, exist_ok=True)
    cmd = [_tool("ldconfig"), "-r", str(root), "-c", fmt, "-C", cache]
    if not update_links:
        cmd.append("-X")
    _run(cmd)
    out = root / cache.lstrip("/")
    if not out.is_file():
        raise ToolMissing(f"{' '.join(cmd)} did not write {out}")
    return out


_LINE = re.compile(r"^\t(.*) \((.*)\) => (.*)$")


def ldconfig_print(cache_file: str | os.PathLike[str]) -> list[tuple[str, str, str]]:
    """``ldconfig -C FILE -p`` as (soname, text in parentheses, path), in the order printed."""
    r = subprocess.run([_tool("ldconfig"), "-C", str(cache_file), "-p"], capture_output=True)
    if r.returncode != 0:
        raise AssertionError(f"ldconfig -p {cache_file} failed: {r.stderr.decode(errors='replace')}")
    out = []
    for line in r.stdout.decode("utf-8", "surrogateescape").splitlines():
        m = _LINE.match(line)
        if m:
            out.append((m.group(1), m.group(2), m.group(3)))
    return out


@dataclass(frozen=True)
class DriverRoot:
    root: str  # the real directory
    cache: str  # real path of the ld.so.cache written by ldconfig
    directories: tuple[str, ...]  # ld.so.conf directories (host paths), in order
    files: dict[str, tuple[str, ...]] = field(default_factory=dict)  # version -> library files (host paths)


def make_driver_root(
    tmp: str | os.PathLike[str],
    versions: dict[str, list[str]],
    *,
    lib32: dict[str, list[str]] | None = None,
    libs: tuple[tuple[str, str], ...] = DRIVER_LIBS,
    fmt: str = "new",
    extra_dirs: tuple[str, ...] = (),
    update_links: bool = False,
) -> DriverRoot:
    """A host root with NVIDIA driver libraries of each version in the given directories.

    ``versions`` maps a driver version to the 64-bit (x86-64) directories holding its libraries;
    ``lib32`` the same for i386 libraries. Each library gets its versioned file plus the soname
    link; every directory goes into /etc/ld.so.conf in order of appearance; then the real
    ldconfig writes /etc/ld.so.cache in ``fmt``. Two versions in one directory: the soname link
    points to whichever version comes last in ``versions`` (as after an unclean reinstall).
    """
    require_tools()
    root = Path(tmp)
    root.mkdir(parents=True, exist_ok=True)
    dirs: dict[str, None] = {}
    files: dict[str, list[str]] = {}
    for arch, table in (("x86-64", versions), ("i386", lib32 or {})):
        for v, where in table.items():
            for d in where:
                dirs.setdefault(d, None)
                for stem, soname in libs:
                    so = soname.format(v=v)
                    files.setdefault(v, []).append(add_lib(root, d, f"{stem}.{v}", so, arch=arch))
    for d in extra_dirs:
        dirs.setdefault(d, None)
        Path(root, d.lstrip("/")).mkdir(parents=True, exist_ok=True)
    write_ld_so_conf(root, list(dirs))
    cache = run_ldconfig(root, fmt, update_links=update_links)
    return DriverRoot(
        root=str(root),
        cache=str(cache),
        directories=tuple(dirs),
        files={v: tuple(f) for v, f in files.items()},
    )


def make_many_root(
    tmp: str | os.PathLike[str], n: int = 2000, *, directory: str = "/usr/lib/many", fmt: str = "new"
) -> tuple[str, Path]:
    """A root whose cache holds ``n`` entries (plus nothing else), for size and speed tests.

    One real library without DT_SONAME, hard-linked ``n`` times as ``libmanyNNNN.so.1``: ldconfig
    then uses each file name as the soname, so ``n`` entries cost one gcc run. Returns (root, cache).
    """
    require_tools()
    key = ("x86-64", "")
    src = _built.get(key)
    if src is None or not src.exists():
        src = _workdir() / "x86-64-nosoname" / "lib.so"
        src.parent.mkdir(parents=True, exist_ok=True)
        _run([_tool("gcc"), "-shared", "-fPIC", "-o", str(src), str(_workdir() / "empty.c")])
        _built[key] = src
    root = Path(tmp)
    d = root / directory.lstrip("/")
    d.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        dst = d / f"libmany{i:05d}.so.1"
        try:
            os.link(src, dst)
        except OSError:  # another filesystem: copy instead
            shutil.copyfile(src, dst)
    write_ld_so_conf(root, [directory])
    return str(root), run_ldconfig(root, fmt)
