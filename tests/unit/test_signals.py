"""Signals to GPU processes: only to the process that was shown (its PID and its start time), never
to PID 1 or gpudock, never to a PID of another process table; on processes the tests start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from gpudock.host.signals import SignalRefused, parse_signal, read_start_time, send_signal


@pytest.fixture
def child():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield p
    if p.poll() is None:
        p.kill()
        p.wait()


def _stat_line(pid: int, comm: str, start: int) -> str:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    # cutime cstime priority nice threads itrealvalue starttime ...
    fields = ["S", "1", "1", "1", "0", "-1", "4194560"] + ["0"] * 8 + ["20", "0", "1", "0", str(start), "1000"]
    return f"{pid} ({comm}) " + " ".join(fields) + "\n"


def test_the_start_time_is_field_22_of_stat_even_when_the_command_holds_parentheses(tmp_path):
    (tmp_path / "77").mkdir()
    (tmp_path / "77" / "stat").write_text(_stat_line(77, "we ird) (x", 123456))
    assert read_start_time(77, str(tmp_path)) == 123456
    assert read_start_time(78, str(tmp_path)) is None


def test_sigterm_reaches_the_process_that_was_shown(child):
    start = read_start_time(child.pid)
    assert start is not None
    sent = send_signal(child.pid, signal.SIGTERM, start, what="python sleep")
    assert sent.signal == "SIGTERM"
    assert child.wait(10) == -signal.SIGTERM


def test_sigkill_too(child):
    send_signal(child.pid, signal.SIGKILL, read_start_time(child.pid))
    assert child.wait(10) == -signal.SIGKILL


def test_a_pid_whose_start_time_changed_is_another_process_and_is_not_signalled(child):
    start = read_start_time(child.pid)
    with pytest.raises(SignalRefused, match=f"PID {child.pid} is now another process.*nothing sent"):
        send_signal(child.pid, signal.SIGKILL, start - 1)
    assert child.poll() is None


def test_a_pid_that_exited_is_refused(child):
    start = read_start_time(child.pid)
    child.kill()
    child.wait()
    with pytest.raises(SignalRefused, match="has exited since it was shown: nothing sent"):
        send_signal(child.pid, signal.SIGTERM, start, what="python sleep")


def test_a_process_table_that_is_not_this_machines_is_refused(child, tmp_path):
    # a copy of a host (--root) whose PID matches a live one here, with another start time here
    start = read_start_time(child.pid)
    (tmp_path / str(child.pid)).mkdir()
    (tmp_path / str(child.pid) / "stat").write_text(_stat_line(child.pid, "train", start + 5))
    with pytest.raises(SignalRefused, match="is not this machine's PID"):
        send_signal(child.pid, signal.SIGKILL, start + 5, proc_root=str(tmp_path))
    assert child.poll() is None


def test_no_start_time_known_means_no_signal(child):
    with pytest.raises(SignalRefused, match="start time could not be read"):
        send_signal(child.pid, signal.SIGKILL, None)
    assert child.poll() is None


def test_init_and_gpudock_itself_are_never_signalled():
    with pytest.raises(SignalRefused, match="init"):
        send_signal(1, signal.SIGTERM, read_start_time(1))
    with pytest.raises(SignalRefused, match="this gpudock"):
        send_signal(os.getpid(), signal.SIGTERM, read_start_time(os.getpid()))


def test_only_term_and_kill_are_offered(child):
    assert parse_signal("TERM") is signal.SIGTERM
    assert parse_signal("sigkill") is signal.SIGKILL
    assert parse_signal("9") is signal.SIGKILL
    assert parse_signal(15) is signal.SIGTERM
    with pytest.raises(SignalRefused, match="TERM .15. or KILL .9."):
        parse_signal("HUP")
    with pytest.raises(SignalRefused, match="SIGTERM or SIGKILL only"):
        send_signal(child.pid, signal.SIGHUP, read_start_time(child.pid))
    assert child.poll() is None


def test_the_sessions_snapshot_carries_each_gpu_processs_start_time(child):
    from gpudock.session import open_scenario
    from helpers.sim import gpu, scenario

    sc = scenario([gpu(0, process=[{"pid": child.pid, "used_memory_mib": 10, "command": "python"}])])
    with open_scenario(sc, proc_root="/proc") as host:  # its processes are this machine's
        (p,) = host.snapshot().gpus[0].processes
        assert p.start_time == read_start_time(child.pid) is not None
    with open_scenario(sc) as host:  # the simulated /proc has no stat: no start time, so no signal
        assert host.snapshot().gpus[0].processes[0].start_time is None
