"""DockerWatcher without an engine: statuses and operator messages, never an exception."""

from __future__ import annotations

import errno
import socket

from gpudock.host.docker import DockerStatus, DockerWatcher, _entry, explain_connect_error
from gpudock.model import Gpu

GPUS = (Gpu(index=0, uuid="GPU-a", minor=0),)


def test_initial_status_is_connecting():
    w = DockerWatcher("unix:///nonexistent/docker.sock")
    assert w.status.state == "connecting" and not w.status.ok
    assert w.snapshot(GPUS) == () and w.snapshot(GPUS, all=True) == ()


def test_connect_missing_socket(tmp_path):
    w = DockerWatcher(f"unix://{tmp_path}/docker.sock")
    st = w.connect()
    assert st.state == "unavailable"
    assert "does not exist" in st.message and "systemctl start docker" in st.message and "DOCKER_HOST" in st.message
    assert w.snapshot(GPUS) == ()
    j = st.to_json()
    assert j["state"] == "unavailable" and j["base_url"].endswith("docker.sock")


def test_docker_host_env_is_used(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/x.sock")
    w = DockerWatcher()
    assert w.base_url == f"unix://{tmp_path}/x.sock"
    assert w.connect().state == "unavailable"


def test_background_thread_reports_and_stops(tmp_path):
    w = DockerWatcher(f"unix://{tmp_path}/docker.sock", backoff=(0.05, 0.1))
    w.start()
    assert w.wait_ready(10) is False
    assert w.status.state == "unavailable"
    w.stop()
    assert w._thread is None


def test_refused(tmp_path):
    path = tmp_path / "d.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    try:
        st = DockerWatcher(f"unix://{path}", timeout=2).connect()
    finally:
        s.close()
    assert st.state == "unavailable"
    assert "refused" in st.message


def test_tcp_refused():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    st = DockerWatcher(f"tcp://127.0.0.1:{port}", timeout=2).connect()
    assert st.state == "unavailable" and "refused" in st.message


def test_explain_chain():
    try:
        try:
            raise PermissionError(errno.EACCES, "Permission denied")
        except PermissionError as e:
            raise RuntimeError("Error while fetching server API version") from e
    except RuntimeError as outer:
        msg = explain_connect_error(outer, "tcp://10.0.0.1:2375")
    assert "docker group" in msg and "usermod -aG docker" in msg
    assert "did not answer in 3 s" in explain_connect_error(TimeoutError(), "tcp://h:1", 3)
    assert "went away" not in explain_connect_error(None, "tcp://h:1")
    assert "reconnecting" in explain_connect_error(None, "tcp://h:1")
    assert "Cannot talk" in explain_connect_error(ValueError("boom"), "tcp://h:1")


def test_entry_from_inspect():
    ins = {
        "Id": "a" * 64,
        "Name": "/trainer",
        "Config": {"Image": "nvcr.io/pytorch:24.01", "Env": ["NVIDIA_VISIBLE_DEVICES=0"]},
        "HostConfig": {"Runtime": ""},
        "State": {"Status": "running", "Pid": 1234, "StartedAt": "2026-01-01T00:00:00Z"},
    }
    e = _entry(ins, frozenset({"nvidia"}), "nvidia")
    assert (e.name, e.image, e.status, e.runtime, e.pid) == (
        "trainer",
        "nvcr.io/pytorch:24.01",
        "running",
        "nvidia",
        1234,
    )
    assert [r.token for r in e.requests] == ["0"]
    ins["State"] = {"Status": "exited", "Pid": 0}
    assert _entry(ins, frozenset(), "runc").pid is None
    assert _entry({}, frozenset(), None).status == "unknown"


def test_status_value():
    st = DockerStatus("ok", "unix:///x")
    assert st.ok and st.to_json()["message"] is None
