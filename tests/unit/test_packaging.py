"""What the wheel ships: every package of the tree, the styles from the top-level styles/, the
built-in scenarios (pyproject.toml lists the packages: styles/ lives outside gpudock/)."""

from __future__ import annotations

import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_every_package_of_the_tree_is_listed():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    tree = {
        ".".join(p.parent.relative_to(REPO).parts)
        for p in (REPO / "gpudock").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert tree | {"gpudock.styles"} == listed


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
    )
    (whl,) = out.glob("gpudock-*.whl")
    return zipfile.ZipFile(whl).namelist()


def test_the_wheel_ships_the_styles_and_the_scenarios(wheel):
    styles = {Path(n).name for n in wheel if n.startswith("gpudock/styles/")}
    assert styles == {p.name for p in (REPO / "styles").glob("*.tcss")} and "gpudock.tcss" in styles
    scenarios = {Path(n).name for n in wheel if n.startswith("gpudock/sim/scenarios/")}
    assert {"demo.toml", "driver-mismatch.toml", "daemon-reload.toml", "stray-libs.toml"} <= scenarios
