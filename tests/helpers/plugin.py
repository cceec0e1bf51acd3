"""The nvidia-docker volume plugin for tests: a client for its UNIX socket, and the global socket.

dockerd finds volume plugins by name in ``/run/docker/plugins/<name>.sock``, a directory shared
by every engine on this machine. :func:`global_plugin_socket` serialises the test runs that put a
socket there (an flock on ``/run/lock/gpudock-test-nvidia-docker.lock``), refuses to go on when a
live plugin of that name is already there (a real nvidia-docker-plugin, or someone's
``gpudock serve``), and after the test makes sure the socket file is gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import socket
import time
from collections.abc import Iterator

from gpudock.launch.httpserve import SocketInUse, claim_unix_socket
from gpudock.launch.volume_plugin import DEFAULT_PLUGIN_SOCKET

ACCEPT = "application/vnd.docker.plugins.v1.2+json"
LOCK = "/run/lock/gpudock-test-nvidia-docker.lock"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("plugin", timeout=30)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def plugin_call(sock: str, call: str, body: dict | None = None, accept: str | None = ACCEPT):
    """POST ``/<call>`` to the plugin socket as dockerd does; (status, content type, JSON or bytes)."""
    conn = _UnixConnection(sock)
    try:
        headers = {"Content-Type": "application/json"}
        if accept:
            headers["Accept"] = accept
        conn.request("POST", f"/{call}", body=json.dumps(body or {}), headers=headers)
        r = conn.getresponse()
        raw = r.read()
        ctype = r.getheader("Content-Type")
        try:
            return r.status, ctype, json.loads(raw)
        except ValueError:
            return r.status, ctype, raw
    finally:
        conn.close()


@contextlib.contextmanager
def global_plugin_socket(wait: float = 240.0) -> Iterator[str]:
    """The path ``/run/docker/plugins/nvidia-docker.sock``, free for this test alone."""
    os.makedirs(os.path.dirname(LOCK), exist_ok=True)
    fd = os.open(LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"another test run has held {LOCK} for {wait:.0f} s") from None
                time.sleep(0.2)
        try:
            claim_unix_socket(DEFAULT_PLUGIN_SOCKET)  # a stale one of ours goes, a live one stops us
        except SocketInUse as e:
            raise RuntimeError(
                f"a live volume plugin named nvidia-docker is already on this machine ({e}); the tests will not "
                "take its place: stop it and run again"
            ) from None
        try:
            yield DEFAULT_PLUGIN_SOCKET
        finally:
            # the server removes its socket; a server that died leaves a stale one, removed here
            with contextlib.suppress(SocketInUse):
                claim_unix_socket(DEFAULT_PLUGIN_SOCKET)
    finally:
        os.close(fd)
