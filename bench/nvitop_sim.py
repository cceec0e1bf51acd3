"""nvitop, unchanged, on gpudock's simulated NVML library: the benchmark's reference monitor.

    python bench/nvitop_sim.py SCENARIO.toml LOG [nvitop arguments...]

pynvml loads ``libnvidia-ml.so.1`` on its first ``nvmlInit`` unless ``pynvml.nvmlLib`` is already
set: this sets it to the library ``gpudock.sim.libnvml.sim_library_loader`` makes of the scenario,
then runs nvitop's own command line. What nvitop logs on stderr (each NVML function the simulation
does not export, once) goes to LOG, not to the terminal being measured: on a real driver those
functions exist. Needs the ``bench`` extra (``pip install -e '.[bench]'``).

:func:`write_no_mig_scenario` writes the built-in demo host with its MIG card as a whole card, and
both programs are measured on that scenario, so that they show the same eight rows: with MIG on,
nvitop's monitor adds a row per MIG device (more bytes on its side, a kinder reference for
gpudock). It was first made because the simulated library had no ``nvmlDeviceGetBAR1MemoryInfo``
and nvitop 1.7 fails on a MIG device whose BAR1 NVML does not report
(``KeyError: 'bar1_memory_percent_string'``); the library answers BAR1 now, and the scenario stays,
so that runs compare across time.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tomllib
from importlib import resources
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def no_mig_scenario() -> dict:
    """The demo scenario as data, every MIG card a whole card (its MIG UUIDs given as the GPU's)."""
    data = tomllib.loads((resources.files("gpudock") / "sim" / "scenarios" / "demo.toml").read_text())
    mig_to_gpu = {}
    for g in data["gpu"]:
        if g.get("mig_mode"):
            g["mig_mode"] = False
            for m in g.pop("mig", []):
                mig_to_gpu[m["uuid"]] = g["uuid"]
            for p in g.get("process", []):
                p.pop("mig_index", None)

    def unmig(v):
        if isinstance(v, str):
            for mig, gpu in mig_to_gpu.items():
                v = v.replace(mig, gpu)
            return v
        if isinstance(v, list):
            return [unmig(x) for x in v]
        if isinstance(v, dict):
            return {k: unmig(x) for k, x in v.items()}
        return v

    data["container"] = unmig(data.get("container", []))
    data["name"] = "demo-no-mig"
    data["description"] = data.get("description", "") + " (MIG off: the same eight rows in gpudock and nvitop)"
    return data


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_toml(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"no TOML form for {v!r}")


def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def write_no_mig_scenario(path: str | Path) -> Path:
    """Write :func:`no_mig_scenario` as a scenario file (every table inline), checked by gpudock's
    own loader."""
    from gpudock.sim.scenario import load_scenario

    path = Path(path)
    data = no_mig_scenario()
    path.write_text("".join(f"{_key(k)} = {_toml(v)}\n" for k, v in data.items()))
    sc = load_scenario(path)
    if any(g.mig_current or g.mig for g in sc.gpus):
        raise RuntimeError(f"{path}: a GPU still has MIG on")
    return path


def main(argv: list[str]) -> int:
    scenario_file, log = argv[0], argv[1]
    import pynvml

    from gpudock.sim.libnvml import sim_library_loader
    from gpudock.sim.scenario import load_scenario

    pynvml.nvmlLib = sim_library_loader(load_scenario(scenario_file))()
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    from nvitop.cli import main as nvitop_main

    sys.argv = ["nvitop", *argv[2:]]
    return nvitop_main()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
