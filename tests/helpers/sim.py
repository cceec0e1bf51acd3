"""Simulated hosts for tests: scenarios built in code, and NVML sessions over them."""

from __future__ import annotations

import dataclasses

from gpudock.host.nvml import NvmlSession
from gpudock.sim.libnvml import sim_library_loader
from gpudock.sim.scenario import Scenario, builtin_scenario, parse_scenario


def gpu(i: int, **over) -> dict:
    """A plausible GPU table for a scenario; minors deliberately differ from indices."""
    base = {
        "uuid": f"GPU-00000000-0000-4000-8000-00000000000{i}",
        "name": "NVIDIA A100-SXM4-80GB",
        "pci_bus_id": f"0000:{0x10 + i * 0x10:02x}:00.0",
        "minor": (i + 1) % 4 if i < 4 else i,
        "memory_total_mib": 81920,
        "utilization_gpu": 10 * i,
        "temperature_c": 40 + i,
        "power_w": 100 + i,
        "power_limit_w": 400,
    }
    base.update(over)
    return base


def scenario(gpus: list[dict] | None = None, frozen: bool = True, **driver) -> Scenario:
    d = {"version": "535.129.03", "cuda": "12.2"}
    d.update(driver)
    return parse_scenario(
        {"name": "test", "frozen": frozen, "driver": d, "gpu": gpus if gpus is not None else [gpu(i) for i in range(4)]}
    )


def session(sc: Scenario, **options) -> NvmlSession:
    return NvmlSession(sim_library_loader(sc), source=f"sim:{sc.name}", **options)


def frozen_demo() -> Scenario:
    return dataclasses.replace(builtin_scenario("demo"), frozen=True)


def demo_on_root(directory, root) -> str:
    """A scenario file of the demo's GPUs on a host whose files are already in ``root`` (a test's
    driver root): ``[host] root`` names it, so nothing is laid out there. Returns the file's path,
    for ``--sim``."""
    import pathlib
    import re
    from importlib import resources

    text = (resources.files("gpudock.sim") / "scenarios" / "demo.toml").read_text()
    text = re.sub(r"\n\[host\]\n.*?(?=\n\[\[gpu\]\])", "\n", text, count=1, flags=re.S)
    text = text.replace('name = "demo"', 'name = "demo-on-root"', 1)
    i = text.index("\n[[gpu]]")
    text = text[:i] + f'\n[host]\nhostname = "gpu-demo-01"\nroot = "{root}"\n' + text[i:]
    path = pathlib.Path(directory) / "demo-on-root.toml"
    path.write_text(text)
    return str(path)
