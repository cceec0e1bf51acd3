"""The one safe-write primitive for every file gpudock edits on the host.

Owns: reading a file together with a fingerprint of what was read (``read_snapshot``), and
replacing it (``atomic_write``) so that at every instant the path holds either the old bytes or
the new bytes, never a partial file, with its mode and owner kept and the previous version kept
next to it as ``<name>.gpudock-bak``. A file that someone else changed between our read and our
write is refused (``FileChangedError``), never overwritten. Missing permission surfaces as
``PermissionDeniedError`` whose message names the file and says to run as root.

Plain Python, no Textual: the CLI, the TUI and the tests share it.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tempfile
import time
from dataclasses import dataclass

BACKUP_SUFFIX = ".gpudock-bak"
TEMP_SUFFIX = ".gpudock-tmp"
# A temp file this old is an orphan of a gpudock that was killed mid-write; younger ones may
# belong to a writer that is running right now.
STALE_TEMP_AGE_S = 600.0


class AtomicWriteError(Exception):
    """Base class: the file was not written; the message says what to do."""

    def __init__(self, message: str, path: str):
        super().__init__(message)
        self.path = path


class FileChangedError(AtomicWriteError):
    """The file changed on disk between our read and our write; we did not overwrite it."""


class PermissionDeniedError(AtomicWriteError):
    """No permission to read or write the file (or its directory)."""


def permission_message(path: str, verb: str = "write") -> str:
    return f"cannot {verb} {path}: permission denied; run gpudock as root (e.g. with sudo)"


@dataclass(frozen=True, slots=True)
class FileSnapshot:
    """What a file was when we read it: its bytes and enough metadata to notice any change.

    ``exists`` False means the file was absent at read time (``data`` is empty); writing with
    such a snapshot refuses if the file has appeared since.
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


def _real(path: str) -> str:
    # Follow a symlink so that we replace the file it points at, not the link itself
    # (/etc/docker/daemon.json is sometimes a link into a config-management tree).
    return os.path.realpath(path)


def read_snapshot(path: str) -> FileSnapshot:
    """Read ``path`` and fingerprint it. A missing file gives ``exists=False``.

    Raises PermissionDeniedError when the file cannot be read.
    """
    real = _real(path)
    try:
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return FileSnapshot(path=path, exists=False)
    except PermissionError as e:
        raise PermissionDeniedError(permission_message(path, "read"), path) from e
    try:
        # fstat and read the same open file so the metadata matches the bytes we got
        st = os.fstat(fd)
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    return FileSnapshot(
        path=path,
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
    )


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # some filesystems do not let a directory be opened; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_temp(directory: str, name: str, data: bytes, mode: int, uid: int, gid: int, path: str) -> str:
    """Write ``data`` to a new temp file in ``directory``, owner and mode set, fsynced. Returns its path."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=TEMP_SUFFIX, dir=directory)
    except PermissionError as e:
        raise PermissionDeniedError(permission_message(path), path) from e
    except OSError as e:
        if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise PermissionDeniedError(
                f"cannot write {path}: {os.strerror(e.errno)}; run gpudock as root (e.g. with sudo)"
                + (" on a writable filesystem" if e.errno == errno.EROFS else ""),
                path,
            ) from e
        raise
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
    except PermissionError as e:
        _unlink_quietly(tmp)
        raise PermissionDeniedError(
            f"cannot keep the owner/mode of {path}: permission denied; run gpudock as root (e.g. with sudo)",
            path,
        ) from e
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return tmp


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _clean_stale_temps(directory: str, name: str) -> None:
    prefix = f".{name}."
    now = time.time()
    try:
        entries = os.listdir(directory)
    except OSError:
        return
    for entry in entries:
        if entry.startswith(prefix) and entry.endswith(TEMP_SUFFIX):
            full = os.path.join(directory, entry)
            try:
                if now - os.lstat(full).st_mtime > STALE_TEMP_AGE_S:
                    os.unlink(full)
            except OSError:
                pass


def atomic_write(
    path: str,
    data: bytes,
    expected: FileSnapshot,
    *,
    backup: bool = True,
    new_mode: int = 0o644,
    make_parents: bool = False,
) -> WriteResult:
    """Replace ``path`` with ``data`` if it still is what ``expected`` says it was.

    ``expected`` is the snapshot the new content was computed from (``read_snapshot``). A file
    that was absent (``expected.exists`` False) is created with ``new_mode`` and our owner and is
    refused if it exists by now. Steps: temp file in the same directory, written, chowned and
    chmodded like the original, fsynced; re-check the original; keep the backup; rename over the
    original; fsync the directory.

    Raises FileChangedError, PermissionDeniedError; other OSErrors pass through.
    """
    real = _real(path)
    directory = os.path.dirname(real) or "."
    name = os.path.basename(real)
    if make_parents and not os.path.isdir(directory):
        try:
            os.makedirs(directory, mode=0o755, exist_ok=True)
        except PermissionError as e:
            raise PermissionDeniedError(permission_message(path), path) from e
    _clean_stale_temps(directory, name)

    if expected.exists:
        mode, uid, gid = expected.mode, expected.uid, expected.gid
    else:
        mode, uid, gid = new_mode, -1, -1
    tmp = _write_temp(directory, name, data, mode, uid, gid, path)
    try:
        # Re-read just before the rename: a writer (an editor, nvidia-ctk, a package postinst)
        # that got in since our read must win; the window left is the few microseconds below.
        current = read_snapshot(real)
        if not expected.same_as(current):
            what = "was created" if not expected.exists else ("was removed" if not current.exists else "was changed")
            raise FileChangedError(
                f"{path} {what} by someone else since gpudock read it; not overwritten - "
                "reload it and make the change again",
                path,
            )
        backup_path = None
        if backup and expected.exists:
            backup_path = real + BACKUP_SUFFIX
            btmp = _write_temp(directory, name + BACKUP_SUFFIX, expected.data, mode, uid, gid, path)
            try:
                os.replace(btmp, backup_path)
            except PermissionError as e:
                _unlink_quietly(btmp)
                raise PermissionDeniedError(permission_message(backup_path), path) from e
            except BaseException:
                _unlink_quietly(btmp)
                raise
        try:
            os.replace(tmp, real)
        except PermissionError as e:
            raise PermissionDeniedError(permission_message(path), path) from e
    except BaseException:
        _unlink_quietly(tmp)
        raise
    _fsync_dir(directory)
    return WriteResult(path=path, backup=backup_path, bytes_written=len(data))
