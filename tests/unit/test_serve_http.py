"""`gpudock serve` under hostile and heavy clients: the Host check (DNS rebinding), one write per
response, the listen backlog, idle and slow sockets, request bodies, early hang-ups.

Every check here is functional (what the server answers, how many writes, how many threads);
no test asserts a speed."""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from gpudock.launch.httpserve import BACKLOG, HttpServer, Response
from gpudock.launch.plugin_server import PluginServer
from helpers.gpus import plugin_host


@pytest.fixture
def serve(tmp_path):
    servers = []

    def start(timeout: float = 5.0, log=None, snapshot=None):
        snap = snapshot or plugin_host()
        srv = PluginServer(lambda: snap, port=0, root=_root(tmp_path), timeout=timeout, log=log)
        srv.start_background()
        servers.append(srv)
        return srv

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def _root(tmp_path):
    from gpudock.host.root import HostRoot

    (tmp_path / "dev").mkdir(exist_ok=True)
    return HostRoot(tmp_path)


def connect(srv) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_responses(s: socket.socket, want: int | None = None, idle: float = 1.0) -> list[tuple[int, dict, bytes]]:
    """Parse HTTP responses off ``s`` until ``want`` came, the peer closed, or ``idle`` s of silence."""
    buf = b""
    out: list[tuple[int, dict, bytes]] = []
    s.settimeout(idle)
    while want is None or len(out) < want:
        while b"\r\n\r\n" in buf:
            head, rest = buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
            n = int(headers.get("content-length", "0"))
            if len(rest) < n:
                break
            out.append((int(lines[0].split()[1]), headers, rest[:n]))
            buf = rest[n:]
            if want is not None and len(out) >= want:
                return out
        try:
            data = s.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            break
        if not data:
            break
        buf += data
    return out


def closed_by_peer(s: socket.socket, within: float = 10.0) -> bool:
    s.settimeout(within)
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def request(method: str = "GET", path: str = "/v1.0/gpu/status/json", host: str | None = "127.0.0.1", extra=""):
    h = f"Host: {host}\r\n" if host is not None else ""
    return f"{method} {path} HTTP/1.1\r\n{h}{extra}\r\n".encode()


# -- the Host check ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "localhost", "LOCALHOST", "[::1]", "127.0.0.1:{port}", "localhost:{port}"]
)
def test_loopback_names_are_answered(serve, host):
    srv = serve()
    with connect(srv) as s:
        s.sendall(request(host=host.format(port=srv.port)))
        ((status, headers, body),) = read_responses(s, 1)
    assert status == 200 and headers["content-type"] == "application/json"
    assert body.startswith(b'{"Devices":')


@pytest.mark.parametrize(
    "host", ["evil.example:{port}", "evil.example", "127.0.0.1.nip.io:{port}", "10.0.0.5:{port}", "localhost.:{port}"]
)
def test_other_host_names_are_refused_dns_rebinding(serve, host):
    srv = serve()
    with connect(srv) as s:
        s.sendall(request(host=host.format(port=srv.port)))
        ((status, headers, body),) = read_responses(s, 1)
        assert closed_by_peer(s)
    assert status == 400 and b"DNS rebinding" in body and b"GPU-" not in body
    assert headers["connection"] == "close"


def test_absolute_form_urls_of_other_hosts_are_refused(serve):
    srv = serve()
    with connect(srv) as s:
        s.sendall(request(path=f"http://evil.example:{srv.port}/gpu/status/json", host="127.0.0.1"))
        ((status, _, body),) = read_responses(s, 1)
    assert status == 400 and b"'evil.example:" in body
    with connect(srv) as s:
        s.sendall(request(path=f"http://localhost:{srv.port}/gpu/status/json", host="localhost"))
        ((status, _, body),) = read_responses(s, 1)
    assert status == 200 and body.startswith(b'{"Devices":')


def test_http11_without_a_host_header_is_refused(serve):
    srv = serve()
    with connect(srv) as s:
        s.sendall(request(host=None))
        ((status, _, body),) = read_responses(s, 1)
    assert status == 400 and b"Host" in body


def test_http10_without_host_is_answered_and_closed(serve):
    srv = serve()
    with connect(srv) as s:
        s.sendall(b"GET /gpu/status/json HTTP/1.0\r\n\r\n")
        ((status, headers, _),) = read_responses(s, 1)
        assert closed_by_peer(s)
    assert status == 200 and headers["connection"] == "close"


# -- one write per response ----------------------------------------------------------------------


def test_each_keep_alive_response_is_one_write(serve, monkeypatch):
    """Head and body in separate writes made every kept-alive answer wait ~40 ms for Nagle and the
    client's delayed ACK. Count the server's sends: exactly one per response."""
    srv = serve()
    sends: list[int] = []
    real_send = socket.socket.send

    def counting_send(self, data, *args):
        if self.family == socket.AF_INET and self.getsockname()[1] == srv.port:  # not the loop's self-pipe
            sends.append(len(data))
        return real_send(self, data, *args)

    monkeypatch.setattr(socket.socket, "send", counting_send)
    with connect(srv) as s:
        for path in ["/v1.0/gpu/status/json", "/gpu/info", "/docker/cli?dev=0+2"] * 7:
            s.sendall(request(path=path))
            ((status, _, body),) = read_responses(s, 1)
            assert status == 200 and body
    assert len(sends) == 21, sends


# -- load ----------------------------------------------------------------------------------------


def test_the_listen_backlog_is_real(serve):
    srv = serve()
    out = subprocess.run(["ss", "-ltnH", f"sport = :{srv.port}"], capture_output=True, text=True, check=True).stdout
    # for a listening socket, ss shows the backlog in Send-Q (capped by net.core.somaxconn)
    send_q = int(out.split()[2])
    somaxconn = int(open("/proc/sys/net/core/somaxconn").read())
    assert send_q == min(BACKLOG, somaxconn) and send_q >= 128


def test_a_burst_of_100_connects_is_answered(serve):
    srv = serve()
    barrier = threading.Barrier(100)

    def one(_):
        barrier.wait()
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/v1.0/gpu/status/json", timeout=10) as r:
            return r.status

    with ThreadPoolExecutor(100) as pool:
        assert list(pool.map(one, range(100))) == [200] * 100


def test_400_idle_sockets_hold_no_threads_and_are_closed(serve):
    srv = serve(timeout=0.5)
    threads_before = threading.active_count()
    idle = [connect(srv) for _ in range(400)]
    try:
        time.sleep(0.2)  # let the server accept them all
        # a real client is still answered while they sit there
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/gpu/status/json", timeout=10) as r:
            assert r.status == 200
        assert threading.active_count() <= threads_before + 4  # the answer pool, not a thread per socket
        assert all(closed_by_peer(s) for s in idle)  # each one hung up after the idle timeout
    finally:
        for s in idle:
            s.close()
    deadline = time.monotonic() + 10
    while srv.http.connections and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.http.connections == 0


def test_a_slow_request_head_is_cut_off(serve):
    srv = serve(timeout=0.5)
    with connect(srv) as s:
        hung_up = False
        for ch in request().decode()[:-2]:  # one byte every 0.1 s, never the final empty line
            try:
                s.sendall(ch.encode())
            except (BrokenPipeError, ConnectionResetError):
                hung_up = True
                break
            time.sleep(0.1)
        assert hung_up or closed_by_peer(s)


# -- bodies --------------------------------------------------------------------------------------


def test_a_post_body_is_read_not_taken_for_a_request(serve):
    srv = serve()
    inner = request(path="/gpu/status/json").decode()
    with connect(srv) as s:
        s.sendall(request("POST", "/gpu/status", extra=f"Content-Length: {len(inner)}\r\n").rstrip(b"\r\n"))
        s.sendall(b"\r\n\r\n" + inner.encode())
        s.sendall(request(path="/docker/cli?dev=1"))
        got = read_responses(s)
    assert [status for status, _, _ in got] == [404, 200]
    assert got[1][2].endswith(b"--device=/dev/nvidia1")


@pytest.mark.parametrize(
    "header, status, text",
    [
        ("Content-Length: -5", 400, b"invalid Content-Length"),
        ("Content-Length: 5x", 400, b"invalid Content-Length"),
        ("Content-Length: 99999999999999999999999", 400, b"invalid Content-Length"),
        ("Content-Length: 1000000000000", 413, b"over this server's limit"),
        ("Content-Length: 3\r\nContent-Length: 4", 400, b"conflicting Content-Length"),
        ("Transfer-Encoding: chunked", 501, b"Transfer-Encoding is not supported"),
    ],
)
def test_bad_bodies_are_refused_and_the_connection_closed(serve, header, status, text):
    srv = serve()
    with connect(srv) as s:
        s.sendall(request("POST", "/gpu/info", extra=header + "\r\n") + b"GET /gpu/info HTTP/1.1\r\n\r\n")
        got = read_responses(s)
        assert closed_by_peer(s)
    assert len(got) == 1 and got[0][0] == status and text in got[0][2]


def test_a_body_that_never_comes_is_cut_off(serve):
    srv = serve(timeout=0.5)
    with connect(srv) as s:
        s.sendall(request("POST", "/gpu/info", extra="Content-Length: 100\r\n") + b"only part")
        got = read_responses(s, idle=5)
    assert [g[0] for g in got] == [408]


# -- hostile parameters and clients ---------------------------------------------------------------


def test_a_5000_digit_device_is_a_clean_400(serve):
    srv = serve()
    digits = "7" * 5000
    with connect(srv) as s:
        s.sendall(request(path=f"/docker/cli?dev={digits}"))
        ((status, _, body),) = read_responses(s, 1)
    assert status == 400 and body == f"invalid device: {digits}\n".encode()


def test_a_huge_request_head_is_refused(serve):
    srv = serve()
    with connect(srv) as s:
        s.sendall(request(path="/docker/cli?dev=" + "1" * 40000))
        got = read_responses(s)
    assert [g[0] for g in got] == [431]


@pytest.mark.parametrize(
    "line", [b"GARBAGE\r\n\r\n", b"GET /x HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n", b"GET / FTP/1\r\n\r\n"]
)
def test_malformed_requests_get_an_error_not_a_hang(serve, line):
    srv = serve()
    with connect(srv) as s:
        s.sendall(line)
        got = read_responses(s, idle=5)
    assert len(got) == 1 and got[0][0] in (400, 505)


def test_clients_that_leave_early_print_nothing(serve, capfd):
    lines: list[str] = []
    srv = serve(log=lines.append)
    for i in range(60):
        s = connect(srv)
        s.sendall(request(path="/gpu/info") if i % 3 else request()[:10])
        if i % 2:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
        s.close()
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/gpu/status/json", timeout=10) as r:
        assert r.status == 200
    time.sleep(0.3)
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err and "Error" not in err
    assert not any("Traceback" in ln for ln in lines), lines


def test_an_answer_that_fails_is_a_500_and_one_log_line():
    lines: list[str] = []

    def broken(req):
        raise RuntimeError("the GPU fell off the bus")

    with HttpServer(log=lines.append, name="t-http") as http:
        port = http.listen_tcp("127.0.0.1", 0, broken)
        http.start_background()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(request())
            ((status, _, body),) = read_responses(s, 1)
    assert status == 500 and body == b"internal error, check logs for details\n"
    assert len(lines) == 1 and "RuntimeError: the GPU fell off the bus" in lines[0] and "\n" not in lines[0]


def test_the_unix_socket_server_has_the_same_limits(tmp_path):
    path = str(tmp_path / "p.sock")
    with HttpServer(timeout=0.5, name="t-unix") as http:
        http.listen_unix(path, lambda req: Response(200, b"ok:" + req.body))
        http.start_background()
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        inner = b"POST /x HTTP/1.1\r\n\r\n"
        s.sendall(b"POST /y HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(inner), inner))
        ((status, _, body),) = read_responses(s, 1)
        assert (status, body) == (200, b"ok:" + inner)
        assert closed_by_peer(s)  # the idle timeout
        s.close()
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        s.sendall(b"POST /y HTTP/1.1\r\nContent-Length: -1\r\n\r\n")
        assert [g[0] for g in read_responses(s)] == [400]
        s.close()
        assert oct(__import__("os").stat(path).st_mode & 0o777) == "0o600"
    assert not (tmp_path / "p.sock").exists()


def test_a_live_socket_is_not_taken_over_and_a_stale_one_is(tmp_path):
    from gpudock.launch.httpserve import SocketInUse, claim_unix_socket

    path = str(tmp_path / "p.sock")
    live = socket.socket(socket.AF_UNIX)
    live.bind(path)
    live.listen(1)
    with pytest.raises(SocketInUse, match="another server is answering on"):
        claim_unix_socket(path)
    live.close()  # the file stays, nobody answers: stale
    claim_unix_socket(path)
    assert not (tmp_path / "p.sock").exists()
    (tmp_path / "p.sock").write_text("not a socket")
    with pytest.raises(SocketInUse, match="is not a socket"):
        claim_unix_socket(path)


def test_serve_refuses_a_port_out_of_range(capsys):
    from gpudock.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--demo", "serve", "--port", "70000"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert re.search(r"--port: '70000' is not a TCP port \(1-65535\)", err)


def test_serve_will_not_take_over_a_live_plugin_socket(tmp_path, capsys):
    from gpudock.cli import main

    sock = tmp_path / "nvidia-docker.sock"
    other = socket.socket(socket.AF_UNIX)
    other.bind(str(sock))
    other.listen(1)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        rc = main(["--demo", "serve", "--port", str(port), "--plugin-socket", str(sock)])
    finally:
        other.close()
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert f"another server is answering on {sock}" in err and "--no-plugin" in err
    assert sock.exists()  # still the other server's
    (tmp_path / "file").write_text("")
    rc = main(["--demo", "serve", "--port", str(port), "--plugin-socket", str(tmp_path / "file" / "p.sock")])
    err = capsys.readouterr().err
    assert rc == 2 and err == f"gpudock: cannot listen on {tmp_path}/file/p.sock: {tmp_path}/file is not a directory\n"
