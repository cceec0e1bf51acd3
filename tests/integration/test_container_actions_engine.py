"""Container actions against the private Docker engine (dockerd 20.10): logs, stop, restart, remove
and a shell, through the session and the CLI as the Containers screen uses them, and the shell
from the dashboard itself on a real pseudo-terminal (the docker CLI as a child process, the
dashboard suspended, then back)."""

from __future__ import annotations

import json
import os
import sys
import threading

import pytest

from gpudock.cli import main
from gpudock.launch.lifecycle import ActionError, ContainerGone
from gpudock.session import open_scenario
from helpers import tty
from helpers.sim import scenario


@pytest.fixture
def host(engine):
    with open_scenario(scenario(), docker_url=engine.base_url, proc_root="/proc") as h:
        yield h


def run(engine, name, command, **kw):
    c = engine.client.containers.run(engine.image, command, name=name, detach=True, **kw)
    c.reload()
    return c


def test_logs_follow_stdout_and_stderr_and_end_when_the_container_stops(engine, host):
    script = "echo one; sleep 0.3; echo two >&2; sleep 0.3; echo three; sleep 300"
    c = run(engine, "logs-follow", ["sh", "-c", script])
    stream = host.container_logs("logs-follow")
    got: list[str] = []
    three = threading.Event()

    def read() -> None:
        for line in stream.lines():
            got.append(line)
            if line == "three":
                three.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert three.wait(30), got
    host.container_action(c.id, "stop", timeout=1)  # dockerd ends the follow
    reader.join(30)
    assert not reader.is_alive()
    assert got == ["one", "two", "three"]
    stream.close()


def test_the_tail_of_the_logs(engine, host):
    run(engine, "logs-tail", ["sh", "-c", "for i in 1 2 3 4 5; do echo line $i; done; sleep 300"])
    for _ in range(100):
        lines = list(host.container_logs("logs-tail", tail=2, follow=False).lines())
        if lines == ["line 4", "line 5"]:
            break
    assert lines == ["line 4", "line 5"]


def test_stop_restart_and_remove(engine, host):
    c = run(engine, "acted-on", ["sleep", "300"])
    other = run(engine, "bystander", ["sleep", "300"])
    started = c.attrs["State"]["StartedAt"]
    done = host.container_action(c.id, "stop", expect_id=c.id, shown_as="acted-on")
    assert done.status == "exited" and done.message.startswith("acted-on (")
    c.reload()
    assert c.status == "exited"
    done = host.container_action(c.id, "restart", expect_id=c.id)
    c.reload()
    assert done.status == "running" and c.status == "running" and c.attrs["State"]["StartedAt"] != started
    with pytest.raises(ActionError, match="acted-on is running: stop it first"):
        host.container_action(c.id, "remove")
    assert host.container_action(c.id, "remove", force=True).status is None
    assert "acted-on" not in [x.name for x in engine.client.containers.list(all=True)]
    with pytest.raises(ContainerGone, match="container acted-on is gone"):
        host.container_action(c.id, "stop", expect_id=c.id, shown_as="acted-on")
    other.reload()
    assert other.status == "running"  # nothing else touched


def test_the_cli_on_the_real_engine(engine, capsys):
    run(engine, "cli-acted", ["sleep", "300"])
    url = engine.base_url
    assert main(["--demo", "--docker-host", url, "container", "stop", "--time", "1", "cli-acted", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "exited"
    assert main(["--demo", "--docker-host", url, "container", "restart", "cli-acted"]) == 0
    assert "restarted, now running" in capsys.readouterr().out
    assert main(["--demo", "--docker-host", url, "container", "rm", "cli-acted"]) == 2
    assert "stop it first" in capsys.readouterr().err
    assert main(["--demo", "--docker-host", url, "container", "rm", "-f", "cli-acted"]) == 0
    assert main(["--demo", "--docker-host", url, "--readonly", "container", "logs", "no-such"]) == 2
    assert "container no-such is gone" in capsys.readouterr().err


def test_a_shell_needs_a_running_container(engine, host):
    c = run(engine, "not-running", ["true"])
    c.wait(timeout=30)
    with pytest.raises(ActionError, match="not-running is exited, not running: a shell needs a running container"):
        host.shell_argv(c.id)
    c2 = run(engine, "runs", ["sleep", "300"])
    argv = host.shell_argv(c2.id)
    assert argv[1:] == ["-H", engine.base_url, "exec", "-it", c2.id, "sh"]


def test_an_image_without_sh_is_said_in_the_engines_words_before_the_terminal_is_handed_over(engine, host):
    engine.make_image("gpudock-test/no-sh:latest", instructions=['RUN ["/bin/busybox", "rm", "/bin/sh"]'])
    c = engine.client.containers.run("gpudock-test/no-sh:latest", ["sleep", "300"], name="no-sh", detach=True)
    try:
        with pytest.raises(ActionError) as e:
            host.shell_argv(c.id, shown_as="no-sh")
        msg = str(e.value)
        assert msg.startswith("no-sh has no sh: its image has no shell to open (the engine said: OCI runtime exec")
        assert 'exec: "sh": executable file not found in $PATH' in msg
    finally:
        c.remove(force=True)
        engine.client.images.remove("gpudock-test/no-sh:latest", force=True)


# --------------------------------------------------------------------------- the shell, from the dashboard


def _dashboard(tmp_path, engine):
    env = dict(os.environ, TMPDIR=str(tmp_path), TERM="xterm-256color")
    env.pop("DOCKER_HOST", None)
    return tty.spawn([sys.executable, "-m", "gpudock", "--demo", "--docker-host", engine.base_url], env)


def _highlight_first_row(fd: int) -> None:
    """The engine's containers come first, above the rows of the demo's GPU processes this engine
    does not know; the cursor may have started on one of those (the table keeps it on its row as
    the engine's containers arrive): up to the top, until the details show a container's claims."""
    os.write(fd, b"\x1b[A\x1b[A\x1b[A")
    out = tty.read(fd, 30, until=b"Claims")
    assert b"Claims" in out, out[-2000:]


def _stop(pid: int, fd: int) -> None:
    os.write(fd, b"q")
    if tty.wait(pid, 20) is None:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    os.close(fd)


def test_s_opens_a_shell_in_the_container_and_the_dashboard_comes_back(engine, tmp_path):
    run(engine, "aaa-shell", ["sleep", "300"])
    pid, fd = _dashboard(tmp_path, engine)
    try:
        assert b"sim:demo" in tty.read(fd, 60, until=b"sim:demo")
        os.write(fd, b"c")
        assert b"aaa-shell" in tty.read(fd, 30, until=b"aaa-shell")
        _highlight_first_row(fd)
        os.write(fd, b"s")
        out = tty.read(fd, 30, until=b"# ")  # busybox sh's prompt, as root
        assert b"# " in out, out[-2000:]
        os.write(fd, b"echo gpudock-$((6*7)); exit\r")
        out = tty.read(fd, 30, until=b"running container")
        assert b"gpudock-42" in out, out[-2000:]
        assert b"running container" in out, out[-2000:]  # the Containers screen painted again
        out += tty.read(fd, 10, until=b"closed")
        assert b"Shell in aaa-shell closed" in out
    finally:
        _stop(pid, fd)


def test_a_shell_where_the_image_has_no_sh_says_so_and_the_dashboard_is_intact(engine, tmp_path):
    engine.make_image("gpudock-test/no-sh:latest", instructions=['RUN ["/bin/busybox", "rm", "/bin/sh"]'])
    c = engine.client.containers.run("gpudock-test/no-sh:latest", ["sleep", "300"], name="aaa-no-sh", detach=True)
    try:
        pid, fd = _dashboard(tmp_path, engine)
        try:
            assert b"sim:demo" in tty.read(fd, 60, until=b"sim:demo")
            os.write(fd, b"c")
            assert b"aaa-no-sh" in tty.read(fd, 30, until=b"aaa-no-sh")
            _highlight_first_row(fd)
            os.write(fd, b"s")
            out = tty.read(fd, 30, until=b"has no sh")
            assert b"aaa-no-sh has no sh" in out, out[-3000:]
            os.write(fd, b"g")  # never suspended for nothing: it still answers keys
            assert b"GPUs" in tty.read(fd, 20, until=b"GPUs")
        finally:
            _stop(pid, fd)
    finally:
        c.remove(force=True)
        engine.client.images.remove("gpudock-test/no-sh:latest", force=True)
