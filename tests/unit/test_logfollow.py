"""LogFollower: appends, partial lines, truncation, rotation, limits."""

from __future__ import annotations

import os
from pathlib import Path

from gpudock.toolkit import logfollow
from gpudock.toolkit.logfollow import LogFollower


def _append(p: Path, data: bytes) -> None:
    with open(p, "ab") as f:
        f.write(data)


def test_missing_then_created_then_appends(tmp_path):
    p = tmp_path / "hook.log"
    f = LogFollower(str(p))
    assert f.poll() == [] and not f.exists and f.last_event == "missing"
    _append(p, b"one\ntwo\n")
    assert f.poll() == ["one", "two"] and f.exists
    assert f.poll() == []
    _append(p, b"three\n")
    assert f.poll() == ["three"]
    assert f.size == len(b"one\ntwo\nthree\n") and not f.too_large
    f.close()


def test_partial_line_held_until_newline(tmp_path):
    p = tmp_path / "hook.log"
    _append(p, b"I1123 12:00:00 start")
    f = LogFollower(str(p))
    assert f.poll() == []
    _append(p, b"ed\r\nnext")
    assert f.poll() == ["I1123 12:00:00 started"]
    _append(p, b"\n")
    assert f.poll() == ["next"]


def test_truncation_restarts_from_zero(tmp_path):
    p = tmp_path / "hook.log"
    _append(p, b"a long first line\nsecond\npartial")
    f = LogFollower(str(p))
    assert f.poll() == ["a long first line", "second"]
    p.write_bytes(b"new\n")  # `> hook.log` / copytruncate then a write
    assert f.poll() == ["new"]
    assert f.truncations == 1 and f.last_event == "truncated"
    _append(p, b"more\n")
    assert f.poll() == ["more"]


def test_rotation_finishes_old_file_then_reads_new(tmp_path):
    p = tmp_path / "hook.log"
    _append(p, b"1\n2\n")
    f = LogFollower(str(p))
    assert f.poll() == ["1", "2"]
    _append(p, b"3\nlast-without-newline")
    os.rename(p, tmp_path / "hook.log.1")
    _append(p, b"fresh\n")
    assert f.poll() == ["3", "last-without-newline", "fresh"]
    assert f.rotations == 1 and f.last_event == "rotated"
    _append(p, b"x\n")
    assert f.poll() == ["x"]


def test_removed_then_recreated(tmp_path):
    p = tmp_path / "hook.log"
    _append(p, b"a\n")
    f = LogFollower(str(p))
    assert f.poll() == ["a"]
    _append(p, b"b\n")
    os.rename(p, tmp_path / "old")
    assert f.poll() == ["b"] and f.last_event == "missing"
    _append(p, b"c\n")
    assert f.poll() == ["c"]


def test_reads_at_most_max_bytes_per_poll(tmp_path):
    p = tmp_path / "hook.log"
    lines = [f"line {i:04d}" for i in range(1000)]
    _append(p, ("\n".join(lines) + "\n").encode())
    f = LogFollower(str(p), max_bytes=1000)
    got: list[str] = []
    polls = 0
    while len(got) < 1000:
        batch = f.poll()
        polls += 1
        assert sum(len(x) + 1 for x in batch) <= 1000 + 20  # the held partial line is the only carry-over
        got += batch
        assert polls < 100
    assert got == lines and polls >= 10


def test_too_large_and_from_end(tmp_path):
    p = tmp_path / "hook.log"
    _append(p, b"old\n" * 100)
    f = LogFollower(str(p), warn_bytes=200, from_end=True)
    assert f.poll() == []  # what was there before we started is skipped
    assert f.too_large and f.size == 400
    _append(p, b"new\n")
    assert f.poll() == ["new"]


def test_overlong_line_is_handed_out(tmp_path, monkeypatch):
    monkeypatch.setattr(logfollow, "MAX_LINE_BYTES", 10)
    p = tmp_path / "hook.log"
    _append(p, b"x" * 25)
    f = LogFollower(str(p))
    assert f.poll() == ["x" * 25]


def test_invalid_utf8_does_not_break(tmp_path):
    p = tmp_path / "hook.log"
    _append(p, b"ok \xff\n")
    assert LogFollower(str(p)).poll() == ["ok \ufffd"]


def test_a_fifo_at_the_log_path_is_never_read(tmp_path):
    import threading

    p = tmp_path / "nvidia-container-toolkit.log"
    os.mkfifo(p)
    f = LogFollower(str(p))
    got: list = []
    t = threading.Thread(target=lambda: got.append(f.poll()), daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "poll() blocked on a FIFO"
    assert got == [[]] and f.last_event == "not-a-file" and f.size == 0
    p.unlink()
    p.write_text("line 1\n")  # a real log appears: followed as usual
    assert f.poll() == ["line 1"]
