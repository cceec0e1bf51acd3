"""Which container holds each GPU, in the dashboard: the holder column, the GPU details, the
container panel (``c``), the Docker banner.

Against the REAL private Docker engine of the test set-up (``engine`` fixture: device nodes made
with mknod, the runtime registered as ``nvidia``, the stand-in hook so ``--gpus`` containers start)
with a simulated NVML host whose GPU processes are the real containers' PIDs, mapped through the
real /proc. Snapshot tests use the demo's simulated engine (gpudock.sim.host.SimHost): real
containers have ids and PIDs that change from run to run.
"""

from __future__ import annotations

import asyncio
import os
import time

import docker
from rich.text import Text
from textual.widgets import Static

from gpudock.ui.screens.containers import HOST_KEY, ContainerScreen
from gpudock.ui.screens.gpus import GpuScreen
from gpudock.ui.widgets.docker_banner import DockerBanner
from gpudock.ui.widgets.live_table import LiveTable
from helpers.dashboard import NO_DOCKER, first_snapshot, make_app, settle_workers
from helpers.sim import gpu, scenario

# helpers.sim.gpu(i): index i has minor (i + 1) % 4 for i < 4, else i. So /dev/nvidia1 is GPU 0.
MINOR_OF = {i: (i + 1) % 4 if i < 4 else i for i in range(8)}
INDEX_OF_MINOR = {m: i for i, m in MINOR_OF.items()}


def gpus_req(**kw):
    return [docker.types.DeviceRequest(capabilities=[["gpu"]], **kw)]


def run(engine, name, **kw):
    c = engine.client.containers.run(engine.image, ["sleep", "300"], name=name, detach=True, **kw)
    c.reload()
    return c


def dev(engine, minor: int) -> str:
    return f"{engine.dev_dir}/nvidia{minor}:/dev/nvidia{minor}:rwm"


def host_with(processes: dict[int, list[tuple[int, str]]] | None = None):
    """8 simulated GPUs; ``processes``: GPU index -> [(host PID, command)]."""
    processes = processes or {}
    return scenario(
        [
            gpu(
                i,
                process=[
                    {"pid": pid, "used_memory_mib": 100 + pid % 1000, "command": cmd}
                    for pid, cmd in processes.get(i, [])
                ],
            )
            for i in range(8)
        ]
    )


async def wait_until(pilot, cond, timeout: float = 30.0, what: str = "condition") -> None:
    """Let the dashboard refresh until ``cond()`` holds (no fixed sleeps: short pauses, polled)."""
    end = time.monotonic() + timeout
    while True:
        await settle_workers(pilot.app)
        await pilot.pause(0.05)
        if cond():
            return
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def gpu_screen(app) -> GpuScreen:
    return next(s for s in app.screen_stack if isinstance(s, GpuScreen))


def holder_cells(app) -> list[str]:
    table = gpu_screen(app).query_one("#gpu-table", LiveTable)
    return [str(table.get_row_at(i)[-1]) for i in range(table.row_count)]


def holder_cell(app, index: int):
    table = gpu_screen(app).query_one("#gpu-table", LiveTable)
    return table.get_row_at(index)[-1]


def details(app) -> str:
    return str(gpu_screen(app).query_one("#gpu-details", Static).render())


def banner(screen) -> DockerBanner:
    return screen.query_one(DockerBanner)


def panel_rows(app) -> dict[str, dict[str, str]]:
    table = app.screen.query_one("#containers-table", LiveTable)
    cols = [c.key for c in table.columns]
    return {key: dict(zip(cols, (str(v) for v in table.get_row(key)))) for key in table.row_keys}


def panel_details(app) -> str:
    return str(app.screen.query_one("#container-details", Static).render())


async def select_row(pilot, key: str) -> None:
    pilot.app.screen.query_one("#containers-table", LiveTable).move_cursor_to_key(key)
    await pilot.pause()


# --------------------------------------------------------------------------- real engine


async def test_holder_column_and_panel_name_containers_of_every_mechanism(engine):
    by_dev = run(engine, "ui-dev", devices=[dev(engine, 1), f"{engine.dev_dir}/nvidiactl:/dev/nvidiactl:rwm"])
    by_env = run(engine, "ui-env", runtime="nvidia", environment={"NVIDIA_VISIBLE_DEVICES": "2"})
    by_gpus = run(engine, "ui-gpus", device_requests=gpus_req(device_ids=["3"]))
    run(engine, "ui-ctl-only", devices=[f"{engine.dev_dir}/nvidiactl:/dev/nvidiactl:rwm"])
    pid = by_dev.attrs["State"]["Pid"]
    app = make_app(host_with({INDEX_OF_MINOR[1]: [(pid, "sleep 300")]}), refresh=0.2, docker_base_url=engine.base_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        await wait_until(pilot, lambda: "ui-gpus" in holder_cells(app), what="the holder column")
        cells = holder_cells(app)
        assert cells[INDEX_OF_MINOR[1]] == "ui-dev"  # /dev/nvidia1 is GPU 0: by minor, not index
        assert cells[2] == "ui-env"
        assert cells[3] == "ui-gpus"
        assert [c for i, c in enumerate(cells) if i not in (INDEX_OF_MINOR[1], 2, 3)] == ["free"] * 5
        assert not banner(app.screen).display

        # the details of GPU 0: its holder, how, and its process with the PID inside the container
        text = details(app)
        assert "Held by" in text and "ui-dev" in text and "--device" in text and "/dev/nvidia1" in text
        assert str(pid) in text and "[ui-dev pid 1]" in text
        await pilot.press("down", "down")
        text = details(app)
        assert "ui-env" in text and "--runtime" in text
        await pilot.press("down")
        assert "ui-gpus" in details(app) and "--gpus" in details(app)

        # the container panel: keyed by container id, GPUs and how
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, ContainerScreen)
        rows = panel_rows(app)
        assert rows[by_dev.id]["name"] == "ui-dev" and rows[by_dev.id]["gpus"] == str(INDEX_OF_MINOR[1])
        assert rows[by_dev.id]["how"] == "--device" and rows[by_dev.id]["procs"] == "1"
        assert (rows[by_env.id]["gpus"], rows[by_env.id]["how"]) == ("2", "--runtime")
        assert (rows[by_gpus.id]["gpus"], rows[by_gpus.id]["how"]) == ("3", "--gpus")
        ctl = next(r for r in rows.values() if r["name"] == "ui-ctl-only")
        assert ctl["gpus"] == "-"  # the control devices alone hold no card
        assert all(r["status"] == "running" for r in rows.values())

        await select_row(pilot, by_dev.id)
        text = panel_details(app)
        assert "--device " in text and "nvidia1" in text and f"GPU {INDEX_OF_MINOR[1]} (minor 1)" in text
        assert str(pid) in text and "sleep 300" in text
        assert "Conflict" not in text

        # the table is updated in place: a new container is a new row, the cursor stays put
        table = app.screen.query_one("#containers-table", LiveTable)
        table.set_columns = lambda *a, **k: (_ for _ in ()).throw(AssertionError("rebuilt"))  # zz-* sorts last
        late = await asyncio.to_thread(run, engine, "zz-late", device_requests=gpus_req(device_ids=["5"]))
        await wait_until(pilot, lambda: late.id in panel_rows(app), what="the new container's row")
        assert panel_rows(app)[late.id]["gpus"] == "5"
        assert app.screen.current_key() == by_dev.id

        # removed: the row goes, and so does its holder label
        await asyncio.to_thread(late.remove, force=True)
        await wait_until(pilot, lambda: late.id not in panel_rows(app), what="the removed container's row")

        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, GpuScreen)
        assert holder_cells(app)[5] == "free"


async def test_conflicts_stand_out(engine):
    a = run(engine, "cf-a", devices=[dev(engine, 1)])
    b = run(engine, "cf-b", runtime="nvidia", environment={"NVIDIA_VISIBLE_DEVICES": str(INDEX_OF_MINOR[1])})
    bad = run(engine, "cf-bad", runtime="nvidia", environment={"NVIDIA_VISIBLE_DEVICES": "9"})
    stray = a.attrs["State"]["Pid"]  # cf-a's process, on a card cf-a was not given
    created = engine.client.containers.create(
        engine.image, ["true"], name="cf-created", device_requests=gpus_req(count=1)
    )
    app = make_app(
        host_with({5: [(stray, "sleep 300")], 6: [(os.getpid(), "pytest")]}),
        refresh=0.2,
        docker_base_url=engine.base_url,
    )
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        g0 = INDEX_OF_MINOR[1]
        await wait_until(pilot, lambda: "cf-a" in str(holder_cell(app, g0)), what="the shared GPU's label")

        shared = holder_cell(app, g0)  # two containers on one card
        assert isinstance(shared, Text) and shared.plain == "! cf-a +1" and "red" in str(shared.style)
        unclaimed = holder_cell(app, 5)  # a process on a card its container was not given
        assert isinstance(unclaimed, Text) and unclaimed.plain.startswith("! ")
        outsider = holder_cell(app, 6)  # this test's own PID: no container (or one Docker does not know)
        assert isinstance(outsider, Text) and outsider.plain.startswith("! ")

        text = details(app)
        assert "cf-a" in text and "cf-b" in text
        assert "is held by 2 running containers" in text
        await pilot.press(*["down"] * (5 - g0))
        text = " ".join(details(app).split())  # (the pane wraps long lines under their label)
        assert "[cf-a pid 1]" in text and "GPU not given" in text and "which cf-a was not given" in text

        await pilot.press("c")
        await pilot.pause()
        rows = panel_rows(app)
        assert rows[a.id]["name"] == "! cf-a" and rows[b.id]["name"] == "! cf-b"
        assert rows[bad.id]["name"] == "! cf-bad" and "?" in rows[bad.id]["gpus"]
        assert created.id not in rows  # running ones only, by default
        outsiders = [k for k in rows if k == HOST_KEY or k.startswith("foreign:")]
        assert len(outsiders) == 1 and rows[outsiders[0]]["gpus"] == "6"

        await select_row(pilot, bad.id)
        text = panel_details(app)
        assert "NVIDIA_VISIBLE_DEVICES=9" in text and "does not exist" in text and "Conflict" in text
        await select_row(pilot, a.id)
        text = panel_details(app)
        assert "GPU 2 is held by" not in text and f"GPU {g0} is held by 2 running containers" in text
        assert "GPU not given to its container" in text

        # a: every container, with what a stopped one would hold; a again: running ones only
        await pilot.press("a")
        await wait_until(pilot, lambda: created.id in panel_rows(app), what="the created container")
        assert app.show_all_containers and panel_rows(app)[created.id]["status"] == "created"
        await pilot.press("a")
        await wait_until(pilot, lambda: created.id not in panel_rows(app), what="running ones only")

        # a container holding every GPU
        everything = await asyncio.to_thread(run, engine, "cf-all", device_requests=gpus_req(count=-1))
        await wait_until(pilot, lambda: everything.id in panel_rows(app), what="cf-all")
        assert panel_rows(app)[everything.id]["gpus"] == "all (8)"
        assert panel_rows(app)[everything.id]["name"] == "! cf-all"
        await select_row(pilot, everything.id)
        assert "holds every GPU (8)" in panel_details(app)


async def test_engine_stopped_shows_the_banner_and_restarted_hides_it(engine):
    run(engine, "rs-ui", device_requests=gpus_req(device_ids=["1"]), restart_policy={"Name": "always"})
    app = make_app(host_with(), refresh=0.2, docker_base_url=engine.base_url)
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        await wait_until(pilot, lambda: holder_cells(app)[1] == "rs-ui", what="the holder")
        assert not banner(app.screen).display

        await asyncio.to_thread(engine.stop)
        await wait_until(pilot, lambda: banner(app.screen).display, what="the Docker banner")
        text = str(banner(app.screen).render())
        assert "Docker" in text
        message = app.holders.docker.message
        assert "systemctl start docker" in message or "DOCKER_HOST" in message, message
        assert holder_cells(app)[1] == ""  # nothing is known now
        assert gpu_screen(app).query_one("#gpu-table", LiveTable).row_count == 8  # the GPU view keeps working
        assert "unknown:" in details(app) and " ".join(message.split()) in " ".join(details(app).split())
        await pilot.press("c")
        await pilot.pause()
        assert banner(app.screen).display
        assert "Docker:" in panel_details(app)
        await pilot.press("escape")

        await asyncio.to_thread(engine.restart)
        await wait_until(pilot, lambda: not banner(app.screen).display, timeout=60, what="the banner to go")
        await wait_until(pilot, lambda: holder_cells(app)[1] == "rs-ui", what="the holder back")


async def test_unreachable_engine_banner_and_the_gpu_view_keeps_working():
    app = make_app(host_with(), refresh=3600, docker_base_url=NO_DOCKER)
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        assert banner(app.screen).display
        assert "does not exist" in str(banner(app.screen).render())
        assert gpu_screen(app).query_one("#gpu-table", LiveTable).row_count == 8
        assert "DOCKER_HOST" in " ".join(details(app).split())


# --------------------------------------------------------------------------- the demo's engine


async def test_demo_holders_from_the_simulated_engine():
    app = make_app(refresh=3600)
    async with app.run_test(size=(120, 40)) as pilot:
        await first_snapshot(pilot)
        cells = holder_cells(app)
        assert cells[:2] == ["train-llama", "train-llama"] and cells[4] == "burn-in"
        assert cells[2] == "! embedder +1"  # embedder by /dev/nvidia1 (minor 1 = index 2) and triton
        assert cells[6] == "! mistral-mig"  # a host process on its card
        text = details(app)
        assert "[train-llama pid 17]" in text
        await pilot.press("c")
        await pilot.pause()
        rows = panel_rows(app)
        assert {r["name"] for r in rows.values()} >= {"burn-in", "cache", "! embedder", "! triton", "! (host)"}
        assert "old-job" not in {r["name"] for r in rows.values()}
        await pilot.press("a")
        await wait_until(pilot, lambda: any(r["name"] == "old-job" for r in panel_rows(app).values()), what="old-job")
        old = next(r for r in panel_rows(app).values() if r["name"] == "old-job")
        assert (old["status"], old["gpus"]) == ("exited", "all (8)")
        assert list(panel_rows(app))[-1] == HOST_KEY  # outsiders stay last


async def test_a_hung_engine_shows_the_banner_and_marks_the_holders_stale():
    """The demo's engine stops answering (its hang hook, as a dockerd stopped with SIGSTOP): the
    banner says since when, the holder column marks the last known holders with "?", and all of
    it goes when the engine answers again."""
    app = make_app(refresh=0.2)
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        w = app.host.watcher()
        w.heartbeat, w.stale_after = 0.1, 0.3
        await wait_until(pilot, lambda: holder_cells(app)[0] == "train-llama", what="the holders")
        assert not banner(app.screen).display
        with app.host.sim.dockerd.stalled():
            await wait_until(pilot, lambda: banner(app.screen).display, what="the Docker banner")
            assert "not answering since" in str(banner(app.screen).render())
            await wait_until(pilot, lambda: holder_cells(app)[0] == "? train-llama", what="stale holders")
            assert holder_cells(app)[3] == "?"  # no holder known, which is not the same as free
            assert "has not answered since" in " ".join(details(app).split())
        await wait_until(pilot, lambda: not banner(app.screen).display, what="the banner to go")
        await wait_until(pilot, lambda: holder_cells(app)[0] == "train-llama", what="current holders")


# --------------------------------------------------------------------------- snapshots (80x24)


def test_holder_column_snapshot_80x24(snap_compare):
    # GPU 0: held by train-llama (--gpus), its rank-0 process as PID 17 inside it; conflicts marked
    # with "!" on GPUs 2 (two containers) and 6 (a process in no container)
    assert snap_compare(make_app(refresh=3600), terminal_size=(80, 24), run_before=first_snapshot)


def test_container_panel_snapshot_80x24(snap_compare):
    async def ready(pilot):
        await first_snapshot(pilot)
        await pilot.press("c")
        await pilot.pause()
        await pilot.press("down", "down")  # embedder: shares its card with triton

    assert snap_compare(make_app(refresh=3600), terminal_size=(80, 24), run_before=ready)


def test_container_panel_all_snapshot_80x24(snap_compare):
    async def ready(pilot):
        await first_snapshot(pilot)
        await pilot.press("c")
        await pilot.pause()
        await pilot.press("a")
        await wait_until(pilot, lambda: len(pilot.app.holders.containers) == 8, what="all containers")
        await pilot.press(*["down"] * 7)  # old-job: exited, --gpus all

    assert snap_compare(make_app(refresh=3600), terminal_size=(80, 24), run_before=ready)


def test_docker_banner_snapshot_80x24(snap_compare):
    app = make_app(host_with(), refresh=3600, docker_base_url=NO_DOCKER)
    assert snap_compare(app, terminal_size=(80, 24), run_before=first_snapshot)
