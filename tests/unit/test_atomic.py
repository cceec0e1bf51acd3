"""The safe-write primitive: old or new file, never partial; mode, owner, backup; refusals."""

from __future__ import annotations

import errno
import os
import random
import select
import signal
import tempfile
import time
import tomllib
import traceback
from pathlib import Path

import pytest

from gpudock.toolkit import atomic
from gpudock.toolkit import config as tc
from gpudock.toolkit.atomic import (
    BACKUP_SUFFIX,
    FileChangedError,
    PermissionDeniedError,
    atomic_write,
    read_snapshot,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "config-toml"


def _temps(d: Path) -> list[str]:
    return [p.name for p in d.iterdir() if p.name.endswith(atomic.TEMP_SUFFIX)]


def test_write_keeps_backup_and_leaves_no_temp(tmp_path):
    p = tmp_path / "f.toml"
    p.write_bytes(b"old\n")
    res = atomic_write(str(p), b"new\n", read_snapshot(str(p)))
    assert p.read_bytes() == b"new\n"
    assert res.backup == str(p) + BACKUP_SUFFIX and Path(res.backup).read_bytes() == b"old\n"
    assert res.bytes_written == 4
    assert _temps(tmp_path) == []


def test_mode_and_owner_kept(tmp_path):
    assert os.geteuid() == 0, "this test chowns to another uid and needs root"
    p = tmp_path / "f.toml"
    p.write_bytes(b"old\n")
    os.chown(p, 1234, 2345)
    os.chmod(p, 0o640)
    atomic_write(str(p), b"new\n", read_snapshot(str(p)))
    st = os.stat(p)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1234, 2345, 0o640)
    b = os.stat(str(p) + BACKUP_SUFFIX)
    # the backup holds the same content, so it gets the same protection
    assert (b.st_uid, b.st_gid, b.st_mode & 0o7777) == (1234, 2345, 0o640)


def test_read_only_file_stays_read_only(tmp_path):
    # as root a 0444 file is writable; what must hold is that it stays 0444 afterwards
    p = tmp_path / "f.toml"
    p.write_bytes(b"old\n")
    os.chmod(p, 0o444)
    atomic_write(str(p), b"new\n", read_snapshot(str(p)))
    assert p.read_bytes() == b"new\n" and os.stat(p).st_mode & 0o777 == 0o444


def test_new_file_created_with_mode_and_refused_if_it_appears(tmp_path):
    p = tmp_path / "sub" / "new.toml"
    snap = read_snapshot(str(p))
    assert not snap.exists
    res = atomic_write(str(p), b"x = 1\n", snap, make_parents=True)
    assert res.backup is None and p.read_bytes() == b"x = 1\n"
    assert os.stat(p).st_mode & 0o777 == 0o644
    with pytest.raises(FileChangedError, match="was created by someone else"):
        atomic_write(str(p), b"x = 2\n", snap)
    assert p.read_bytes() == b"x = 1\n"


@pytest.mark.parametrize("how", ["content", "same-content-new-inode", "removed"])
def test_file_replaced_during_edit_is_refused(tmp_path, monkeypatch, how):
    p = tmp_path / "config.toml"
    p.write_bytes(b"a = 1\n")
    snap = read_snapshot(str(p))
    real_write_temp = atomic._write_temp

    def racing_write_temp(*a, **kw):
        # the other writer gets in after our temp file is ready, just before our rename
        tmp = real_write_temp(*a, **kw)
        if how == "content":
            p.write_bytes(b"a = 2  # theirs\n")
        elif how == "same-content-new-inode":
            other = tmp_path / "theirs"
            other.write_bytes(b"a = 1\n")
            os.replace(other, p)
        else:
            p.unlink()
        return tmp

    monkeypatch.setattr(atomic, "_write_temp", racing_write_temp)
    with pytest.raises(FileChangedError, match="by someone else") as ei:
        atomic_write(str(p), b"a = 3  # ours\n", snap)
    assert str(p) in str(ei.value)
    if how == "content":
        assert p.read_bytes() == b"a = 2  # theirs\n"
    elif how == "same-content-new-inode":
        assert p.read_bytes() == b"a = 1\n"
    else:
        assert not p.exists()
    assert _temps(tmp_path) == []
    assert not (tmp_path / ("config.toml" + BACKUP_SUFFIX)).exists()


def test_permission_denied_on_rename(tmp_path, monkeypatch):
    p = tmp_path / "config.toml"
    p.write_bytes(b"a = 1\n")
    snap = read_snapshot(str(p))

    def deny(*a, **kw):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(atomic.os, "replace", deny)
    with pytest.raises(PermissionDeniedError) as ei:
        atomic_write(str(p), b"a = 2\n", snap)
    msg = str(ei.value)
    assert "root" in msg and "sudo" in msg and str(p) in msg
    monkeypatch.undo()
    assert p.read_bytes() == b"a = 1\n"
    assert _temps(tmp_path) == []


def test_permission_denied_on_open(tmp_path, monkeypatch):
    p = tmp_path / "config.toml"
    p.write_bytes(b"a = 1\n")
    snap = read_snapshot(str(p))
    real_open = os.open

    def deny(path, flags, *a, **kw):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_open(path, flags, *a, **kw)

    monkeypatch.setattr(os, "open", deny)  # tempfile.mkstemp goes through os.open
    with pytest.raises(PermissionDeniedError, match=r"cannot write .*config\.toml.*run gpudock as root"):
        atomic_write(str(p), b"a = 2\n", snap)

    def deny_all(path, flags, *a, **kw):
        raise PermissionError(errno.EACCES, "Permission denied", path)

    monkeypatch.setattr(os, "open", deny_all)
    with pytest.raises(PermissionDeniedError, match=r"cannot read .*config\.toml.*root"):
        read_snapshot(str(p))
    monkeypatch.undo()
    assert p.read_bytes() == b"a = 1\n"


def test_read_only_filesystem_is_a_clear_error(tmp_path, monkeypatch):
    p = tmp_path / "config.toml"
    p.write_bytes(b"a = 1\n")
    real_open = os.open

    def erofs(path, flags, *a, **kw):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, "Read-only file system", path)
        return real_open(path, flags, *a, **kw)

    snap = read_snapshot(str(p))
    monkeypatch.setattr(os, "open", erofs)
    with pytest.raises(atomic.FileAccessError, match="mounted read-only") as ei:
        atomic_write(str(p), b"a = 2\n", snap)
    assert "as root" not in str(ei.value) and str(p) in str(ei.value)


def test_really_unprivileged_user_gets_the_root_message():
    """A real non-root process (uid nobody) on a root-owned file in a root-owned directory.

    A forked child drops to nobody (the interpreter under /root is not executable for nobody, so
    no exec) and reports through a pipe.
    """
    assert os.geteuid() == 0
    d = Path(tempfile.mkdtemp(prefix="gpudock-atomic-"))
    try:
        os.chmod(d, 0o755)
        p = d / "config.toml"
        p.write_bytes(b"a = 1\n")
        os.chmod(p, 0o644)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            status = 3
            try:
                os.close(r)
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                try:
                    atomic_write(str(p), b"a = 2\n", read_snapshot(str(p)))
                    os.write(w, b"WROTE")
                    status = 1
                except PermissionDeniedError as e:
                    os.write(w, f"DENIED {e}".encode())
                    status = 0
            finally:
                os._exit(status)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            out = f.read().decode()
        _, st = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(st) == 0, out
        assert out.startswith("DENIED") and str(p) in out and "root" in out
        assert p.read_bytes() == b"a = 1\n"
        assert [x.name for x in d.iterdir()] == ["config.toml"]
    finally:
        for x in d.iterdir():
            x.unlink()
        d.rmdir()


def test_symlink_target_is_written_and_link_kept(tmp_path):
    target = tmp_path / "real.json"
    target.write_bytes(b"{}\n")
    link = tmp_path / "daemon.json"
    link.symlink_to(target)
    atomic_write(str(link), b'{"a": 1}\n', read_snapshot(str(link)))
    assert link.is_symlink() and target.read_bytes() == b'{"a": 1}\n'


def test_temp_files_of_a_killed_writer_are_cleaned_at_the_next_write(tmp_path):
    """Temps are only made under the file's lock, so the next writer (holding it) knows any it
    finds are orphans, however young; another file's temps are not touched."""
    p = tmp_path / "config.toml"
    p.write_bytes(b"a = 1\n")
    orphans = [tmp_path / f".config.toml.abcdefgh{atomic.TEMP_SUFFIX}"]
    orphans.append(tmp_path / f".config.toml{BACKUP_SUFFIX}.ijklmnop{atomic.TEMP_SUFFIX}")
    others = [tmp_path / f".config.toml.x.abcdefgh{atomic.TEMP_SUFFIX}", tmp_path / ".config.toml.notmine"]
    for o in orphans + others:
        o.write_bytes(b"a =")
    atomic_write(str(p), b"a = 2\n", read_snapshot(str(p)))
    assert [o.exists() for o in orphans] == [False, False]
    assert all(o.exists() for o in others)


def test_kill_9_mid_write_leaves_a_temp_that_the_next_write_removes(tmp_path):
    p = tmp_path / "config.toml"
    p.write_bytes(b"a = 1\n")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the writer: stops for ever inside its temp file's fsync, holding the lock
        try:
            os.close(r)

            def stuck(fd):
                os.write(w, b"x")
                time.sleep(3600)

            atomic.os.fsync = stuck
            atomic_write(str(p), b"a = 2\n" * 1000, read_snapshot(str(p)))
        finally:
            os._exit(3)
    os.close(w)
    assert _read_bytes(r, 1, 30) == b"x"
    os.close(r)
    assert len(_temps(tmp_path)) == 1
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    # the lock died with it; the next write goes through and takes the orphan away
    atomic_write(str(p), b"a = 3\n", read_snapshot(str(p)))
    assert p.read_bytes() == b"a = 3\n" and _temps(tmp_path) == []


# --------------------------------------------------------------------------- crash test

# A padded file makes every write take long enough that a non-atomic writer would be caught
# half-way (the control test below proves the harness does catch one).
PADDING = "".join(f"# padding line {i:06d} keeps the write window wide enough to be hit\n" for i in range(2000))


def _naive_write(path, data, expected, **kw):
    """What not to do: truncate in place and write line by line."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        for n, line in enumerate(data.splitlines(keepends=True)):
            os.write(fd, line)
            if n % 200 == 199:
                time.sleep(0.001)  # a slow disk: the torn state lasts a while
    finally:
        os.close(fd)


def _toggler(path: str, naive: bool, report: int) -> None:
    """Child body: toggle the hook's debug log for ever (until SIGKILL), one byte on ``report``
    after each completed toggle so the parent can time its kill."""
    if naive:
        tc.atomic_write = _naive_write  # this child only; the parent's module is not affected
    while True:
        try:
            cfg = tc.load_config(path)
            on = cfg.status().debug["hook"].enabled
            tc.apply_plan(tc.plan_debug(cfg, "hook", not on))
        except FileChangedError:
            pass
        except tc.ConfigError:
            if not naive:
                raise
            os._exit(5)  # the naive writer broke its own file
        os.write(report, b"d")


def _read_bytes(fd: int, n: int, timeout: float) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout
    while len(got) < n:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, n - len(got))
        if not chunk:
            break
        got += chunk
    return got


def _kill_loop(path: Path, kills: int, naive: bool) -> tuple[set, list[str]]:
    off = (DATA / "toolkit-1.17-debian.toml").read_text() + PADDING
    path.write_text(off)
    on = off.replace(
        '#debug = "/var/log/nvidia-container-toolkit.log"', 'debug = "/var/log/nvidia-container-toolkit.log"', 1
    )
    valid = {off.encode(), on.encode()}
    rng = random.Random(1234)
    seen: set = set()
    broken: list[str] = []
    toggle_s = 0.03  # running estimate of one toggle's duration on this machine, now
    for i in range(kills):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            status = 0
            try:
                os.close(r)
                os.write(w, b"1")
                _toggler(str(path), naive, w)
            except BaseException:
                traceback.print_exc()
                status = 7
            finally:
                os._exit(status)
        os.close(w)
        assert _read_bytes(r, 1, 30) == b"1"
        # Let the child finish 0-2 toggles, then kill it at a random point of the next one: the
        # kill lands inside a write whatever this machine's speed (a fixed sleep did not, under load).
        wait_for = rng.randint(0, 2)
        t0 = time.monotonic()
        done = _read_bytes(r, wait_for, 30)
        if wait_for and len(done) == wait_for:
            toggle_s = 0.5 * toggle_s + 0.5 * (time.monotonic() - t0) / wait_for
        time.sleep(rng.uniform(0, 1.2 * toggle_s))
        os.kill(pid, signal.SIGKILL)
        _, st = os.waitpid(pid, 0)
        os.close(r)
        if not (os.WIFSIGNALED(st) and os.WTERMSIG(st) == signal.SIGKILL) and not (
            naive and os.WIFEXITED(st) and os.WEXITSTATUS(st) == 5
        ):
            broken.append(f"kill {i}: the writer died on its own (status {st}); see its traceback above")
        if len(done) < wait_for:
            broken.append(f"kill {i}: the writer made no progress in 30 s")
        data = path.read_bytes()
        if data not in valid:
            broken.append(f"kill {i}: config.toml is neither the old nor the new version ({len(data)} bytes)")
            path.write_text(off)
            continue
        tomllib.loads(data.decode())
        seen.add(data)
        bak = Path(str(path) + BACKUP_SUFFIX)
        if bak.exists() and bak.read_bytes() not in valid:
            broken.append(f"kill {i}: the backup is broken")
        for name in os.listdir(path.parent):
            if not (
                name in ("config.toml", "config.toml" + BACKUP_SUFFIX, ".config.toml" + atomic.LOCK_SUFFIX)
                or name.endswith(atomic.TEMP_SUFFIX)
            ):
                broken.append(f"kill {i}: unexpected file {name}")
    return seen, broken


def test_sigkill_during_writes_never_leaves_a_broken_file(tmp_path):
    seen, broken = _kill_loop(tmp_path / "config.toml", 200, naive=False)
    assert broken == []
    # the kills landed at different moments: both versions were observed
    assert len(seen) == 2


def test_control_the_kill_harness_catches_a_non_atomic_writer(tmp_path):
    _, broken = _kill_loop(tmp_path / "config.toml", 100, naive=True)
    assert broken, "the harness did not notice a writer that truncates in place"


# --------------------------------------------------------------------------- the lock


def test_a_writer_waits_for_the_lock_and_says_who_holds_it(tmp_path, monkeypatch):
    import fcntl

    p = tmp_path / "daemon.json"
    p.write_bytes(b"{}\n")
    snap = read_snapshot(str(p))
    lock = tmp_path / f".daemon.json{atomic.LOCK_SUFFIX}"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another gpudock in the middle of its write
        monkeypatch.setattr(atomic, "LOCK_TIMEOUT_S", 0.3)
        with pytest.raises(atomic.FileAccessError, match="another gpudock has been writing it") as ei:
            atomic_write(str(p), b'{"a": 1}\n', snap)
        assert str(lock.name) in str(ei.value)
        assert p.read_bytes() == b"{}\n"
    finally:
        os.close(fd)
    atomic_write(str(p), b'{"a": 1}\n', snap)  # released: it goes through
    assert p.read_bytes() == b'{"a": 1}\n'


def test_edit_lock_is_reentrant_in_one_thread(tmp_path):
    p = tmp_path / "config.toml"
    p.write_bytes(b"a = 1\n")
    with atomic.edit_lock(str(p)):
        atomic_write(str(p), b"a = 2\n", read_snapshot(str(p)))  # would wait for ever otherwise
    assert p.read_bytes() == b"a = 2\n"


def test_a_planted_lock_link_is_refused_and_its_target_untouched(tmp_path):
    p = tmp_path / "config.toml"
    p.write_bytes(b"a = 1\n")
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    (tmp_path / f".config.toml{atomic.LOCK_SUFFIX}").symlink_to(victim)
    with pytest.raises(atomic.FileAccessError, match="not gpudock's lock file"):
        atomic_write(str(p), b"a = 2\n", read_snapshot(str(p)))
    assert victim.read_bytes() == b"precious\n" and p.read_bytes() == b"a = 1\n"


def test_setgid_and_sticky_bits_kept_with_owner(tmp_path):
    p = tmp_path / "daemon.json"
    p.write_bytes(b"{}\n")
    os.chown(p, 1234, 2345)
    os.chmod(p, 0o2640 | 0o1000)
    atomic_write(str(p), b'{"a": 1}\n', read_snapshot(str(p)))
    st = os.stat(p)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1234, 2345, 0o3640)


def test_links_planted_at_the_backup_and_temp_names_are_replaced_not_followed(tmp_path, monkeypatch):
    p = tmp_path / "config.toml"
    p.write_bytes(b"a = 1\n")
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    (tmp_path / ("config.toml" + BACKUP_SUFFIX)).symlink_to(victim)
    # every temp name the writer will pick already exists as a link to the victim
    names = iter(["aaaaaaaa", "aaaaaaaa", "bbbbbbbb", "bbbbbbbb", "cccccccc", "dddddddd"])
    monkeypatch.setattr(atomic, "_temp_name", lambda name: f".{name}.{next(names)}{atomic.TEMP_SUFFIX}")
    (tmp_path / f".config.toml.aaaaaaaa{atomic.TEMP_SUFFIX}").symlink_to(victim)
    (tmp_path / f".config.toml{BACKUP_SUFFIX}.bbbbbbbb{atomic.TEMP_SUFFIX}").symlink_to(victim)
    atomic_write(str(p), b"a = 2\n", read_snapshot(str(p)))
    assert victim.read_bytes() == b"precious\n"
    assert p.read_bytes() == b"a = 2\n"
    bak = tmp_path / ("config.toml" + BACKUP_SUFFIX)
    assert not bak.is_symlink() and bak.read_bytes() == b"a = 1\n"
