"""The doctor reads config.toml where the toolkit screen and CLI find it (one lookup,
``locate_config``, resolved inside --root), and its "unprivileged-envvar" finding."""

from __future__ import annotations

from pathlib import Path

from gpudock.doctor import gather, run_checks
from gpudock.host.root import HostRoot
from gpudock.toolkit import config as tc
from helpers import kernelroot as K

CFG = "/etc/nvidia-container-runtime/config.toml"


def _root(tmp_path: Path) -> Path:
    root = tmp_path / "host"
    K.kernel(root, "535.129.03")
    return root


def test_doctor_and_toolkit_agree_on_the_override(tmp_path):
    root = _root(tmp_path)
    K.write(root, CFG, '[nvidia-container-runtime]\nmode = "legacy"\n')
    K.write(root, "/opt/ctk.toml", '[nvidia-container-runtime]\nmode = "cdi"\n')
    env = {"NVIDIA_CTK_CONFIG_FILE_PATH": "/opt/ctk.toml"}
    facts = gather(HostRoot(root), use_docker=False, environ=env)
    loc = tc.locate_config(root=str(root), environ=env)
    assert facts.toolkit_config.path == loc.host_path == "/opt/ctk.toml"
    assert facts.toolkit_config_source == "NVIDIA_CTK_CONFIG_FILE_PATH"
    f = {x.id: x for x in run_checks(facts)}["cdi-spec-stale"]
    assert [e.value for e in f.evidence if e.source == "/opt/ctk.toml"] == ["cdi"]
    facts = gather(HostRoot(root), use_docker=False, environ={})
    assert facts.toolkit_config.path == CFG and facts.toolkit_config.parsed["nvidia-container-runtime"]["mode"] == "legacy"


def test_doctor_config_symlink_resolves_inside_the_root(tmp_path):
    root = _root(tmp_path)
    outside = tmp_path / "outside.toml"
    outside.write_text('[nvidia-container-runtime]\nmode = "cdi"\n')
    link = root / CFG.lstrip("/")
    link.parent.mkdir(parents=True)
    link.symlink_to(str(outside))
    facts = gather(HostRoot(root), use_docker=False, environ={})
    assert facts.toolkit_config.text is None  # the host's own file at that path: not there
    K.write(root, str(outside), '[nvidia-container-runtime]\nmode = "legacy"\n')
    facts = gather(HostRoot(root), use_docker=False, environ={})
    assert facts.toolkit_config.parsed == {"nvidia-container-runtime": {"mode": "legacy"}}
