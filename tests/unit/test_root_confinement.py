"""`--root DIR` confines every read and write of the toolkit commands, as a chroot would.

The attacks of issue 16, each in a temporary directory: a root whose /etc/docker (or
/etc/nvidia-container-runtime) is an absolute link that this machine would follow out of the root,
made into a loop inside the root so that resolving it inside the root gives up; a link straight
to /etc/docker (run in a private mount namespace with a canary bind-mounted over /etc/docker, so
the real /etc is never at risk); a chain of 41 links for `toolkit defaults`. A canary directory
outside the root proves that nothing there was read, written, created or touched.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from gpudock.host.root import HostRoot
from gpudock.toolkit import config as tc
from gpudock.toolkit import daemon_json as dj
from gpudock.toolkit.atomic import AtomicWriteError, HostFile, atomic_write, read_snapshot
from helpers.fstree import gpudock, private_mount, tree_state

DATA = Path(__file__).resolve().parent.parent / "data" / "config-toml"
CANARY_JSON = '{\n    "runtimes": {"outside-marker": {"path": "/outside/marker"}}\n}\n'
CANARY_TOML = '[nvidia-container-runtime]\nmode = "outside-marker"\n'


@pytest.fixture
def attack(tmp_path: Path):
    """(root, canary): an empty root and, beside it, a canary directory with files in it."""
    root = tmp_path / "R"
    (root / "etc").mkdir(parents=True)
    canary = tmp_path / "outside"
    (canary / "docker").mkdir(parents=True)
    (canary / "docker/daemon.json").write_text(CANARY_JSON)
    (canary / "nvidia-container-runtime").mkdir()
    (canary / "nvidia-container-runtime/config.toml").write_text(CANARY_TOML)
    return root, canary


def _loop_out(root: Path, host_dir: str, outside: Path) -> None:
    """``root/host_dir`` -> ``outside`` (absolute, a path on this machine), and inside the root
    ``outside`` -> ``host_dir`` again: inside the root a loop, on this machine a way out."""
    link = root / host_dir.lstrip("/")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(str(outside))
    back = Path(str(root) + str(outside))
    back.parent.mkdir(parents=True, exist_ok=True)
    back.symlink_to(host_dir)


def test_runtime_register_through_a_loop_writes_nothing_outside(attack):
    root, canary = attack
    _loop_out(root, "/etc/docker", canary / "docker")
    before, inside = tree_state(canary), tree_state(root)
    p = gpudock("--root", str(root), "toolkit", "runtime", "register")
    assert p.returncode == 2, p.stdout + p.stderr
    assert tree_state(canary) == before  # no edit, no backup, no temp file out there
    assert tree_state(root) == inside
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and "symbolic links" in err[0] and "/etc/docker/daemon.json" in err[0], p.stderr
    assert str(root) in err[0]


def test_debug_on_through_a_loop_writes_nothing_outside(attack):
    root, canary = attack
    _loop_out(root, "/etc/nvidia-container-runtime", canary / "nvidia-container-runtime")
    before = tree_state(canary)
    p = gpudock("--root", str(root), "toolkit", "debug", "on", "--yes")
    assert p.returncode == 2, p.stdout + p.stderr
    assert tree_state(canary) == before
    assert "symbolic links" in p.stderr and "config.toml" in p.stderr


def test_status_reads_nothing_outside_and_says_why(attack):
    root, canary = attack
    _loop_out(root, "/etc/docker", canary / "docker")
    _loop_out(root, "/etc/nvidia-container-runtime", canary / "nvidia-container-runtime")
    p = gpudock("--root", str(root), "toolkit", "status", "--no-engine")
    assert p.returncode == 2
    assert "outside-marker" not in p.stdout + p.stderr
    # both files are reported, with the loop, and the rest of the status is still printed
    out = p.stdout
    assert out.count("symbolic links") == 2, out
    assert "config.toml" in out and "daemon.json" in out and "engine" in out
    p = gpudock("--root", str(root), "toolkit", "status", "--no-engine", "--json")
    doc = json.loads(p.stdout)
    assert "outside-marker" not in p.stdout
    assert "symbolic links" in doc["config"]["error"] and "symbolic links" in doc["daemon_json"]["error"]
    assert doc["config"]["exists"] is False


def test_defaults_through_a_41_link_chain_creates_nothing_anywhere(attack):
    root, canary = attack
    # /etc/nvidia-container-runtime -> <canary>/d1 -> <canary>/d2 ... -> <canary>/d41: 41 links,
    # one more than the kernel follows. On this machine <canary>/d1 is a path that does not exist.
    (root / "etc/nvidia-container-runtime").symlink_to(f"{canary}/d1")
    for i in range(1, 41):
        link = Path(f"{root}{canary}/d{i}")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(f"{canary}/d{i + 1}")
    before, inside = tree_state(canary), tree_state(root)
    p = gpudock("--root", str(root), "toolkit", "defaults")
    assert p.returncode == 2, p.stdout + p.stderr
    assert "more than 40" in p.stderr and "config.toml" in p.stderr
    assert tree_state(canary) == before
    assert tree_state(root) == inside


def test_self_link_to_etc_docker_leaves_the_machines_file_alone(attack, tmp_path):
    """R/etc/docker -> /etc/docker. Run in a private mount namespace where a canary is
    bind-mounted over /etc/docker: a write that escaped the root would land in the canary, and
    this machine's /etc is out of reach whatever the code under test does."""
    root, canary = attack
    if not os.path.isdir("/etc/docker"):
        pytest.fail("needs /etc/docker to bind the canary over (scripts/test installs docker.io)")
    assert shutil.which("unshare"), "util-linux unshare is needed"
    (root / "etc/docker").symlink_to("/etc/docker")
    before = tree_state(canary / "docker")
    prefix = private_mount(f'mount --bind "{canary}/docker" /etc/docker')
    p = gpudock("--root", str(root), "toolkit", "runtime", "register", prefix=prefix)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "symbolic links" in p.stderr
    assert tree_state(canary / "docker") == before
    p = gpudock("--root", str(root), "toolkit", "status", "--no-engine", prefix=prefix)
    assert "outside-marker" not in p.stdout + p.stderr


def test_absolute_links_inside_the_root_are_followed_inside_for_file_backup_and_temp(attack):
    """daemon.json is an absolute link (config management): the write goes to the file the link
    names *inside* the root, and so do the backup, the temp file and the lock."""
    root, canary = attack
    (root / "etc/docker").mkdir()
    target = canary / "docker/daemon.json"
    (root / "etc/docker/daemon.json").symlink_to(str(target))  # on this machine: the canary
    twin = Path(f"{root}{target}")
    twin.parent.mkdir(parents=True)
    twin.write_text('{"debug": true}\n')
    before = tree_state(canary)
    p = gpudock("--root", str(root), "toolkit", "runtime", "register")
    assert p.returncode == 0, p.stderr
    assert tree_state(canary) == before
    assert json.loads(twin.read_text())["runtimes"] == {"nvidia": {"path": "nvidia-container-runtime"}}
    assert (root / "etc/docker/daemon.json").is_symlink()
    assert Path(f"{twin}.gpudock-bak").read_text() == '{"debug": true}\n'


def test_dangling_absolute_link_is_created_inside_the_root(attack):
    root, canary = attack
    (root / "etc/nvidia-container-runtime").mkdir()
    target = canary / "nvidia-container-runtime/new.toml"
    (root / "etc/nvidia-container-runtime/config.toml").symlink_to(str(target))
    Path(f"{root}{target}").parent.mkdir(parents=True)
    before = tree_state(canary)
    p = gpudock("--root", str(root), "toolkit", "defaults")
    assert p.returncode == 0, p.stderr
    assert tree_state(canary) == before
    assert Path(f"{root}{target}").read_text().startswith("#accept-nvidia-visible-devices")


def test_defaults_create_directories_inside_the_root_only(attack):
    root, canary = attack
    (root / "etc/nvidia-container-runtime").symlink_to(f"{canary}/made/here")  # missing, absolute
    before = tree_state(canary)
    p = gpudock("--root", str(root), "toolkit", "defaults")
    assert p.returncode == 0, p.stderr
    assert tree_state(canary) == before
    assert Path(f"{root}{canary}/made/here/config.toml").is_file()


# --------------------------------------------------------------------------- the API underneath


def test_api_refuses_a_loop_and_never_falls_back(attack):
    root, canary = attack
    _loop_out(root, "/etc/docker", canary / "docker")
    _loop_out(root, "/etc/nvidia-container-runtime", canary / "nvidia-container-runtime")
    hr = HostRoot(root)
    f = HostFile(hr, "/etc/docker/daemon.json")
    with pytest.raises(AtomicWriteError, match="symbolic links"):
        read_snapshot(f)
    with pytest.raises(AtomicWriteError, match="symbolic links"):
        atomic_write(f, b"{}", read_snapshot(HostFile(hr, "/etc/other.json")), make_parents=True)
    with pytest.raises(AtomicWriteError, match="symbolic links"):
        dj.load_daemon_json(dj.daemon_json_file(None, root=hr))
    loc = tc.locate_config(root=hr, environ={})
    assert not loc.exists and "symbolic links" in loc.error
    with pytest.raises(AtomicWriteError, match="symbolic links"):
        tc.load_config(loc)


def test_host_file_never_names_a_path_this_machine_would_follow_out(attack):
    root, canary = attack
    _loop_out(root, "/etc/docker", canary / "docker")
    with pytest.raises(OSError, match="symbolic links"):
        tc.host_file(str(root), "/etc/docker/daemon.json")


def test_status_reports_a_loop_at_the_file_itself(tmp_path):
    root = tmp_path / "R"
    (root / "etc/docker").mkdir(parents=True)
    (root / "etc/docker/daemon.json").symlink_to("daemon.json")
    p = gpudock("--root", str(root), "toolkit", "status", "--no-engine")
    assert p.returncode == 2
    assert "daemon.json" in p.stdout and "symbolic links" in p.stdout
    assert "engine" in p.stdout  # the rest is still printed


def test_no_realpath_on_host_paths():
    """os.path.realpath follows absolute links from this machine's /: never on a host path."""
    import gpudock.toolkit as pkg

    src = Path(pkg.__file__).parent
    offenders = [p.name for p in src.glob("*.py") if "realpath(" in p.read_text()]
    cmd = Path(pkg.__file__).parent.parent / "commands" / "toolkit.py"
    if "realpath(" in cmd.read_text():
        offenders.append(cmd.name)
    assert offenders == []
