"""`gpudock toolkit ...`: exit codes, one-line errors, the --json shape, edits through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpudock.cli import main

DATA = Path(__file__).resolve().parent.parent / "data" / "config-toml"


def run(argv: list[str]) -> int:
    return main(argv)


@pytest.fixture
def files(tmp_path, monkeypatch):
    # no engine reachable: the status must say so, not hang or crash
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    cfg = tmp_path / "config.toml"
    cfg.write_bytes((DATA / "toolkit-1.17-debian.toml").read_bytes())
    dj = tmp_path / "daemon.json"
    dj.write_text('{\n  "log-opts": {"max-size": "10m"}\n}\n')
    return cfg, dj


def test_status_json_shape(files, capsys):
    cfg, dj = files
    assert run(["toolkit", "status", "--json", "--config", str(cfg), "--daemon-json", str(dj)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"config", "daemon_json", "engine"}
    c = doc["config"]
    assert (c["path"], c["source"], c["exists"], c["error"]) == (str(cfg), "--config", True, None)
    assert c["settings"]["mode"]["value"] == "auto"
    assert c["debug"]["hook"]["enabled"] is False and c["debug"]["hook"]["state"] == "commented"
    assert c["debug"]["runtime"]["commented_path"] == "/var/log/nvidia-container-runtime.log"
    d = doc["daemon_json"]
    assert d["nvidia_registered"] is False and d["error"] is None and d["default_runtime"] is None
    assert doc["engine"]["reachable"] is False and "Docker engine" in doc["engine"]["error"]


def test_status_text_and_no_engine(files, capsys):
    cfg, dj = files
    assert run(["toolkit", "status", "--no-engine", "--config", str(cfg), "--daemon-json", str(dj)]) == 0
    out = capsys.readouterr().out
    assert "hook debug" in out and "commented default" in out and "not registered" in out


def test_status_missing_config_under_root(tmp_path, capsys):
    assert run(["--root", str(tmp_path), "toolkit", "status", "--json", "--no-engine"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["config"]["path"] == str(tmp_path / "etc/nvidia-container-runtime/config.toml")
    assert doc["config"]["exists"] is False and "gpudock toolkit defaults" in doc["config"]["error"]
    assert doc["daemon_json"]["path"] == str(tmp_path / "etc/docker/daemon.json")
    assert doc["daemon_json"]["exists"] is False


def test_status_malformed_files_exit_2_with_one_line(files, capsys):
    cfg, dj = files
    dj.write_text('{"a": }')
    assert run(["toolkit", "status", "--no-engine", "--config", str(cfg), "--daemon-json", str(dj)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "line 1, column 7" in err[0]


def test_debug_on_off_via_cli(files, capsys):
    cfg, _ = files
    original = cfg.read_bytes()
    assert run(["toolkit", "debug", "on", "--config", str(cfg)]) == 2  # no terminal, no --yes
    assert "pass --yes" in capsys.readouterr().err
    assert cfg.read_bytes() == original
    assert run(["toolkit", "debug", "on", "--config", str(cfg), "--yes"]) == 0
    out = capsys.readouterr().out
    assert "line 8" in out and str(cfg) in out
    assert b'\ndebug = "/var/log/nvidia-container-toolkit.log"\n' in cfg.read_bytes()
    assert run(["toolkit", "debug", "on", "--runtime", "--path", "/tmp/rt.log", "--config", str(cfg), "-y"]) == 0
    assert b'\ndebug = "/tmp/rt.log"\n' in cfg.read_bytes()
    assert run(["toolkit", "debug", "off", "--hook", "--config", str(cfg), "--yes"]) == 0
    assert run(["toolkit", "debug", "off", "--runtime", "--config", str(cfg), "--yes"]) == 0
    # off puts the shipped line back, whatever path was on: the original, byte for byte
    assert cfg.read_bytes() == original


def test_debug_errors_are_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "config.toml"
    bad.write_text("[nvidia-container-cli]\ndebug = \n")
    assert run(["toolkit", "debug", "on", "--config", str(bad), "--yes"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "line 2, column 9" in err[0] and "untouched" in err[0]
    assert run(["toolkit", "debug", "on", "--config", str(tmp_path / "none.toml"), "--yes"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_runtime_register_and_defaults(files, tmp_path, capsys):
    _, dj = files
    assert run(["toolkit", "runtime", "register", "--default", "--daemon-json", str(dj)]) == 0
    out = capsys.readouterr().out
    assert "systemctl restart docker" in out
    doc = json.loads(dj.read_text())
    assert doc == {
        "log-opts": {"max-size": "10m"},
        "runtimes": {"nvidia": {"path": "nvidia-container-runtime"}},
        "default-runtime": "nvidia",
    }
    assert run(["toolkit", "runtime", "register", "--json", "--daemon-json", str(dj)]) == 0
    j = json.loads(capsys.readouterr().out)
    assert j["changed"] is False and j["restart_needed"] is False
    new = tmp_path / "etc" / "nvidia-container-runtime" / "config.toml"
    assert run(["toolkit", "defaults", "--config", str(new)]) == 0
    assert new.read_bytes() == (DATA / "toolkit-1.17-debian.toml").read_bytes()
    assert run(["toolkit", "defaults", "--config", str(new)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_main_parser_wires_the_command(files, capsys):
    from gpudock.cli import main

    cfg, dj = files
    assert main(["toolkit", "status", "--json", "--no-engine", "--config", str(cfg), "--daemon-json", str(dj)]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["exists"] is True


def test_root_after_the_action(tmp_path, capsys):
    from gpudock.cli import main

    assert main(["toolkit", "status", "--json", "--no-engine", "--root", str(tmp_path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["config"]["path"] == str(tmp_path / "etc/nvidia-container-runtime/config.toml")
    assert main(["--root", str(tmp_path), "toolkit", "status", "--json", "--no-engine"]) == 0
    assert json.loads(capsys.readouterr().out)["daemon_json"]["path"] == str(tmp_path / "etc/docker/daemon.json")


def test_debug_path_must_be_a_usable_name(files, capsys):
    cfg, _ = files
    original = cfg.read_bytes()
    assert run(["toolkit", "debug", "on", "--path", "", "--config", str(cfg), "--yes"]) == 2
    assert "--path must name the log file" in capsys.readouterr().err
    assert run(["toolkit", "debug", "on", "--path", "/var/log/\udcff.log", "--config", str(cfg), "--yes"]) == 2
    assert "not valid UTF-8" in capsys.readouterr().err
    assert cfg.read_bytes() == original


def test_register_keeps_a_registered_absolute_path(files, capsys):
    _, dj = files
    text = '{"runtimes": {"nvidia": {"path": "/usr/local/nvidia/toolkit/nvidia-container-runtime"}}}\n'
    dj.write_text(text)
    assert run(["toolkit", "runtime", "register", "--daemon-json", str(dj)]) == 0
    out = capsys.readouterr().out
    assert "kept" in out and "/usr/local/nvidia/toolkit/nvidia-container-runtime" in out and "nothing to change" in out
    assert dj.read_text() == text


@pytest.mark.parametrize(
    "argv,words",
    [
        (["--name", ""], "name must not be empty"),
        (["--path", ""], "path must not be empty"),
        ([b"--name", b"rt\xff"], "not valid UTF-8"),
    ],
    ids=["empty-name", "empty-path", "non-utf8-name"],
)
def test_register_refuses_names_it_cannot_write(files, argv, words):
    import subprocess
    import sys

    _, dj = files
    before = dj.read_bytes()
    p = subprocess.run(
        [sys.executable, "-m", "gpudock", "toolkit", "runtime", "register", "--daemon-json", str(dj), *argv],
        capture_output=True,
        timeout=60,
    )
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode == 2 and words in err and "Traceback" not in err
    assert dj.read_bytes() == before
