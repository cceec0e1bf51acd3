"""Read-only sessions: `gpudock --readonly` (or GPUDOCK_READONLY=1) changes nothing on the host.

An operator shares a dashboard over SSH: nobody watching it can launch, edit the toolkit's files,
stop a container or kill a process. The session refuses these itself (its Docker clients send no
request that changes the engine), and the CLI refuses every command that changes the host before
it opens the host.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys

import docker
import pytest

from gpudock import cli
from gpudock.host.signals import read_start_time
from gpudock.launch.lifecycle import ActionError
from gpudock.session import Options, ReadOnlyError, SessionError, open_scenario
from helpers.sim import frozen_demo, gpu, scenario

# Every command that only reads. A new command must be put here or in cli.CHANGES_HOST.
READS = {
    "gpus",
    "holders",
    "doctor",
    "libs",
    "toolkit status",
    "args",
    "container logs",
    "topo",
    "sim-exec",
    "scenarios",
    "exporter",
    "fleet",
}


def _leaf_commands() -> set[str]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out = set()
    for sp in cli._leaves(sub):
        if not any(isinstance(a, argparse._SubParsersAction) for a in sp._actions):
            out.add(sp.prog.removeprefix("gpudock "))
    return out


def test_every_command_either_reads_or_is_refused_in_a_read_only_session():
    leaves = _leaf_commands()
    assert leaves == READS | cli.CHANGES_HOST
    assert not READS & cli.CHANGES_HOST


# argv after the command word, enough to get past argparse
CHANGING = {
    "run": ["run", "--gpu", "0", "busybox"],
    "serve": ["serve", "--no-plugin"],
    "nvidia-docker": ["nvidia-docker", "run", "busybox"],
    "toolkit debug": ["toolkit", "debug", "on", "--yes"],
    "toolkit runtime register": ["toolkit", "runtime", "register"],
    "toolkit defaults": ["toolkit", "defaults", "--config", "/nonexistent/gpudock/config.toml"],
    "container stop": ["container", "stop", "burn-in"],
    "container restart": ["container", "restart", "burn-in"],
    "container rm": ["container", "rm", "-f", "burn-in"],
    "kill": ["kill", "3904121"],
}


def test_the_table_of_changing_commands_is_whole():
    assert set(CHANGING) == cli.CHANGES_HOST


@pytest.mark.parametrize("command", sorted(CHANGING))
def test_each_changing_command_is_refused_with_readonly(command, capsys):
    rc = cli.main(["--demo", "--readonly", *CHANGING[command]])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert f"read-only session (--readonly): gpudock {command} would change the host" in err
    assert "start gpudock without --readonly" in err


def test_the_environment_variable_is_named_when_it_is_what_made_it_read_only(capsys, monkeypatch):
    monkeypatch.setenv("GPUDOCK_READONLY", "1")
    rc = cli.main(["--demo", "container", "stop", "burn-in"])
    err = capsys.readouterr().err
    assert rc == 2 and "read-only session (GPUDOCK_READONLY=1)" in err and "without GPUDOCK_READONLY" in err


def test_reading_commands_still_work_read_only(capsys):
    assert cli.main(["--demo", "--readonly", "container", "logs", "burn-in"]) == 0
    assert "burn-in: simulated by gpudock" in capsys.readouterr().out
    assert cli.main(["--readonly", "--demo", "gpus", "--brief"]) == 0


@pytest.mark.parametrize(
    "value, readonly", [("1", True), ("yes", True), ("TRUE", True), ("0", False), ("", False), ("off", False)]
)
def test_gpudock_readonly_values(value, readonly):
    opts = Options.from_namespace(argparse.Namespace(), environ={"GPUDOCK_READONLY": value})
    assert opts.readonly is readonly


def test_a_value_that_means_neither_is_refused():
    with pytest.raises(SessionError, match="GPUDOCK_READONLY='maybe': set it to 1"):
        Options.from_namespace(argparse.Namespace(), environ={"GPUDOCK_READONLY": "maybe"})


def test_the_option_wins_over_the_environment_in_the_messages():
    opts = Options.from_namespace(argparse.Namespace(readonly=True), environ={"GPUDOCK_READONLY": "1"})
    assert opts.readonly and opts.readonly_from == "--readonly"


# --------------------------------------------------------------------------- the session itself


@pytest.fixture
def ro_demo():
    host = open_scenario(frozen_demo(), Options(demo=True, readonly=True))
    yield host
    host.close()


def test_the_sessions_docker_client_sends_no_request_that_changes_the_engine(ro_demo):
    client = ro_demo.docker_client()
    c = client.containers.get("burn-in")  # reading works
    for change in (c.stop, c.restart, c.kill, lambda: c.remove(force=True), c.pause):
        with pytest.raises(ReadOnlyError, match=r"the Docker request POST /containers/|DELETE /containers/"):
            change()
    with pytest.raises(ReadOnlyError):
        client.containers.create("pytorch/pytorch:2.1.0-cuda12.1-cudnn8-runtime", ["true"])
    assert ro_demo.sim.dockerd.engine.find("burn-in").state == "running"
    assert [x.name for x in client.containers.list()]  # and listing still works


def test_container_actions_shells_and_signals_are_refused_by_the_session(ro_demo):
    for action in ("stop", "restart", "remove"):
        with pytest.raises(ReadOnlyError, match=r"(stopping|restarting|removing) container burn-in"):
            ro_demo.container_action("burn-in", action, force=True)
    with pytest.raises(ReadOnlyError, match="opening a shell in burn-in"):
        ro_demo.shell_argv("burn-in")
    with pytest.raises(ReadOnlyError, match="sending SIGKILL to PID 3904121"):
        ro_demo.signal_process(3904121, "KILL", 1)
    with pytest.raises(ReadOnlyError, match="launching"):
        ro_demo.refuse_if_readonly("launching a container")
    assert ro_demo.sim.dockerd.engine.find("burn-in").state == "running"


def test_logs_are_reading_and_allowed(ro_demo):
    stream = ro_demo.container_logs("burn-in", follow=False)
    assert list(stream.lines())[0].startswith("burn-in: simulated by gpudock")
    stream.close()


# --------------------------------------------------------------------------- simulated hosts never signal here


def test_a_simulated_host_never_signals_a_process_of_this_machine():
    # the scenario's GPU process has the PID of a real process here: it is still not signalled
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        sc = scenario([gpu(0, process=[{"pid": child.pid, "used_memory_mib": 100, "command": "python"}])])
        with open_scenario(sc) as host:
            with pytest.raises(Exception, match=f"PID {child.pid} is a process of the simulated host test"):
                host.signal_process(child.pid, signal.SIGKILL, read_start_time(child.pid))
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()


def test_a_shell_in_a_simulated_container_is_refused_in_words():
    with open_scenario(frozen_demo()) as host:
        with pytest.raises(ActionError, match="container of the simulated host demo: nothing runs in it"):
            host.shell_argv("burn-in")


def test_the_docker_sdk_is_what_refuses(ro_demo):
    # the refusal is an exception the launch form and commands already catch as an engine failure
    assert issubclass(ReadOnlyError, SessionError)
    assert ro_demo.explain_engine_error(ReadOnlyError("x")) == "x"
    assert isinstance(ro_demo.docker_client(), docker.DockerClient)
