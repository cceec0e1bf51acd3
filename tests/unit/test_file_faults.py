"""Files that are not what they should be, and filesystems that fail: every one a clear message
naming the file, never a hang, a MemoryError or a traceback.

FIFOs where gpudock reads a file (it must not wait for a writer), devices (/dev/zero never ends),
directories, a full disk (a real 64 KiB tmpfs) and a read-only filesystem (a real read-only
remount), the mounts made in a private mount namespace that disappears with the test.
"""

from __future__ import annotations

import os
import shlex
import stat
import sys
import threading
from pathlib import Path

import pytest

from gpudock.host import ldcache, procfs
from gpudock.host.root import HostRoot, NotRegularFileError
from gpudock.sim.scenario import ScenarioError, load_scenario
from gpudock.toolkit import config as tc
from gpudock.toolkit import daemon_json as dj
from gpudock.toolkit.atomic import FileAccessError, read_snapshot
from helpers.fstree import gpudock, private_mount

DATA = Path(__file__).resolve().parent.parent / "data" / "config-toml"
QUICK = 20  # seconds: far more than any of these needs; a reader that blocks runs into it


def finishes(fn, timeout: float = QUICK):
    """fn() run in a thread: its result (or exception) if it returns within ``timeout``."""
    out: dict = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"{fn} blocked for {timeout} s (a FIFO opened without O_NONBLOCK?)"
    if "error" in out:
        raise out["error"]
    return out["value"]


def _fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def _zero(path: Path) -> Path:
    """A character device 1:5 (what /dev/zero is) at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mknod(path, 0o644 | stat.S_IFCHR, os.makedev(1, 5))
    return path


# --------------------------------------------------------------------------- HostRoot readers


@pytest.mark.parametrize("make", [_fifo, _zero], ids=["fifo", "chardev"])
def test_host_root_reads_only_regular_files(tmp_path, make):
    make(tmp_path / "etc/thing")
    for root, p in ((HostRoot(tmp_path), "/etc/thing"), (HostRoot("/"), str(tmp_path / "etc/thing"))):
        with pytest.raises(NotRegularFileError) as ei:
            finishes(lambda root=root, p=p: root.read_bytes(p))
        assert ei.value.kind in ("a FIFO (named pipe)", "a character device")
        with pytest.raises(NotRegularFileError):
            finishes(lambda root=root, p=p: root.read_text(p))


def test_host_root_reads_proc_pseudo_files():
    # /proc files are regular files of size 0: still read, in chunks
    text = HostRoot("/").read_text("/proc/self/status")
    assert text and "Pid:" in text


@pytest.mark.parametrize("make", [_fifo, _zero], ids=["fifo", "chardev"])
def test_ld_so_cache_that_is_not_a_file(tmp_path, make):
    make(tmp_path / "etc/ld.so.cache")
    with pytest.raises(ldcache.LdCacheError) as ei:
        finishes(lambda: ldcache.read(HostRoot(tmp_path)))
    assert "/etc/ld.so.cache" in str(ei.value) and "not a regular file" in str(ei.value)


@pytest.mark.parametrize(
    "rel,probe",
    [
        ("proc/modules", procfs.loaded_modules),
        ("proc/driver/nvidia/version", procfs.driver_version),
    ],
    ids=["modules", "version"],
)
def test_proc_files_that_are_fifos_are_not_read(tmp_path, rel, probe):
    _fifo(tmp_path / rel)
    assert finishes(lambda: probe(HostRoot(tmp_path))) is None


def test_doctor_on_a_root_full_of_fifos_finishes(tmp_path):
    for rel in ("etc/ld.so.cache", "proc/modules", "proc/driver/nvidia/version", "proc/devices"):
        _fifo(tmp_path / rel)
    p = gpudock("doctor", "--root", str(tmp_path), "--no-docker", timeout=QUICK * 3)
    assert p.returncode in (0, 1), p.stderr
    assert "Traceback" not in p.stderr


# --------------------------------------------------------------------------- config.toml, daemon.json


@pytest.mark.parametrize("make", [_fifo, _zero], ids=["fifo", "chardev"])
def test_daemon_json_and_config_toml_that_are_not_files(tmp_path, make):
    root = tmp_path / "R"
    make(root / "etc/docker/daemon.json")
    make(root / "etc/nvidia-container-runtime/config.toml")
    p = gpudock("--root", str(root), "toolkit", "status", "--no-engine", timeout=QUICK)
    assert p.returncode == 2
    kind = "FIFO" if make is _fifo else "character device"
    assert p.stdout.count(kind) == 2, p.stdout
    assert "config.toml" in p.stderr and kind in p.stderr  # the first error, once, on stderr
    p = gpudock("--root", str(root), "toolkit", "runtime", "register", timeout=QUICK)
    assert p.returncode == 2 and kind in p.stderr and "daemon.json" in p.stderr
    p = gpudock("--root", str(root), "toolkit", "debug", "on", "--yes", timeout=QUICK)
    assert p.returncode == 2 and kind in p.stderr and "config.toml" in p.stderr
    p = gpudock("--root", str(root), "toolkit", "defaults", timeout=QUICK)
    assert p.returncode == 2 and kind in p.stderr
    # and nothing replaced them
    assert not (root / "etc/docker/daemon.json").is_file()
    assert not (root / "etc/nvidia-container-runtime/config.toml").is_file()


@pytest.mark.parametrize("action", ["status", "debug", "defaults"])
def test_config_dev_zero_is_a_clear_error(action):
    argv = {
        "status": ["toolkit", "status", "--no-engine"],
        "debug": ["toolkit", "debug", "on", "--yes"],
        "defaults": ["toolkit", "defaults"],
    }[action]
    p = gpudock(*argv, "--config", "/dev/zero", timeout=QUICK)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "/dev/zero" in p.stderr and "character device" in p.stderr and "MemoryError" not in p.stderr
    assert stat.S_ISCHR(os.stat("/dev/zero").st_mode)


def test_daemon_json_option_fifo(tmp_path):
    f = _fifo(tmp_path / "daemon.json")
    p = gpudock("toolkit", "runtime", "register", "--daemon-json", str(f), timeout=QUICK)
    assert p.returncode == 2 and "FIFO" in p.stderr and str(f) in p.stderr


def test_directory_given_as_the_file(tmp_path):
    d = tmp_path / "daemon.json"
    d.mkdir()
    c = tmp_path / "config.toml"
    c.mkdir()
    p = gpudock("toolkit", "status", "--no-engine", "--daemon-json", str(d), "--config", str(c))
    assert p.returncode == 2
    assert f"{c}: it is a directory" in p.stdout and f"{d}: it is a directory" in p.stdout
    p = gpudock("toolkit", "runtime", "register", "--daemon-json", str(d))
    assert p.returncode == 2 and f"{d}: it is a directory" in p.stderr
    with pytest.raises(FileAccessError, match="directory"):
        dj.load_daemon_json(str(d))
    with pytest.raises(FileAccessError, match="directory"):
        tc.load_config(str(c))


def test_huge_file_is_refused_without_reading_it_all(tmp_path):
    big = tmp_path / "daemon.json"
    with open(big, "wb") as f:
        f.truncate(1 << 30)  # sparse: 1 GiB of nothing
    with pytest.raises(FileAccessError, match="larger than 4 MiB"):
        read_snapshot(str(big))


# --------------------------------------------------------------------------- --sim FILE


@pytest.mark.parametrize("which", ["dev-zero", "fifo", "directory", "missing"])
def test_sim_file_that_is_not_a_scenario_file(tmp_path, which):
    path = {
        "dev-zero": "/dev/zero",
        "fifo": str(tmp_path / "s.toml"),
        "directory": str(tmp_path),
        "missing": str(tmp_path / "nothere.toml"),
    }[which]
    if which == "fifo":
        _fifo(Path(path))
    with pytest.raises(ScenarioError) as ei:
        finishes(lambda: load_scenario(path))
    want = {"dev-zero": "character device", "fifo": "FIFO", "directory": "directory", "missing": "does not exist"}
    assert str(ei.value).startswith(f"{path}: cannot read the scenario file") and want[which] in str(ei.value)
    p = gpudock("--sim", path, "gpus", timeout=QUICK)
    assert p.returncode == 2 and want[which] in p.stderr and "MemoryError" not in p.stderr


# --------------------------------------------------------------------------- failing filesystems


def test_full_disk_is_said_and_leaves_the_file_as_it_was(tmp_path):
    """A 64 KiB tmpfs holding daemon.json, filled to the last block: the write fails with ENOSPC.
    All in one private mount namespace, which also shows what the file system holds afterwards."""
    mnt, out = tmp_path / "small", tmp_path / "out"
    mnt.mkdir()
    out.mkdir()
    original = '{\n    "debug": true\n}\n'
    (out / "original").write_text(original)
    cli = " ".join(shlex.quote(a) for a in (sys.executable, "-m", "gpudock"))
    script = tmp_path / "full.sh"
    script.write_text(
        f'mount -t tmpfs -o size=64k gpudock-test "{mnt}"\n'
        f'cp "{out}/original" "{mnt}/daemon.json"\n'
        f'dd if=/dev/zero of="{mnt}/filler" bs=4096 2>/dev/null || true\n'
        f'{cli} toolkit runtime register --daemon-json "{mnt}/daemon.json" >"{out}/stdout" 2>"{out}/stderr"\n'
        f'echo $? >"{out}/rc"\n'
        f'cp "{mnt}/daemon.json" "{out}/after" 2>/dev/null || cat "{mnt}/daemon.json" >"{out}/after"\n'
        f'ls -a "{mnt}" >"{out}/listing"\n'
    )
    p = gpudock("--help", prefix=["unshare", "--mount", "--propagation", "private", "sh", str(script), "--"])
    assert p.returncode == 0, p.stderr
    err = (out / "stderr").read_text()
    assert (out / "rc").read_text().strip() == "2", err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "no space left" in lines[0] and f"{mnt}/daemon.json" in lines[0], err
    assert (out / "after").read_text() == original
    names = sorted(n for n in (out / "listing").read_text().split() if n not in (".", ".."))
    assert names == [".daemon.json.gpudock-lock", "daemon.json", "filler"]  # no temp file left behind


def test_read_only_filesystem_message_does_not_say_run_as_root(tmp_path):
    mnt = tmp_path / "ro"
    mnt.mkdir()
    setup = f'mount -t tmpfs gpudock-test "{mnt}" && printf "{{}}" > "{mnt}/daemon.json" && mount -o remount,ro "{mnt}"'
    p = gpudock("toolkit", "runtime", "register", "--daemon-json", f"{mnt}/daemon.json", prefix=private_mount(setup))
    assert p.returncode == 2
    assert "read-only" in p.stderr and f"{mnt}/daemon.json" in p.stderr
    assert "as root" not in p.stderr and "sudo" not in p.stderr
    p = gpudock("toolkit", "defaults", "--config", f"{mnt}/sub/config.toml", prefix=private_mount(setup))
    assert p.returncode == 2 and "read-only" in p.stderr and "as root" not in p.stderr


def test_config_option_fifo_never_blocks(tmp_path):
    f = _fifo(tmp_path / "config.toml")
    status = ["toolkit", "status", "--no-engine", "--daemon-json", str(tmp_path / "none.json")]
    for argv in (status, ["toolkit", "debug", "on", "--yes"], ["toolkit", "defaults"]):
        p = gpudock(*argv, "--config", str(f), timeout=QUICK)
        assert p.returncode == 2 and "FIFO" in p.stderr and str(f) in p.stderr, (argv, p.stderr)
    assert stat.S_ISFIFO(os.stat(f).st_mode)
