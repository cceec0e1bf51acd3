"""gpudock.host.root.HostRoot: reading a host under --root, symlinks resolved as after chroot.

The property test at the bottom compares our resolution with the kernel's own: a forked child
chroots into the same tree and asks the kernel (open + /proc/self/fd) where each path leads.
"""

from __future__ import annotations

import errno
import os
import string
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpudock.host.root import MAXSYMLINKS, HostRoot


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (r / "etc").mkdir()
    lib = r / "usr/lib/x86_64-linux-gnu"
    (lib / "libnvidia-ml.so.535.129.03").write_text("ELF-ish")
    (lib / "libnvidia-ml.so.1").symlink_to("libnvidia-ml.so.535.129.03")  # relative
    (lib / "libcuda.so.1").symlink_to("/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1")  # absolute
    (r / "lib").symlink_to("usr/lib")  # merged-usr style directory link
    (r / "lib64").symlink_to("/usr/lib")  # absolute directory link: must stay inside
    (r / "etc/passwd").write_text("root-inside\n")
    (r / "etc/escape").symlink_to("../../../../../../../../etc/passwd")  # .. cannot leave
    (r / "etc/abs-passwd").symlink_to("/etc/passwd")  # must be the root's, not the host's
    (r / "etc/dotdot-abs").symlink_to("/../../etc/passwd")
    (r / "etc/dangling").symlink_to("nothere.so.1")
    (r / "etc/dangling-abs").symlink_to("/opt/nvidia/gone.so")
    (r / "etc/loop1").symlink_to("loop2")
    (r / "etc/loop2").symlink_to("loop1")
    (r / "etc/self").symlink_to("self")
    (r / "etc/via-dir").symlink_to("../lib/x86_64-linux-gnu/libcuda.so.1")
    return r


def test_path_is_lexical_and_rejects_relative(tree: Path) -> None:
    h = HostRoot(tree)
    assert h.path("/etc/passwd") == str(tree / "etc/passwd")
    assert h.path("/") == str(tree) + "/"
    assert HostRoot("/").path("/etc/passwd") == "/etc/passwd"
    assert HostRoot().is_live and not h.is_live
    with pytest.raises(ValueError, match="absolute"):
        h.path("etc/passwd")
    with pytest.raises(ValueError):
        h.resolve("usr/lib")


def test_root_given_through_a_symlink_is_canonical(tree: Path, tmp_path: Path) -> None:
    (tmp_path / "alias").symlink_to(tree)
    h = HostRoot(tmp_path / "alias")
    assert h.root == str(tree)
    assert h == HostRoot(tree) and hash(h) == hash(HostRoot(tree))


@pytest.mark.parametrize(
    "path, expected",
    [
        ("/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1", "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.535.129.03"),
        ("/usr/lib/x86_64-linux-gnu/libcuda.so.1", "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.535.129.03"),
        ("/lib/x86_64-linux-gnu/libnvidia-ml.so.1", "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.535.129.03"),
        ("/lib64/x86_64-linux-gnu/libcuda.so.1", "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.535.129.03"),
        ("/etc/escape", "/etc/passwd"),
        ("/etc/abs-passwd", "/etc/passwd"),
        ("/etc/dotdot-abs", "/etc/passwd"),
        ("/etc/via-dir", "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.535.129.03"),
        # ".." after a directory link goes to the link target's parent, as in the kernel
        ("/lib/../etc/passwd", "/usr/etc/passwd"),
        ("/../../..", "/"),
        ("/", "/"),
        ("//usr/./lib//", "/usr/lib"),
        # non-strict: a missing tail is kept as written (like os.path.realpath)
        ("/etc/dangling", "/etc/nothere.so.1"),
        ("/etc/dangling-abs", "/opt/nvidia/gone.so"),
        ("/no/such/../file", "/no/file"),
    ],
)
def test_resolve(tree: Path, path: str, expected: str) -> None:
    assert HostRoot(tree).resolve(path) == expected


def test_real_and_to_host(tree: Path) -> None:
    h = HostRoot(tree)
    real = h.real("/etc/abs-passwd")
    assert real == str(tree / "etc/passwd")
    assert h.to_host(real) == "/etc/passwd"
    assert h.to_host(str(tree)) == "/"
    assert h.to_host("/somewhere/else") is None
    assert HostRoot("/").to_host("/x/../y") == "/y"


@pytest.mark.parametrize("link", ["/etc/loop1", "/etc/self", "/etc/loop1/below"])
def test_loops_raise_eloop_quickly(tree: Path, link: str) -> None:
    t = time.monotonic()
    with pytest.raises(OSError) as ei:
        HostRoot(tree).resolve(link)
    assert time.monotonic() - t < 1.0
    assert ei.value.errno == errno.ELOOP
    assert "Too many levels of symbolic links" in str(ei.value)
    assert str(tree) in str(ei.value)


def _chain(r: Path, n: int) -> str:
    """n links: c0 -> c1 -> ... -> c(n-1) -> target file."""
    (r / "chain").mkdir()
    (r / "chain/target").write_text("end")
    for i in range(n):
        nxt = f"c{i + 1}" if i + 1 < n else "target"
        (r / f"chain/c{i}").symlink_to(nxt)
    return "/chain/c0"


def test_forty_links_is_fine_forty_one_is_a_loop(tmp_path: Path) -> None:
    ok, bad = tmp_path / "ok", tmp_path / "bad"
    ok.mkdir()
    bad.mkdir()
    assert HostRoot(ok).resolve(_chain(ok, MAXSYMLINKS)) == "/chain/target"
    with pytest.raises(OSError) as ei:
        HostRoot(bad).resolve(_chain(bad, MAXSYMLINKS + 1))
    assert ei.value.errno == errno.ELOOP
    # The kernel agrees on the limit (this runs on the real filesystem, no chroot needed).
    os.stat(str(ok) + "/chain/c0")
    with pytest.raises(OSError) as ki:
        os.stat(str(bad) + "/chain/c0")
    assert ki.value.errno == errno.ELOOP


def test_strict_resolution_raises_on_missing(tree: Path) -> None:
    h = HostRoot(tree)
    with pytest.raises(FileNotFoundError):
        h.resolve("/etc/dangling", strict=True)
    with pytest.raises(NotADirectoryError):
        h.resolve("/etc/passwd/x", strict=True)
    assert h.resolve("/etc/abs-passwd", strict=True) == "/etc/passwd"


def test_read_text_and_bytes(tree: Path) -> None:
    h = HostRoot(tree)
    assert h.read_text("/etc/escape") == "root-inside\n"  # never the host's /etc/passwd
    assert h.read_text("/etc/abs-passwd") == "root-inside\n"
    assert h.read_text("/etc/passwd", limit=4) == "root"
    assert h.read_bytes("/usr/lib/x86_64-linux-gnu/libcuda.so.1") == b"ELF-ish"
    assert h.read_text("/etc/missing") is None
    assert h.read_text("/etc/dangling") is None
    assert h.read_text("/etc/passwd/below") is None
    with pytest.raises(OSError) as ei:
        h.read_text("/etc/loop1")
    assert ei.value.errno == errno.ELOOP
    with pytest.raises(IsADirectoryError):
        h.read_text("/etc")


def test_exists_lstat_listdir(tree: Path) -> None:
    h = HostRoot(tree)
    assert h.exists("/lib64/x86_64-linux-gnu/libcuda.so.1")
    assert not h.exists("/etc/dangling") and h.lexists("/etc/dangling")
    assert not h.exists("/etc/loop1") and h.lexists("/etc/loop1")
    assert not h.lexists("/etc/nope")
    assert h.is_symlink("/etc/dangling") and not h.is_symlink("/etc/passwd")
    assert h.is_dir("/lib64") and not h.is_dir("/etc/passwd")
    assert h.readlink("/lib64") == "/usr/lib"
    # lstat follows the directories (inside the root) but not the last component
    assert (
        h.lstat("/lib64/x86_64-linux-gnu/libcuda.so.1").st_ino
        == os.lstat(tree / "usr/lib/x86_64-linux-gnu/libcuda.so.1").st_ino
    )
    assert h.stat("/etc/abs-passwd").st_ino == os.stat(tree / "etc/passwd").st_ino
    assert h.listdir("/lib64/x86_64-linux-gnu") == sorted(os.listdir(tree / "usr/lib/x86_64-linux-gnu"))
    assert h.listdir("/nope") == [] and h.listdir("/etc/passwd") == []


def test_glob_stays_inside(tree: Path) -> None:
    h = HostRoot(tree)
    assert h.glob("/lib64/x86_64-linux-gnu/libnvidia-ml.so.*") == [
        "/lib64/x86_64-linux-gnu/libnvidia-ml.so.1",
        "/lib64/x86_64-linux-gnu/libnvidia-ml.so.535.129.03",
    ]
    assert h.glob("/*/x86_64-linux-gnu/libcuda.so.1") == [
        "/lib/x86_64-linux-gnu/libcuda.so.1",
        "/lib64/x86_64-linux-gnu/libcuda.so.1",
    ]
    assert h.glob("/*/*/x86_64-linux-gnu/libcuda.so.1") == ["/usr/lib/x86_64-linux-gnu/libcuda.so.1"]
    assert "/etc/dangling" in h.glob("/etc/dang*")  # dangling links match, like glob.glob
    assert h.glob("/nothing/*") == []
    assert h.glob("/") == ["/"]


def test_live_root_agrees_with_realpath() -> None:
    h = HostRoot("/")
    for p in ["/usr/lib", "/proc/self/..", "/etc/ld.so.cache", tempfile.gettempdir()]:
        assert h.resolve(p) == os.path.realpath(p), p


# -- property: same answer as the kernel after chroot ---------------------------------------------

_NAMES = ["a", "b", "c", "d"]
_targets = st.lists(st.sampled_from(_NAMES + ["..", "."]), min_size=0, max_size=4).flatmap(
    lambda comps: st.sampled_from(["/", ""]).map(lambda lead: lead + "/".join(comps) if comps else lead or "..")
)


@st.composite
def _trees(draw):
    # Nodes live at /a../d and /x/a../x/d; each is a dir, a file, a link or absent.
    entries = {}
    for d in ("", "/x"):
        for n in _NAMES:
            kind = draw(st.sampled_from(["dir", "file", "link", "link", "none"]))
            if kind == "link":
                entries[f"{d}/{n}"] = ("link", draw(_targets))
            else:
                entries[f"{d}/{n}"] = (kind, None)
    entries["/x"] = ("dir", None)
    queries = draw(
        st.lists(
            st.lists(st.sampled_from(_NAMES + ["x", ".."]), min_size=1, max_size=5).map(lambda c: "/" + "/".join(c)),
            min_size=1,
            max_size=8,
        )
    )
    return entries, queries


def _kernel_resolve(root: str, queries: list[str]) -> list[tuple[str, object]]:
    """In a forked child: chroot(root) and let the kernel resolve each query."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            proc_fd = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY)
            os.chroot(root)
            os.chdir("/")
            out = []
            for q in queries:
                try:
                    fd = os.open(q, os.O_PATH)
                except OSError as e:
                    out.append(("err", e.errno))
                    continue
                # /proc/self/fd/N shows the path relative to our (chrooted) root.
                out.append(("ok", os.readlink(str(fd), dir_fd=proc_fd)))
                os.close(fd)
            os.write(wfd, repr(out).encode())
        finally:
            os._exit(0)
    os.close(wfd)
    chunks = []
    while True:
        b = os.read(rfd, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(rfd)
    os.waitpid(pid, 0)
    import ast

    return ast.literal_eval(b"".join(chunks).decode())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_trees())
def test_resolve_matches_the_kernel_in_a_chroot(spec) -> None:
    assert os.geteuid() == 0, "this test compares with a real chroot and must run as root"
    entries, queries = spec
    with tempfile.TemporaryDirectory() as tmp:
        r = Path(tmp)
        for path in sorted(entries, key=len):
            kind, target = entries[path]
            p = r / path.lstrip("/")
            if not p.parent.is_dir():
                continue  # parent is not a directory in this draw
            if kind == "dir":
                p.mkdir()
            elif kind == "file":
                p.write_text("f")
            elif kind == "link":
                p.symlink_to(target)
        kernel = _kernel_resolve(str(r), queries)
        h = HostRoot(r)
        for q, (status, val) in zip(queries, kernel):
            try:
                mine = ("ok", h.resolve(q, strict=True))
            except OSError as e:
                mine = ("err", e.errno)
            assert mine == (status, val), (q, entries)
            # the descriptor walk (what reads and writes go through) lands on the same file
            try:
                with h.walk(q) as (dfd, name, host):
                    os.stat(name, dir_fd=dfd, follow_symlinks=False)
                    walked = ("ok", host)
            except OSError as e:
                walked = ("err", e.errno)
            assert walked == (status, val), (q, entries)


def test_resolution_is_fast(tree: Path) -> None:
    h = HostRoot(tree)
    p = "/lib64/x86_64-linux-gnu/libcuda.so.1"
    n = 2000
    t = time.perf_counter()
    for _ in range(n):
        h.resolve(p)
    per = (time.perf_counter() - t) / n
    # ~6 lstat/readlink syscalls; generous bound so a loaded CI box does not flake.
    assert per < 500e-6, f"{per * 1e6:.1f} us per resolve"


def test_names_with_odd_bytes(tmp_path: Path) -> None:
    odd = "lib\udcff" + string.punctuation.replace("/", "")  # undecodable byte, shell chars
    (tmp_path / odd).write_text("x")
    (tmp_path / "l").symlink_to(odd)
    assert HostRoot(tmp_path).resolve("/l") == "/" + odd


def test_a_trailing_slash_demands_a_directory_as_the_kernel_does(tree: Path) -> None:
    (tree / "etc/to-file-dot").symlink_to("/etc/passwd/.")
    h = HostRoot(tree)
    for p in ("/etc/passwd/", "/etc/passwd/.", "/etc/to-file-dot", "/etc/abs-passwd/"):
        with pytest.raises(NotADirectoryError):
            h.resolve(p, strict=True)
        with pytest.raises(NotADirectoryError), h.walk(p):
            pass
        assert h.read_bytes(p) is None
    assert h.resolve("/usr/lib/", strict=True) == "/usr/lib"
    with h.walk("/lib64/") as (dfd, name, host):
        assert (name, host) == (".", "/usr/lib") and os.path.samestat(
            os.stat(name, dir_fd=dfd), os.stat(tree / "usr/lib")
        )


def test_walk_reaches_the_same_file_as_resolve_and_never_leaves(tree: Path) -> None:
    h = HostRoot(tree)
    for p in ("/lib64/x86_64-linux-gnu/libcuda.so.1", "/etc/abs-passwd", "/etc/escape", "/etc/dotdot-abs"):
        with h.walk(p) as (dfd, name, host):
            assert host == h.resolve(p, strict=True)
            assert os.path.samestat(os.stat(name, dir_fd=dfd), os.stat(h.real(p)))
    with pytest.raises(OSError) as ei, h.walk("/etc/loop1"):
        pass
    assert ei.value.errno == errno.ELOOP and "more than 40" in str(ei.value)
    with h.walk("/etc/dangling-abs", create=True) as (dfd, name, host):  # made inside the root
        assert host == "/opt/nvidia/gone.so" and name == "gone.so"
    assert (tree / "opt/nvidia").is_dir()
