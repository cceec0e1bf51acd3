"""A small HTTP/1.1 server for gpudock's local APIs: ``serve``'s REST port and the Docker plugin socket.

This module owns the protocol side, so that both servers behave the same under load and abuse:

- One asyncio event loop (one thread) holds every connection, so an idle or slow client costs a
  socket, not a thread. The answer function (blocking: NVML, files, building a volume) runs on a
  small pool of worker threads (``workers``, default 4).
- Every phase has a deadline (``timeout``, default 5 s, nvidia-docker-plugin's read and write
  timeouts): the whole request head, the body, the idle time between keep-alive requests, the
  write. A client that stalls is disconnected without a word.
- The listen backlog is :data:`BACKLOG` (the kernel caps it at ``net.core.somaxconn``), so a burst
  of connects waits in the queue instead of being dropped and retried seconds later.
- Request bodies are read (``Content-Length``, at most ``max_body`` bytes) or refused:
  ``Transfer-Encoding`` gets 501, a malformed or negative length 400, a length over the limit 413,
  and then the connection is closed, so body bytes are never taken for a request.
- Each response is one write (head and body together): keep-alive answers never wait for Nagle's
  algorithm and the client's delayed ACK.
- On TCP only requests for this machine's loopback names are answered: the ``Host`` header and an
  absolute-form target must be ``127.0.0.1``, ``localhost`` or ``[::1]`` (any port). A web page
  that rebinds its DNS name to 127.0.0.1 gets 400, not GPU data (DNS rebinding).
- A client that goes away is not an error and prints nothing; anything unexpected is one log line,
  never a traceback.

Plain Python (asyncio); no Textual.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
import re
import signal
import socket
import stat
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from urllib.parse import urlsplit

__all__ = [
    "BACKLOG",
    "DEFAULT_TIMEOUT",
    "HttpServer",
    "Request",
    "Response",
    "SocketInUse",
    "claim_unix_socket",
    "error_response",
]

BACKLOG = 1024
DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_BODY = 64 * 1024
MAX_HEAD = 16 * 1024  # the request line and the headers together
MAX_HEADERS = 100
LOOPBACK_HOST = re.compile(r"(?:127\.0\.0\.1|localhost|\[::1\])(?::[0-9]{1,5})?", re.IGNORECASE)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_LENGTH = re.compile(r"[0-9]{1,18}")


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed request. ``path`` and ``query`` are as sent (not percent-decoded); ``headers``
    has lower-case names (a repeated header's values joined with ", ")."""

    method: str
    path: str
    query: str
    version: str
    headers: Mapping[str, str]
    body: bytes = b""
    transport: str = "tcp"  # "tcp" or "unix"

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False  # close the connection after this response


def error_response(status: int, text: str, *, close: bool = False) -> Response:
    """Go's ``http.Error``: the text and a newline, plain text, ``nosniff``."""
    return Response(status, (text + "\n").encode(), headers=(("X-Content-Type-Options", "nosniff"),), close=close)


class _Refused(Exception):
    """The request cannot be served; ``response`` says why, and the connection closes after it."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.response = error_response(status, text, close=True)


class SocketInUse(Exception):
    """Another live server answers on the UNIX socket path, or the path is not a socket."""


def claim_unix_socket(path: str) -> None:
    """Make ``path`` free for a new UNIX socket server: a stale socket (nothing answers on it) is
    removed; a live one, or anything that is not a socket, raises :class:`SocketInUse` naming it.
    The parent directory is created (mode 0700) when missing."""
    parent = os.path.dirname(path) or "."
    if os.path.lexists(parent) and not os.path.isdir(parent):
        raise NotADirectoryError(errno.ENOTDIR, f"{parent} is not a directory")
    os.makedirs(parent, mode=0o700, exist_ok=True)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise SocketInUse(f"{path} exists and is not a socket; move it away first")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # stale: its server is gone
        return
    except OSError as e:
        raise SocketInUse(f"{path}: cannot tell whether it is in use ({e.strerror})") from None
    finally:
        probe.close()
    raise SocketInUse(f"another server is answering on {path}")


@dataclass(slots=True)
class _Listener:
    sock: socket.socket
    kind: str  # "tcp" or "unix"
    handler: Callable[[Request], Response]
    path: str | None = None  # unix: the socket file we made, and its inode
    ino: tuple[int, int] | None = None


class HttpServer:
    """Listeners (:meth:`listen_tcp`, :meth:`listen_unix`, each with its answer function) served by
    one event loop thread. Bind errors come out of the ``listen_*`` calls. Then either
    :meth:`start_background` (returns at once) or :meth:`serve_forever` (blocks until
    :meth:`shutdown`, SIGINT or SIGTERM); :meth:`close` always.

    ``log`` gets one line per unexpected error (never a traceback)."""

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_body: int = DEFAULT_MAX_BODY,
        workers: int = 4,
        max_connections: int = 512,
        log: Callable[[str], None] | None = None,
        name: str = "gpudock-http",
    ) -> None:
        self.timeout = timeout
        self.max_body = max_body
        self.max_connections = max_connections
        self.name = name
        self._log = log
        self._listeners: list[_Listener] = []
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"{name}-worker")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[asyncio.base_events.Server] = []
        self._tasks: set[asyncio.Task] = set()
        self._done = threading.Event()
        self._closed = False
        self.connections = 0  # open right now

    # -- listening ---------------------------------------------------------------------------

    def listen_tcp(self, host: str, port: int, handler: Callable[[Request], Response]) -> int:
        """Listen on ``host:port`` (0: any free port); returns the port."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
            s.listen(BACKLOG)
            s.setblocking(False)
        except BaseException:
            s.close()
            raise
        self._listeners.append(_Listener(s, "tcp", handler))
        return s.getsockname()[1]

    def listen_unix(self, path: str, handler: Callable[[Request], Response], mode: int = 0o600) -> None:
        """Listen on the UNIX socket ``path`` (see :func:`claim_unix_socket` first); the file is
        made with ``mode`` and removed by :meth:`close` if it is still the one made here."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.bind(path)
            try:
                os.chmod(path, mode)
                st = os.stat(path)
                s.listen(BACKLOG)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(path)
                raise
            s.setblocking(False)
        except BaseException:
            s.close()
            raise
        self._listeners.append(_Listener(s, "unix", handler, path, (st.st_dev, st.st_ino)))

    # -- running -----------------------------------------------------------------------------

    def start_background(self) -> threading.Thread:
        """Serve from a daemon thread; returns once every listener accepts."""
        if self._thread is not None:
            return self._thread
        ready = threading.Event()
        failed: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            loop.set_exception_handler(self._loop_error)
            self._loop = loop
            try:
                try:
                    loop.run_until_complete(self._start())
                except BaseException as e:  # noqa: BLE001 - handed to the starting thread
                    failed.append(e)
                    return
                finally:
                    ready.set()
                loop.run_forever()
                loop.run_until_complete(self._stop())
            finally:
                loop.close()
                self._done.set()

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        ready.wait()
        if failed:
            self._thread.join()
            raise failed[0]
        return self._thread

    def serve_forever(self) -> None:
        """Serve until :meth:`shutdown`, Ctrl-C or SIGTERM (when called from the main thread)."""
        main = threading.current_thread() is threading.main_thread()
        previous = None
        if main:
            previous = signal.signal(signal.SIGTERM, lambda *_: self._request_stop())
        try:
            self.start_background()
            while not self._done.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            if main:
                signal.signal(signal.SIGTERM, previous)
            self.shutdown()

    def _request_stop(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)

    def shutdown(self) -> None:
        """Stop serving: open connections are dropped; waits for the loop thread."""
        self._request_stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10)

    def close(self) -> None:
        """Shut down, close the listening sockets and remove the UNIX socket files made here."""
        if self._closed:
            return
        self._closed = True
        self.shutdown()
        self._pool.shutdown(wait=False, cancel_futures=True)
        for ls in self._listeners:
            with contextlib.suppress(OSError):
                ls.sock.close()
            if ls.path and ls.ino:
                try:
                    st = os.lstat(ls.path)
                    if (st.st_dev, st.st_ino) == ls.ino:  # never another server's socket
                        os.unlink(ls.path)
                except OSError:
                    pass

    def __enter__(self) -> HttpServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    async def _start(self) -> None:
        for ls in self._listeners:
            cb = functools.partial(self._connection, listener=ls)
            if ls.kind == "tcp":
                srv = await asyncio.start_server(cb, sock=ls.sock, backlog=BACKLOG, limit=MAX_HEAD)
            else:
                srv = await asyncio.start_unix_server(cb, sock=ls.sock, backlog=BACKLOG, limit=MAX_HEAD)
            self._servers.append(srv)

    async def _stop(self) -> None:
        for srv in self._servers:
            srv.close()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _loop_error(self, loop, context: dict) -> None:
        exc = context.get("exception")
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        self._say(f"{context.get('message', 'error')}" + (f": {type(exc).__name__}: {exc}" if exc else ""))

    def _say(self, line: str) -> None:
        if self._log is not None:
            with contextlib.suppress(Exception):
                self._log(f"{self.name}: {line}")

    # -- one connection ----------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener: _Listener):
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self.connections += 1
        linger = False
        try:
            if self.connections > self.max_connections:
                await self._write(writer, error_response(503, "too many connections; try again", close=True))
                linger = True
                return
            while True:
                try:
                    req = await self._read_request(reader, writer, listener)
                except _Refused as r:
                    await self._write(writer, r.response)
                    linger = True
                    return
                if req is None:
                    return
                resp = await self._answer(listener, req)
                close = resp.close or not _keep_alive(req)
                extra = (("Connection", "keep-alive"),) if not close and req.version == "HTTP/1.0" else ()
                await self._write(writer, resp, head_only=req.method == "HEAD", close=close, extra=extra)
                if close:
                    linger = True
                    return
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError, asyncio.CancelledError, OSError):
            pass
        except Exception as e:  # noqa: BLE001 - one line, never a traceback
            self._say(f"connection dropped: {type(e).__name__}: {e}")
        finally:
            self.connections -= 1
            if task is not None:
                self._tasks.discard(task)
            await self._close(reader, writer, linger)

    async def _close(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, linger: bool) -> None:
        try:
            if linger and writer.can_write_eof():
                # Send FIN first and read what the client still sends for a moment: closing with
                # unread bytes makes the kernel send RST, which can destroy our answer in flight.
                writer.write_eof()
                async with asyncio.timeout(min(self.timeout, 1.0)):
                    while await reader.read(65536):
                        pass
        except (Exception, asyncio.CancelledError):  # noqa: BLE001 - closing anyway
            pass
        writer.close()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await writer.wait_closed()

    async def _read_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener: _Listener
    ) -> Request | None:
        lines: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    try:
                        line = await reader.readline()
                    except ValueError:  # longer than the stream's limit
                        raise _Refused(431, "request header fields too large") from None
                    if not line or not line.endswith(b"\n"):
                        return None  # the client closed, perhaps mid-request
                    size += len(line)
                    if size > MAX_HEAD or len(lines) > MAX_HEADERS:
                        raise _Refused(431, "request header fields too large")
                    if line in (b"\r\n", b"\n"):
                        if lines:
                            break
                        continue  # RFC 9112 2.2: empty lines before the request line are ignored
                    lines.append(line)
        except TimeoutError:
            return None  # idle or too slow: close without a word, as Go's server does
        method, path, query, version, headers = self._parse_head(lines, listener)
        body = await self._read_body(reader, writer, version, headers)
        return Request(method, path, query, version, headers, body, listener.kind)

    def _parse_head(self, lines: list[bytes], listener: _Listener):
        text = [ln.decode("latin-1").rstrip("\r\n") for ln in lines]
        parts = text[0].split(" ")
        if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1]:
            raise _Refused(400, "malformed request line")
        method, target, version = parts
        if version not in ("HTTP/1.0", "HTTP/1.1"):
            if re.fullmatch(r"HTTP/[0-9]+\.[0-9]+", version):
                raise _Refused(505, f"{version} is not supported: use HTTP/1.1")
            raise _Refused(400, "malformed request line")
        fields: dict[str, list[str]] = {}
        for h in text[1:]:
            name, sep, value = h.partition(":")
            if not sep or not _TOKEN.fullmatch(name):
                raise _Refused(400, "malformed header line")
            fields.setdefault(name.lower(), []).append(value.strip(" \t"))
        hosts = fields.get("host", [])
        if len(hosts) > 1:
            raise _Refused(400, "more than one Host header")
        if version == "HTTP/1.1" and not hosts and listener.kind == "tcp":
            raise _Refused(400, "missing required Host header")
        asked = list(hosts)
        if target.startswith("/"):
            path, _, query = target.partition("?")
        elif re.match(r"(?i)https?://", target):
            url = urlsplit(target)
            if "@" in url.netloc:
                raise _Refused(400, "malformed request target")
            asked.append(url.netloc)
            path, query = url.path or "/", url.query
        else:
            raise _Refused(400, "malformed request target")
        if listener.kind == "tcp":
            for host in asked:
                if not LOOPBACK_HOST.fullmatch(host):
                    shown = host if len(host) <= 100 else host[:100] + "…"
                    raise _Refused(
                        400,
                        f"request for host {shown!r} refused: this server answers only for 127.0.0.1, "
                        "localhost or [::1] (a web page could otherwise read it through DNS rebinding)",
                    )
        headers = {k: ", ".join(v) for k, v in fields.items()}
        return method, path, query, version, headers

    async def _read_body(self, reader, writer, version: str, headers: Mapping[str, str]) -> bytes:
        if "transfer-encoding" in headers:
            raise _Refused(501, "Transfer-Encoding is not supported here: send the body with Content-Length")
        raw = headers.get("content-length")
        if raw is None:
            return b""
        values = {v.strip() for v in raw.split(",")}
        if len(values) != 1:
            raise _Refused(400, "conflicting Content-Length values")
        value = values.pop()
        if not _LENGTH.fullmatch(value):
            shown = value if len(value) <= 24 else value[:24] + "…"
            raise _Refused(400, f"invalid Content-Length {shown!r}: it must be a number of bytes")
        length = int(value)
        if length > self.max_body:
            raise _Refused(413, f"request body of {length} bytes is over this server's limit of {self.max_body}")
        if not length:
            return b""
        if version == "HTTP/1.1" and "100-continue" in headers.get("expect", "").lower():
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            async with asyncio.timeout(self.timeout):
                return await reader.readexactly(length)
        except TimeoutError:
            raise _Refused(408, f"the request body did not arrive within {self.timeout:g} s") from None

    async def _answer(self, listener: _Listener, req: Request) -> Response:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, self._call, listener.handler, req)
        except RuntimeError:  # the pool is shut down: we are stopping
            return error_response(503, "shutting down", close=True)

    def _call(self, handler: Callable[[Request], Response], req: Request) -> Response:
        try:
            return handler(req)
        except Exception as e:  # noqa: BLE001 - the plugin answered 500 on any panic
            self._say(f"{req.method} {req.path}: {type(e).__name__}: {e}")
            return error_response(500, "internal error, check logs for details")

    async def _write(
        self,
        writer: asyncio.StreamWriter,
        resp: Response,
        *,
        head_only: bool = False,
        close: bool | None = None,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> None:
        close = resp.close if close is None else close
        try:
            reason = HTTPStatus(resp.status).phrase
        except ValueError:
            reason = ""
        lines = [f"HTTP/1.1 {resp.status} {reason}", f"Date: {formatdate(usegmt=True)}"]
        bodyless = resp.status in (204, 304) or resp.status < 200
        if resp.content_type and not bodyless:
            lines.append(f"Content-Type: {resp.content_type}")
        lines += [f"{k}: {v}" for k, v in resp.headers + extra]
        if not bodyless:
            lines.append(f"Content-Length: {len(resp.body)}")
        if close:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        # One write for head and body: two small writes on a kept-alive connection wait ~40 ms
        # for Nagle's algorithm and the client's delayed ACK.
        writer.write(head if head_only or bodyless else head + resp.body)
        async with asyncio.timeout(self.timeout):
            await writer.drain()


def _keep_alive(req: Request) -> bool:
    tokens = {t.strip().lower() for t in req.header("connection").split(",")}
    if req.version == "HTTP/1.1":
        return "close" not in tokens
    return "keep-alive" in tokens
