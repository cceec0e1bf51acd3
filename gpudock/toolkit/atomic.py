"""The one safe-read and safe-write primitive for every file gpudock edits on the host.

Owns: naming such a file (``HostFile``: a host path under a :class:`~gpudock.host.root.HostRoot`),
reading it together with a fingerprint of what was read (``read_snapshot``), and replacing it
(``atomic_write``) so that at every instant the path holds either the old bytes or the new bytes,
never a partial file, with its mode and owner kept and the previous version kept next to it as
``<name>.gpudock-bak``.

Confinement: every path is walked from the root with directory descriptors
(:meth:`HostRoot.walk`), links followed inside the root as a chroot would; the file, its backup,
its temp file, its lock and any directory created are all reached through that descriptor, so
nothing under ``--root DIR`` can lead out of DIR, and a link loop is an error, never a guess.

Concurrency: a lock file beside the target (``.<name>.gpudock-lock``, flock) is held from the
re-check through the rename, so two gpudock processes never interleave there; a file that changed
between our read and our write (another gpudock, an editor, a package's postinst) is refused
(``FileChangedError``), never overwritten. A command that edits without asking anyone can hold
the same lock across its whole read-merge-write (``edit_lock``), so concurrent writers queue up
and each one's change is kept. Temp files are only ever made under the lock, so any found there
are a killed writer's and are removed at once.

Only regular files are read (a FIFO or a device planted where a config file should be is refused
before it is opened), at most ``MAX_FILE_SIZE`` bytes. Every failure is an ``AtomicWriteError``
whose message names the file, says what is wrong and what to do.

Plain Python, no Textual: the CLI, the TUI and the tests share it.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from gpudock.host.root import HostRoot, NotRegularFileError, open_regular, read_capped

BACKUP_SUFFIX = ".gpudock-bak"
TEMP_SUFFIX = ".gpudock-tmp"
LOCK_SUFFIX = ".gpudock-lock"
# config.toml and daemon.json are a few KiB; a bigger "config file" is the wrong file.
MAX_FILE_SIZE = 4 << 20
# How long a writer waits for another gpudock to finish writing the same file.
LOCK_TIMEOUT_S = 30.0

_LIVE = HostRoot("/")
_TEMP_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"


class AtomicWriteError(Exception):
    """Base class: the file was not read or not written; the message says what to do."""

    def __init__(self, message: str, path: str):
        super().__init__(message)
        self.path = path


class FileChangedError(AtomicWriteError):
    """The file changed on disk between our read and our write; we did not overwrite it."""


class PermissionDeniedError(AtomicWriteError):
    """No permission to read or write the file (or its directory)."""


class FileAccessError(AtomicWriteError):
    """Any other reason the file cannot be used: a link loop, not a regular file, a full disk, a
    read-only filesystem, too big. ``errno`` is the system's error number where there is one."""

    def __init__(self, message: str, path: str, errno_: int | None = None):
        super().__init__(message, path)
        self.errno = errno_


def permission_message(path: str, verb: str = "write") -> str:
    return f"cannot {verb} {path}: permission denied; run gpudock as root (e.g. with sudo)"


@dataclass(frozen=True, slots=True)
class HostFile:
    """A file as the host names it: host path ``path`` (absolute) under ``root``.

    ``label`` is how messages name it (default: where it is on this machine, links followed inside
    the root). A plain string given where a HostFile is expected is a path on this machine
    (``HostFile.of``), as ``--config PATH`` and ``--daemon-json PATH`` are.
    """

    root: HostRoot
    path: str
    label: str | None = None

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError(f"host path must be absolute: {self.path!r}")

    @classmethod
    def of(cls, path: str | os.PathLike[str] | HostFile) -> HostFile:
        if isinstance(path, HostFile):
            return path
        given = os.fspath(path)
        if not isinstance(given, str):
            raise TypeError(f"path must be str, not {type(given).__name__}")
        return cls(_LIVE, os.path.abspath(given), given)

    @property
    def shown(self) -> str:
        """The name to show: ``label``, else the path on this machine (links resolved inside the
        root where they resolve; as written where they do not, e.g. in a loop)."""
        if self.label is not None:
            return self.label
        try:
            return self.root.real(self.path)
        except (OSError, ValueError):
            return self.root.path(self.path)

    def __str__(self) -> str:
        return self.shown


@dataclass(frozen=True, slots=True)
class FileSnapshot:
    """What a file was when we read it: its bytes and enough metadata to notice any change.

    ``exists`` False means the file was absent at read time (``data`` is empty); writing with
    such a snapshot refuses if the file has appeared since. ``file`` is where it was read from
    (``atomic_write`` writes there).
    """

    path: str
    exists: bool
    data: bytes = b""
    sha256: str = ""
    size: int = 0
    mtime_ns: int = 0
    inode: int = 0
    dev: int = 0
    mode: int = 0o644
    uid: int = -1
    gid: int = -1
    file: HostFile | None = None

    def same_as(self, other: FileSnapshot) -> bool:
        if self.exists != other.exists:
            return False
        if not self.exists:
            return True
        return (
            self.sha256 == other.sha256
            and self.size == other.size
            and self.inode == other.inode
            and self.dev == other.dev
            and self.mtime_ns == other.mtime_ns
        )


@dataclass(frozen=True, slots=True)
class WriteResult:
    path: str
    backup: str | None  # where the previous version was kept; None for a new file
    bytes_written: int


# --------------------------------------------------------------------------- errors in words


def explain(e: OSError, f: HostFile, verb: str = "write") -> AtomicWriteError:
    """An OSError met while reading (``verb`` "read") or writing ``f``, said for an operator."""
    shown = f.shown
    code = e.errno
    if isinstance(e, NotRegularFileError):
        return FileAccessError(
            f"cannot {verb} {shown}: it is {e.kind}, not a regular file; gpudock reads and edits only "
            "regular files - point it at the file itself",
            shown,
            code,
        )
    if code in (errno.EACCES, errno.EPERM):
        return PermissionDeniedError(permission_message(shown, verb), shown)
    if code == errno.EROFS:
        return FileAccessError(
            f"cannot {verb} {shown}: the filesystem it is on is mounted read-only; remount it read-write "
            "(mount -o remount,rw MOUNTPOINT) or work on a writable copy with --root",
            shown,
            code,
        )
    if code in (errno.ENOSPC, errno.EDQUOT):
        return FileAccessError(
            f"cannot {verb} {shown}: no space left on the filesystem that holds it (the file is unchanged); "
            "free some space there and try again",
            shown,
            code,
        )
    if code == errno.ELOOP:
        detail = e.strerror or "Too many levels of symbolic links"
        if "resolving" not in detail and e.filename:
            detail += f" at {e.filename}"
        return FileAccessError(
            f"cannot {verb} {shown}: {detail} (a link loop?); fix the links (gpudock left everything untouched)",
            shown,
            code,
        )
    if code == errno.EISDIR:
        return FileAccessError(
            f"cannot {verb} {shown}: it is a directory, not a file; name the file itself", shown, code
        )
    if code == errno.ENOTDIR:
        return FileAccessError(
            f"cannot {verb} {shown}: {e.filename or 'a component of the path'} is not a directory", shown, code
        )
    if code == errno.ENOENT:
        return FileAccessError(f"cannot {verb} {shown}: {e.filename or 'its directory'} does not exist", shown, code)
    return FileAccessError(f"cannot {verb} {shown}: {e.strerror or e}", shown, code)


# --------------------------------------------------------------------------- reading


def _snapshot_at(dfd: int, name: str, f: HostFile, shown: str) -> FileSnapshot:
    """Read entry ``name`` of directory ``dfd`` (not following a link: the walk already did)."""
    try:
        fd = open_regular(name, dfd, f.path)
    except FileNotFoundError:
        return FileSnapshot(path=shown, exists=False, file=f)
    try:
        # fstat and read the same open file so the metadata matches the bytes we got
        st = os.fstat(fd)
        data = read_capped(fd, st.st_size, MAX_FILE_SIZE + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_SIZE:
        raise FileAccessError(
            f"cannot read {shown}: it is larger than {MAX_FILE_SIZE >> 20} MiB, far more than any config file; "
            "is it the right file?",
            shown,
            errno.EFBIG,
        )
    return FileSnapshot(
        path=shown,
        exists=True,
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        inode=st.st_ino,
        dev=st.st_dev,
        mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid,
        gid=st.st_gid,
        file=f,
    )


def read_snapshot(path: str | os.PathLike[str] | HostFile) -> FileSnapshot:
    """Read ``path`` (a :class:`HostFile`, or a path on this machine) and fingerprint it. A missing
    file (or a missing directory on the way) gives ``exists=False``.

    Raises PermissionDeniedError when the file cannot be read, FileAccessError for a link loop, a
    file that is not a regular file, one larger than MAX_FILE_SIZE.
    """
    f = HostFile.of(path)
    shown = f.shown
    try:
        with f.root.walk(f.path) as (dfd, name, _host):
            return _snapshot_at(dfd, name, f, shown)
    except FileNotFoundError:
        return FileSnapshot(path=shown, exists=False, file=f)
    except OSError as e:
        raise explain(e, f, "read") from e


# --------------------------------------------------------------------------- the lock

_held = threading.local()  # .keys: the (st_dev, st_ino) of lock files this thread holds


def _held_keys() -> set:
    keys = getattr(_held, "keys", None)
    if keys is None:
        keys = _held.keys = set()
    return keys


@contextmanager
def _locked(dfd: int, name: str, f: HostFile) -> Iterator[None]:
    """Hold ``.<name>.gpudock-lock`` in directory ``dfd``: gpudock writers of one file take turns.

    The lock file is never removed (removing it would let a waiter lock a file nobody else sees).
    A thread that already holds it (``edit_lock`` around ``atomic_write``) goes straight on.
    """
    lname = f".{name}{LOCK_SUFFIX}"
    try:
        st = os.stat(lname, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISREG(st.st_mode):
            raise FileAccessError(
                f"cannot write {f.shown}: its lock {lname} is {NotRegularFileError(lname, st.st_mode).kind}, not "
                "gpudock's lock file; remove it and try again",
                f.shown,
            )
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    deadline = time.monotonic() + LOCK_TIMEOUT_S
    held = _held_keys()
    while True:
        fd = os.open(lname, flags, 0o600, dir_fd=dfd)
        try:
            mine = os.fstat(fd)
            if not stat.S_ISREG(mine.st_mode):
                raise NotRegularFileError(lname, mine.st_mode)
            key = (mine.st_dev, mine.st_ino)
            if key in held:
                break  # this thread holds it already
            _flock(fd, f, lname, deadline)
            try:
                now = os.stat(lname, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                now = None
            if now is None or (now.st_dev, now.st_ino) != key:
                continue  # someone replaced the lock file while we waited: lock the one that is there
            held.add(key)
            try:
                yield
            finally:
                held.discard(key)
            return
        finally:
            os.close(fd)  # closing the descriptor releases the flock
    yield  # re-entrant: the outer holder releases it


def _flock(fd: int, f: HostFile, lname: str, deadline: float) -> None:
    pause = 0.002
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise FileAccessError(
                    f"cannot write {f.shown}: another gpudock has been writing it for {LOCK_TIMEOUT_S:.0f} s "
                    f"(it holds {lname}); try again when it is done",
                    f.shown,
                    errno.EAGAIN,
                ) from None
            time.sleep(pause)
            pause = min(pause * 2, 0.05)


@contextmanager
def edit_lock(path: str | os.PathLike[str] | HostFile, *, make_parents: bool = False) -> Iterator[None]:
    """Hold the file's lock across a whole read-merge-write, for edits nobody confirms in between
    (``toolkit runtime register``, ``debug --yes``): another gpudock editing the same file waits,
    then reads what this one wrote. ``atomic_write`` inside it does not lock again."""
    f = HostFile.of(path)
    try:
        with f.root.walk(f.path, create=make_parents) as (dfd, name, _host), _locked(dfd, name, f):
            yield
    except OSError as e:
        raise explain(e, f, "write") from e


# --------------------------------------------------------------------------- writing


def _fsync_dir(dfd: int) -> None:
    try:
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dfd)
    except OSError:
        return  # some filesystems do not let a directory be opened; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temp_name(name: str) -> str:
    return f".{name}.{''.join(secrets.choice(_TEMP_CHARS) for _ in range(8))}{TEMP_SUFFIX}"


def _write_temp(dfd: int, name: str, data: bytes, mode: int, uid: int, gid: int) -> str:
    """Write ``data`` to a new temp file in directory ``dfd``, owner and mode set, fsynced. Returns
    its name. O_EXCL|O_NOFOLLOW: a link planted at a temp name is never followed."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(100):
        tmp = _temp_name(name)
        try:
            fd = os.open(tmp, flags, 0o600, dir_fd=dfd)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 37**8 names
        raise FileExistsError(errno.EEXIST, "no free temp file name", name)
    try:
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            # chown before chmod: chown clears set-id bits, chmod then puts the exact mode back
            if uid >= 0 and (uid, gid) != (os.geteuid(), os.getegid()):
                os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        _unlink_quietly(dfd, tmp)
        raise
    return tmp


def _unlink_quietly(dfd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dfd)
    except OSError:
        pass


def _temp_pattern(name: str) -> re.Pattern[str]:
    # exactly our temp names for this file (and its backup), not those of "<name>.other"
    n = re.escape(name)
    return re.compile(rf"\.{n}(?:{re.escape(BACKUP_SUFFIX)})?\.[{_TEMP_CHARS}]{{8}}{re.escape(TEMP_SUFFIX)}")


def _clean_temps(dfd: int, name: str) -> None:
    """Remove temp files of ``name`` left by a killed writer. Called under the lock: every writer
    makes its temps under it, so none found here belongs to a writer still running."""
    try:
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dfd)
    except OSError:
        return
    try:
        entries = os.listdir(fd)
    except OSError:
        return
    finally:
        os.close(fd)
    pat = _temp_pattern(name)
    for entry in entries:
        if pat.fullmatch(entry):
            try:
                if stat.S_ISREG(os.stat(entry, dir_fd=dfd, follow_symlinks=False).st_mode):
                    os.unlink(entry, dir_fd=dfd)
            except OSError:
                pass


def atomic_write(
    path: str | os.PathLike[str] | HostFile,
    data: bytes,
    expected: FileSnapshot,
    *,
    backup: bool = True,
    new_mode: int = 0o644,
    make_parents: bool = False,
) -> WriteResult:
    """Replace ``path`` with ``data`` if it still is what ``expected`` says it was.

    ``expected`` is the snapshot the new content was computed from (``read_snapshot``); a path
    that names the snapshot's file (or its ``path``) is written where the snapshot was read,
    under its root. A file that was absent (``expected.exists`` False) is created with
    ``new_mode`` and our owner and is refused if it exists by now. Steps, all relative to the
    directory reached inside the root and under the file's lock: stale temps removed; temp file
    written, chowned and chmodded like the original, fsynced; the original re-checked; the backup
    kept; rename over the original; fsync the directory.

    Raises FileChangedError, PermissionDeniedError, FileAccessError (all AtomicWriteError).
    """
    if expected.file is not None and (path is expected.file or path == expected.path):
        f = expected.file
    else:
        f = HostFile.of(path)
    shown = f.shown
    try:
        with f.root.walk(f.path, create=make_parents) as (dfd, name, host), _locked(dfd, name, f):
            _clean_temps(dfd, name)
            if expected.exists:
                mode, uid, gid = expected.mode, expected.uid, expected.gid
            else:
                mode, uid, gid = new_mode, -1, -1
            tmp = _write_temp(dfd, name, data, mode, uid, gid)
            try:
                # Re-read just before the rename: a writer that is not gpudock (an editor,
                # nvidia-ctk, a package postinst) that got in since our read must win; gpudock
                # writers wait for the lock instead.
                current = _snapshot_at(dfd, name, f, shown)
                if not expected.same_as(current):
                    what = (
                        "was created"
                        if not expected.exists
                        else ("was removed" if not current.exists else "was changed")
                    )
                    raise FileChangedError(
                        f"{shown} {what} by someone else since gpudock read it; not overwritten - "
                        "reload it and make the change again",
                        shown,
                    )
                backup_path = None
                if backup and expected.exists:
                    bname = name + BACKUP_SUFFIX
                    btmp = _write_temp(dfd, bname, expected.data, mode, uid, gid)
                    try:
                        os.replace(btmp, bname, src_dir_fd=dfd, dst_dir_fd=dfd)
                    except BaseException:
                        _unlink_quietly(dfd, btmp)
                        raise
                    backup_path = f.root.path(host) + BACKUP_SUFFIX
                os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            except BaseException:
                _unlink_quietly(dfd, tmp)
                raise
            _fsync_dir(dfd)
    except OSError as e:
        raise explain(e, f, "write") from e
    return WriteResult(path=shown, backup=backup_path, bytes_written=len(data))
