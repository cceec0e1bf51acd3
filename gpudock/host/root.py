"""Reading the host under a root prefix (``--root DIR``, default ``/``).

This module owns one thing: turning a *host* path ("/usr/lib/x86_64-linux-gnu/libcuda.so.1", as the
host itself would name it) into the file it means when the host's filesystem is mounted somewhere
else (a chroot, an image's rootfs, a test fixture). Symlinks are followed the way the kernel would
follow them after ``chroot(DIR)``: absolute link targets start again at DIR, ``..`` stops at DIR,
and more than 40 links in one lookup is an error (ELOOP), never a hang.

Every probe that reads host files goes through a :class:`HostRoot`, so that ``--root`` works
everywhere and tests can build a fake host in a temporary directory. Paths handed to and returned
by the public methods are always *host* paths (what the host would print); :meth:`HostRoot.path`
and :meth:`HostRoot.real` give the real paths on this machine for doing I/O.

No Textual import here, ever: the CLI and the doctor use this without a UI.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat as _stat
from collections.abc import Mapping

__all__ = ["HostRoot", "MAXSYMLINKS", "DeviceSpec"]

# A character device a root presents: (major, minor, permission bits).
DeviceSpec = tuple[int, int, int]
# os.stat_result's fields beyond the ten positional ones (float and ns times, blocks)
_STAT_EXTRA = (
    "st_atime",
    "st_mtime",
    "st_ctime",
    "st_atime_ns",
    "st_mtime_ns",
    "st_ctime_ns",
    "st_blksize",
    "st_blocks",
)

# Linux's MAXSYMLINKS (include/linux/namei.h): a path walk gives up with ELOOP after 40 links.
MAXSYMLINKS = 40

_MAGIC = frozenset("*?[")


def _walk(p: str) -> list[str]:
    """Components to walk for ``p``: like :func:`_split`, but "." (and a trailing "/", which
    means the same) stays, as a mark that what comes before it must be a directory: the kernel
    answers ENOTDIR for "file/." and "file/"."""
    comps = [c for c in p.split("/") if c]
    if p.endswith("/") and comps:
        comps.append(".")
    return comps


def _split(p: str) -> list[str]:
    # Empty and "." components are no-ops for the kernel too ("a//b/./c" == "a/b/c").
    return [c for c in p.split("/") if c and c != "."]


class HostRoot:
    """The host's filesystem as seen under ``path`` (``"/"``: this machine itself).

    For example, with ``r = HostRoot("/srv/rootfs")``:
    ``r.path("/etc/ld.so.cache")`` is ``"/srv/rootfs/etc/ld.so.cache"`` (lexical, no links followed);
    ``r.resolve("/usr/lib/libcuda.so.1")`` might be ``"/usr/lib/libcuda.so.535.129.03"`` (a host
    path, links followed inside the root); ``r.real(...)`` is that under ``/srv/rootfs``.
    """

    __slots__ = ("_root", "_prefix", "_devices")

    def __init__(self, path: str | os.PathLike[str] = "/", *, devices: Mapping[str, DeviceSpec] | None = None) -> None:
        root = os.path.abspath(os.fspath(path))
        # The root itself may be reached through host symlinks (e.g. /tmp -> /private/tmp); those
        # are outside the chroot and are the caller's business, so resolve them once, here.
        root = os.path.realpath(root)
        self._root = root
        # "" for "/" so that path("/x") is just "/x" with no double slash and no copying.
        self._prefix = "" if root == "/" else root
        # Character devices this root presents that its directory cannot hold: a simulated host
        # is laid out by an unprivileged process, which cannot mknod. Host path -> (major, minor,
        # mode); the path holds a placeholder file, so globbing and listing find it as they would
        # the node. stat()/lstat() report the device: the one place where gpudock looks at /dev.
        self._devices: dict[str, DeviceSpec] = dict(devices or {})

    # -- identity -------------------------------------------------------------------------------

    @property
    def root(self) -> str:
        """The real directory this host is mounted at ("/" for the live host)."""
        return self._root

    @property
    def is_live(self) -> bool:
        """True when this is the machine's own filesystem (root "/")."""
        return not self._prefix

    def __repr__(self) -> str:
        return f"HostRoot({self._root!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HostRoot) and other._root == self._root

    def __hash__(self) -> int:
        return hash(self._root)

    # -- mapping --------------------------------------------------------------------------------

    @staticmethod
    def _check(p: str | os.PathLike[str]) -> str:
        p = os.fspath(p)
        if not isinstance(p, str):
            raise TypeError(f"host path must be str, not {type(p).__name__}")
        if not p.startswith("/"):
            raise ValueError(f"host path must be absolute: {p!r}")
        return p

    def path(self, p: str | os.PathLike[str]) -> str:
        """The real path of host path ``p`` under the root, *without* following symlinks.

        Only safe for I/O when ``p`` contains no symlinks (the kernel would follow an absolute link
        out of the root); use :meth:`real` for anything that may be a link.
        """
        p = self._check(p)
        return self._prefix + p if self._prefix else p

    def real(self, p: str | os.PathLike[str], *, strict: bool = False) -> str:
        """The real path of the file host path ``p`` names, symlinks resolved inside the root."""
        r = self.resolve(p, strict=strict)
        return self._prefix + r if self._prefix else r

    def to_host(self, real_path: str) -> str | None:
        """Inverse of :meth:`path`: the host path of a real path, or None if it is outside the root."""
        real_path = os.path.normpath(real_path)
        if not self._prefix:
            return real_path
        if real_path == self._prefix:
            return "/"
        if real_path.startswith(self._prefix + "/"):
            return real_path[len(self._prefix) :]
        return None

    # -- resolution -----------------------------------------------------------------------------

    def resolve(self, p: str | os.PathLike[str], *, strict: bool = False) -> str:
        """Host path ``p`` with every symlink followed inside the root, as after ``chroot(root)``.

        The result is a normalised absolute *host* path. Like ``os.path.realpath``, a missing
        component (a dangling link, a file that is not there) ends the walk and the rest of the path
        is appended as written (``..`` still applied lexically), unless ``strict`` is true, which raises
        FileNotFoundError (or NotADirectoryError) instead. More than :data:`MAXSYMLINKS` links raises
        ``OSError(ELOOP)`` naming the path, the root and the link where it gave up.
        """
        p = self._check(p)
        prefix = self._prefix
        lstat = os.lstat
        readlink = os.readlink
        S_ISLNK = _stat.S_ISLNK
        S_ISDIR = _stat.S_ISDIR

        # Work list of components still to walk, reversed so pop() is O(1).
        todo = _walk(p)
        todo.reverse()
        # stack[i] is the resolved host path of the first i components (no links among them);
        # keeping every prefix makes ".." a pop and each step one string concatenation.
        stack = [""]
        hops = 0
        while todo:
            name = todo.pop()
            if name == ".":
                continue  # the component before it was checked to be a directory (strict)
            if name == "..":
                if len(stack) > 1:  # ".." at the root stays at the root: no escaping
                    stack.pop()
                continue
            cur = stack[-1] + "/" + name
            try:
                st = lstat(prefix + cur)
            except (FileNotFoundError, NotADirectoryError) as e:
                if strict:
                    raise type(e)(e.errno, f"{e.strerror} (resolving {p} under {self._root})", cur) from None
                # Missing: not a link, so keep it as written (os.path.realpath does the same).
                stack.append(cur)
                continue
            if not S_ISLNK(st.st_mode):
                if strict and todo and not S_ISDIR(st.st_mode):
                    raise NotADirectoryError(errno.ENOTDIR, f"Not a directory (resolving {p} under {self._root})", cur)
                stack.append(cur)
                continue
            hops += 1
            if hops > MAXSYMLINKS:
                raise OSError(
                    errno.ELOOP,
                    f"Too many levels of symbolic links (more than {MAXSYMLINKS}) resolving {p} "
                    f"under {self._root}; gave up at {cur}",
                    cur,
                )
            target = readlink(prefix + cur)
            if target.startswith("/"):
                del stack[1:]  # absolute target: start again at the root, not at the real "/"
            comps = _walk(target)
            comps.reverse()
            todo.extend(comps)
        return stack[-1] or "/"

    # -- convenience I/O ------------------------------------------------------------------------

    def lstat(self, p: str | os.PathLike[str]) -> os.stat_result:
        """lstat() of host path ``p``: its directories are resolved inside the root, its last
        component is not followed. Raises FileNotFoundError like os.lstat."""
        p = self._check(p)
        head, _, tail = p.rstrip("/").rpartition("/")
        if not tail:  # "/" itself
            return os.lstat(self._root)
        d = self.resolve(head or "/")
        host = (d if d != "/" else "") + "/" + tail
        st = os.lstat(self._prefix + host)
        return self._device_stat(host, st) if self._devices else st

    def stat(self, p: str | os.PathLike[str]) -> os.stat_result:
        """stat() of host path ``p`` with links followed inside the root."""
        if self._devices:
            host = self.resolve(p, strict=True)
            return self._device_stat(host, os.stat(self._prefix + host))
        return os.stat(self.real(p, strict=True))

    def _device_stat(self, host: str, st: os.stat_result) -> os.stat_result:
        spec = self._devices.get(host)
        if spec is None or not _stat.S_ISREG(st.st_mode):
            return st
        major, minor, mode = spec
        fields = list(st)
        fields[0] = _stat.S_IFCHR | (mode & 0o7777)
        fields[6] = 0  # st_size
        extra = {name: getattr(st, name) for name in _STAT_EXTRA}
        extra["st_rdev"] = os.makedev(major, minor)
        return os.stat_result(fields, extra)

    def exists(self, p: str | os.PathLike[str]) -> bool:
        """True when ``p`` names something, links followed inside the root (False for a dangling
        link or a link loop)."""
        try:
            self.stat(p)
        except OSError:
            return False
        return True

    def lexists(self, p: str | os.PathLike[str]) -> bool:
        """True when ``p`` exists, counting a dangling symlink as existing."""
        try:
            self.lstat(p)
        except OSError:
            return False
        return True

    def is_symlink(self, p: str | os.PathLike[str]) -> bool:
        try:
            return _stat.S_ISLNK(self.lstat(p).st_mode)
        except OSError:
            return False

    def is_dir(self, p: str | os.PathLike[str]) -> bool:
        try:
            return _stat.S_ISDIR(self.stat(p).st_mode)
        except OSError:
            return False

    def readlink(self, p: str | os.PathLike[str]) -> str:
        """The target of symlink ``p``, verbatim (an absolute target is a *host* path)."""
        p = self._check(p)
        head, _, tail = p.rstrip("/").rpartition("/")
        d = self.resolve(head or "/")
        return os.readlink(self._prefix + (d if d != "/" else "") + "/" + tail)

    def read_bytes(self, p: str | os.PathLike[str], limit: int = 16 << 20) -> bytes | None:
        """At most ``limit`` bytes of file ``p``; None when it is absent (or a dangling link).

        Other errors (permission, a directory, a link loop) propagate: they are worth reporting.
        """
        try:
            real = self.real(p, strict=True)
            with open(real, "rb", buffering=0) as f:
                # read(limit) would allocate ``limit`` bytes up front (64 MiB for the ld.so.cache
                # bound, ~100 us); ask for what fstat says is there, one byte more to notice
                # growth. /proc and /sys report size 0: read those in chunks.
                size = os.fstat(f.fileno()).st_size
                chunks: list[bytes] = []
                got = 0
                want = min(limit, size + 1) if size else min(limit, 65536)
                while got < limit:
                    b = f.read(want if not chunks else min(65536, limit - got))
                    if not b:
                        break
                    chunks.append(b)
                    got += len(b)
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                return data[:limit]
        except (FileNotFoundError, NotADirectoryError):
            return None

    def read_text(self, p: str | os.PathLike[str], limit: int = 1 << 20, errors: str = "replace") -> str | None:
        """At most ``limit`` bytes of file ``p`` decoded as UTF-8; None when it is absent.

        /proc and /sys files report size 0, so this reads rather than trusting st_size.
        """
        data = self.read_bytes(p, limit)
        return None if data is None else data.decode("utf-8", errors)

    def listdir(self, p: str | os.PathLike[str]) -> list[str]:
        """Sorted names in directory ``p`` (links followed inside the root); [] when it is absent
        or not a directory."""
        try:
            return sorted(os.listdir(self.real(p, strict=True)))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def glob(self, pattern: str) -> list[str]:
        """Host paths matching an absolute shell pattern (``*``, ``?``, ``[...]`` per component),
        sorted. Directories along the way are followed *inside* the root (``glob.glob`` on the
        real path would follow absolute links out of it). Dangling links do match, like glob.glob.
        Hidden names match only a pattern component that starts with a dot, as in the shell.
        """
        pattern = self._check(pattern)
        comps = _split(pattern)
        found = ["/"]
        for i, comp in enumerate(comps):
            last = i == len(comps) - 1
            nxt: list[str] = []
            for base in found:
                sep = "" if base == "/" else "/"
                if _MAGIC.isdisjoint(comp):
                    cand = base + sep + comp
                    if self.lexists(cand) if last else self.is_dir(cand):
                        nxt.append(cand)
                    continue
                names = self.listdir(base)
                if not comp.startswith("."):
                    names = [n for n in names if not n.startswith(".")]
                for n in fnmatch.filter(names, comp):
                    cand = base + sep + n
                    if last or self.is_dir(cand):
                        nxt.append(cand)
            found = nxt
            if not found:
                break
        return sorted(found) if comps else ["/"]
