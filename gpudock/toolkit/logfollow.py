"""Following the toolkit's debug log (``tail -F`` as a plain object, after Textualize/toolong's
watcher, without its thread).

Owns: ``LogFollower``, whose ``poll()`` returns the complete lines appended since the previous
call. It reads only a regular file (a FIFO or a device at the path is "not-a-file", never read
from), and survives truncation (the file got shorter: start again from 0), rotation (the path
names a new inode: finish the old file, then read the new one from 0) and the file not existing
yet (the hook creates its log on the first container launch). A partial last line is held until its
newline arrives. One call reads at most ``max_bytes`` so a huge log cannot stall the UI;
``too_large`` says the file is past ``warn_bytes``.

No threads here: the UI calls ``poll()`` from a worker on a timer.
"""

from __future__ import annotations

import os
import stat

DEFAULT_MAX_BYTES = 1 << 20  # per poll()
DEFAULT_WARN_BYTES = 100 << 20
# A "line" longer than this without a newline is handed out anyway, so memory stays bounded.
MAX_LINE_BYTES = 1 << 20


class LogFollower:
    """Follow ``path``. ``from_end=True`` skips what is already in the file when first opened."""

    def __init__(
        self,
        path: str,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        warn_bytes: int = DEFAULT_WARN_BYTES,
        from_end: bool = False,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.warn_bytes = warn_bytes
        self._from_end = from_end
        self._fd: int | None = None
        self._ident: tuple[int, int] | None = None  # (st_dev, st_ino) of the open file
        self._offset = 0
        self._partial = b""
        self.size = 0  # size of the file at the path, as of the last poll()
        self.exists = False
        self.truncations = 0
        self.rotations = 0
        self.last_event: str | None = None  # "truncated", "rotated", "missing", "not-a-file" or None

    @property
    def too_large(self) -> bool:
        return self.size > self.warn_bytes

    @property
    def offset(self) -> int:
        return self._offset

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd = None
        self._ident = None

    def __enter__(self) -> LogFollower:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> bool:
        try:
            # O_NONBLOCK: a FIFO at the log's path must not hang the follower waiting for a writer
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            self.last_event = "not-a-file"
            return False
        self._fd, self._ident = fd, (st.st_dev, st.st_ino)
        self._offset = st.st_size if self._from_end else 0
        self._from_end = False  # only the very first open skips existing content
        self._partial = b""
        return True

    def _read(self, budget: int) -> bytes:
        assert self._fd is not None
        data = os.pread(self._fd, budget, self._offset) if budget > 0 else b""
        self._offset += len(data)
        return data

    def _split(self, data: bytes, flush: bool = False) -> list[str]:
        buf = self._partial + data
        parts = buf.split(b"\n")
        self._partial = parts.pop()
        if flush and self._partial:
            parts.append(self._partial)
            self._partial = b""
        elif len(self._partial) > MAX_LINE_BYTES:
            parts.append(self._partial)
            self._partial = b""
        return [p.rstrip(b"\r").decode("utf-8", errors="replace") for p in parts]

    def poll(self) -> list[str]:
        """New complete lines since the last call (without their newlines)."""
        budget = self.max_bytes
        out: list[str] = []
        self.last_event = None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        if st is None:
            self.exists = False
            self.size = 0
            self.last_event = "missing"
            if self._fd is not None:
                # removed (or renamed away, first half of a rotation): drain what is left of it
                data = self._read(budget)
                out += self._split(data, flush=len(data) < budget)
                if len(data) < budget:
                    self.close()
            return out
        self.exists = True
        if not stat.S_ISREG(st.st_mode):
            # a FIFO, a device, a directory where the log should be: never read from it
            self.close()
            self.size = 0
            self.last_event = "not-a-file"
            return out
        self.size = st.st_size
        if self._fd is not None and self._ident != (st.st_dev, st.st_ino):
            # rotated: the old file may still hold lines written before the rename
            data = self._read(budget)
            budget -= len(data)
            out += self._split(data, flush=budget > 0)
            if budget <= 0:
                return out  # more of the old file next time
            self.close()
            self.rotations += 1
            self.last_event = "rotated"
        if self._fd is None:
            if not self._open():
                return out
            st = os.fstat(self._fd)
            self.size = st.st_size
        elif st.st_size < self._offset:
            # truncated (copytruncate, `> file`): what we held of a partial line is gone too
            self._offset = 0
            self._partial = b""
            self.truncations += 1
            self.last_event = "truncated"
        data = self._read(min(budget, max(0, self.size - self._offset)))
        out += self._split(data)
        return out
