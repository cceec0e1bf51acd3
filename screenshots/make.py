"""Make screenshots/*.svg: what an operator sees, rendered by gpudock itself (headless Textual).

    .venv/bin/python screenshots/make.py

Every picture is the real app, through the same host session ``gpudock --sim NAME`` opens, on a
built-in simulated host with its values frozen: the demo (eight H100s, its simulated Docker engine
and containers, the toolkit's config.toml), driver-mismatch (libraries upgraded, the old kernel
module still loaded: NVML refuses to start, the doctor says why) and daemon-reload (the /dev/char
links gone: containers with --device lose their GPUs at the next daemon-reload). Nothing outside
the simulated host's own temporary directory is read.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from textual.widgets import Input  # noqa: E402

from gpudock.session import open_scenario  # noqa: E402
from gpudock.sim.scenario import builtin_scenario  # noqa: E402
from gpudock.ui.app import GpudockApp  # noqa: E402


def app_on(name: str, lost: int | None = None) -> GpudockApp:
    """The dashboard on a built-in scenario, values frozen (``lost``: that GPU fell off the bus)."""
    sc = dataclasses.replace(builtin_scenario(name), frozen=True)
    if lost is not None:
        gpus = list(sc.gpus)
        gpus[lost] = dataclasses.replace(gpus[lost], lost=True)
        sc = dataclasses.replace(sc, gpus=tuple(gpus))
    return GpudockApp(open_scenario(sc), refresh=3600)


async def settled(pilot) -> None:
    """The first snapshot painted and the simulated engine read (workers awaited, not slept on)."""
    app = pilot.app
    for _ in range(300):
        await pilot.pause(0.02)
        hmap = getattr(app, "holders", None)
        docker_done = hmap is not None and hmap.docker is not None and hmap.docker.state != "connecting"
        if app.snapshot is not None and docker_done:
            return
    raise SystemExit("the dashboard never showed its first snapshot")


async def doctor_checked(pilot) -> None:
    screen = pilot.app.screen
    for _ in range(500):
        await pilot.pause(0.02)
        if getattr(screen, "checks_done", 0) and not screen._checking:
            return
    raise SystemExit("the doctor did not finish")


async def shoot(name: str, app: GpudockApp, size: tuple[int, int], *steps) -> None:
    async with app.run_test(size=size) as pilot:
        await settled(pilot)
        for step in steps:
            if isinstance(step, str):
                await pilot.press(step)
                await pilot.pause(0.1)
            else:
                await step(pilot)
        await pilot.pause(0.3)
        app.clear_notifications()
        await pilot.pause()
        app.save_screenshot(f"{name}.svg", str(HERE))
    print(f"screenshots/{name}.svg")


async def fill_launch_form(pilot) -> None:
    form = pilot.app.screen
    for _ in range(100):  # the local images and holders, asked of the engine when the form opens
        await pilot.pause(0.02)
        if not any(w.group == "launch-facts" for w in pilot.app.workers):
            break
    form.query_one("#f-image", Input).value = "nvcr.io/nvidia/pytorch:24.01-py3"
    form.query_one("#f-command", Input).value = "python train.py --epochs 3"
    await pilot.pause(0.3)


async def main() -> None:
    await shoot("gpus-80x24", app_on("demo"), (80, 24), "down", "down")
    await shoot("gpus-120x40", app_on("demo"), (120, 40), *["down"] * 6)
    await shoot("gpus-lost-80x24", app_on("demo", lost=1), (80, 24), "down")
    await shoot("containers-80x24", app_on("demo"), (80, 24), "c", "down")
    # cards 2 then 0, in that order; GPU 2 is held by two containers: the form warns
    await shoot(
        "launch-80x24", app_on("demo"), (80, 24), "down", "down", "space", "up", "up", "space", "l", fill_launch_form
    )
    await shoot("topology-80x24", app_on("demo"), (80, 24), "o")
    await shoot("toolkit-80x24", app_on("demo"), (80, 24), "t")
    await shoot("help-80x24", app_on("demo"), (80, 24), "question_mark")
    await shoot("nvml-mismatch-80x24", app_on("driver-mismatch"), (80, 24))
    await shoot("doctor-80x24", app_on("driver-mismatch"), (80, 24), "d", doctor_checked)
    await shoot("doctor-reading-80x24", app_on("driver-mismatch"), (80, 24), "d", doctor_checked, "enter")
    await shoot("doctor-daemon-reload-80x24", app_on("daemon-reload"), (80, 24), "d", doctor_checked)


if __name__ == "__main__":
    asyncio.run(main())
