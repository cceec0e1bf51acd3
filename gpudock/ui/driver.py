"""The terminal driver: Textual's Linux driver, made to survive a terminal that hangs up.

When the SSH connection drops, the kernel hangs up the pseudo-terminal: reads from it fail with
EIO and so do writes. Textual's driver then misbehaves in two ways:

* its writer thread dies on the first failed write, and every later write blocks the event loop
  on the thread's full queue (30 items), so the app can never finish exiting and the process
  stays behind, holding its sockets and temp files;
* its input thread dies on the failed read and makes the app panic, which writes a traceback to
  the terminal that is gone (and blocks as above).

:class:`HangupSafeDriver` keeps the writer draining its queue after a failed write, and treats a
failed write or read as "the terminal is gone": it asks the app to exit as the quit key does.
The SIGHUP that comes with the hangup is handled by the app (``GpudockApp._handle_termination``);
either way the exit is clean and prompt, with no race between them.
"""

from __future__ import annotations

import errno
import threading

from textual.drivers._writer_thread import WriterThread
from textual.drivers.linux_driver import LinuxDriver

# A terminal that is gone: EIO (hung up), ENXIO (no such device), EBADF/EPIPE (closed under us).
_GONE = (errno.EIO, errno.ENXIO, errno.EBADF, errno.EPIPE)


class _DrainingWriterThread(WriterThread):
    """Textual's writer thread, except that a failed write does not kill it: it says so once and
    goes on taking (and dropping) what is queued, so writers never block on a full queue."""

    def __init__(self, file, on_gone) -> None:
        super().__init__(file)
        self._on_gone = on_gone
        self.gone = False

    def run(self) -> None:
        write, flush = self._file.write, self._file.flush
        get, qsize = self._queue.get, self._queue.qsize
        while True:
            text = get()
            if text is None:
                break
            if self.gone:
                continue
            try:
                write(text)
                if qsize() == 0:
                    flush()
            except (OSError, ValueError):  # ValueError: the file was closed
                self.gone = True
                self._on_gone()
        if not self.gone:
            try:
                flush()
            except (OSError, ValueError):
                pass


class HangupSafeDriver(LinuxDriver):
    """LinuxDriver whose writer survives a hung-up terminal and which exits the app when it is gone."""

    _gone_once = False

    def start_application_mode(self) -> None:
        super().start_application_mode()
        # Swap in the draining writer; stopping the first one writes out what start queued.
        first = self._writer_thread
        writer = _DrainingWriterThread(self._file, self._terminal_gone)
        if first is not None:
            first.stop()
        self._writer_thread = writer
        writer.start()

    def run_input_thread(self) -> None:
        try:
            super().run_input_thread()
        except OSError as e:
            if e.errno not in _GONE:
                raise
            self._terminal_gone()

    def _terminal_gone(self) -> None:
        # From the writer or the input thread: hand the exit to the event loop, once.
        if self._gone_once:
            return
        self._gone_once = True
        app = self._app
        stop = getattr(app, "terminal_gone", None) or app.exit
        if threading.current_thread() is threading.main_thread():
            stop()
        else:
            self._loop.call_soon_threadsafe(stop)
