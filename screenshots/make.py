"""Make screenshots/*.svg: what an operator sees, rendered by gpudock itself (headless Textual).

    python screenshots/make.py

Every picture is the real app on the built-in demo host (frozen values, its simulated Docker
engine); the doctor's picture examines a broken host root built the way the tests build theirs
(real gcc-built libraries of driver 535.129.03, a real ld.so.cache, module 535.104.05 still
loaded), and the toolkit's a copy of the toolkit 1.17 config.toml. Needs gcc and ldconfig.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from textual.widgets import Input  # noqa: E402

from gpudock.doctor import diagnose  # noqa: E402
from gpudock.host.root import HostRoot  # noqa: E402
from gpudock.ui.screens.doctor import DoctorScreen  # noqa: E402
from gpudock.ui.screens.toolkit import ToolkitScreen  # noqa: E402
from helpers import kernelroot as K  # noqa: E402
from helpers.dashboard import first_snapshot, make_app  # noqa: E402
from helpers.libroot import make_driver_root  # noqa: E402
from helpers.sim import scenario  # noqa: E402

WORK = Path("/tmp/gpudock-screenshots")
ENGINE_INFO = {
    "ServerVersion": "24.0.7",
    "DefaultRuntime": "runc",
    "Runtimes": {"runc": {"path": "runc"}, "nvidia": {"path": "nvidia-container-runtime"}},
}


async def shoot(name: str, app, size, steps=None) -> None:
    async with app.run_test(size=size) as pilot:
        await first_snapshot(pilot)
        if steps:
            await steps(pilot)
        await pilot.pause(0.3)
        app.clear_notifications()
        await pilot.pause()
        app.save_screenshot(f"{name}.svg", str(HERE))
    print(f"screenshots/{name}.svg")


async def press(pilot, *keys):
    await pilot.press(*keys)
    await pilot.pause(0.3)


def broken_root() -> Path:
    root = WORK / "host"
    shutil.rmtree(root, ignore_errors=True)
    lib = "/usr/lib/x86_64-linux-gnu"
    make_driver_root(root, {"535.129.03": [lib]})
    K.kernel(root, "535.104.05")
    K.gpu(root, "0000:3b:00.0", 0)
    K.nodes(root, uvm_major=None)
    K.module_ko(root, "535.129.03")
    return root


async def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    await shoot("gpus-80x24", make_app(refresh=3600), (80, 24), lambda p: press(p, "down", "down"))
    await shoot("gpus-120x40", make_app(refresh=3600), (120, 40), lambda p: press(p, *["down"] * 6))
    await shoot("containers-80x24", make_app(refresh=3600), (80, 24), lambda p: press(p, "c", "down"))

    async def launch(pilot):
        await press(pilot, "down", "down", "space", "up", "up", "space", "l")
        pilot.app.screen.query_one("#f-image", Input).value = "nvcr.io/nvidia/pytorch:24.01-py3"
        pilot.app.screen.query_one("#f-command", Input).value = "python train.py --epochs 3"
        await pilot.pause(0.5)

    await shoot("launch-100x40", make_app(refresh=3600), (100, 40), launch)

    root = broken_root()
    runner = functools.partial(diagnose, HostRoot(root), None, None, use_docker=False)

    async def doctor(pilot):
        screen = DoctorScreen(runner, root=str(root), root_label="customer host copy", watch_s=3600)
        pilot.app.push_screen(screen)
        for _ in range(500):
            await pilot.pause(0.02)
            if screen.checks_done and not screen._checking:
                break

    await shoot("doctor-80x24", make_app(refresh=3600), (80, 24), doctor)

    cfg = WORK / "config.toml"
    shutil.copy(ROOT / "tests/data/config-toml/toolkit-1.17-debian.toml", cfg)
    dmn = WORK / "daemon.json"
    dmn.write_text('{\n  "runtimes": {\n    "nvidia": {"path": "nvidia-container-runtime", "args": []}\n  }\n}\n')

    async def toolkit(pilot):
        pilot.app.push_screen(ToolkitScreen(str(cfg), str(dmn), docker_info_factory=lambda: ENGINE_INFO))
        await pilot.pause(1.0)

    await shoot("toolkit-80x24", make_app(refresh=3600), (80, 24), toolkit)
    await shoot("nvml-mismatch-80x24", make_app(scenario(init_error="lib_rm_version_mismatch"), refresh=3600), (80, 24))


if __name__ == "__main__":
    asyncio.run(main())
