"""Marking GPUs in the table, the launch form and its live docker run preview, and a real launch."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from textual.widgets import Input, Select, Static

from gpudock.ui.screens.launch import LaunchScreen
from gpudock.ui.widgets.live_table import LiveTable
from helpers.dashboard import first_snapshot, make_app

GPU0 = "GPU-4f3a1c2e-9b7d-4e21-8a55-0c1d2e3f4a01"  # the demo's index 0, /dev/nvidia3
GPU2 = "GPU-1d2e3f40-5a6b-4c7d-8e9f-a0b1c2d3e403"  # index 2, /dev/nvidia1


class FakeClient:
    """Enough of docker.DockerClient for the form: two local images."""

    images = SimpleNamespace(
        list=lambda: [
            SimpleNamespace(tags=["nvidia/cuda:12.2.0-base-ubuntu22.04"]),
            SimpleNamespace(tags=["gpudock-test/busybox:latest"]),
        ]
    )


def fake_app():
    app = make_app(refresh=3600)
    app.docker_client_factory = FakeClient
    app.holders_for_launch = lambda snapshot: {}  # nobody holds a card
    return app


def text_of(screen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


async def settle(pilot) -> None:
    """Wait for the launch form's own workers (the dashboard's poll and watchers run on regardless)."""
    mine = [w for w in pilot.app.workers if w.group in ("launch", "launch-facts")]
    await pilot.app.workers.wait_for_complete(mine)
    await pilot.pause()


async def mark_2_then_0(pilot) -> None:
    await pilot.press("down", "down", "space", "up", "up", "space")


async def test_space_marks_cards_and_the_marks_show_their_order():
    app = fake_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await first_snapshot(pilot)
        await mark_2_then_0(pilot)
        screen = app.screen
        assert screen.marks == [GPU2, GPU0]
        table = screen.query_one(LiveTable)
        assert str(table.get_cell(GPU2, "idx")) == "2 [1]"
        assert str(table.get_cell(GPU0, "idx")) == "0 [2]"
        assert str(table.get_cell("GPU-a81c77d0-3e5f-4b6a-9c2d-1e0f2a3b4c02", "idx")) == "1"
        await pilot.press("down", "down", "space")  # unmark GPU 2: GPU 0 becomes first
        assert screen.marks == [GPU0]
        assert str(table.get_cell(GPU2, "idx")) == "2"
        assert str(table.get_cell(GPU0, "idx")) == "0 [1]"
        app.action_refresh_now()  # the marks survive a refresh
        await settle(pilot)
        assert str(table.get_cell(GPU0, "idx")) == "0 [1]"


async def test_the_form_previews_the_exact_docker_run_line_as_the_operator_types():
    app = fake_app()
    async with app.run_test(size=(120, 50)) as pilot:
        await first_snapshot(pilot)
        await mark_2_then_0(pilot)
        await pilot.press("l")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, LaunchScreen)
        assert [g.index for g in form.gpus] == [2, 0]
        assert "choose an image" in text_of(form, "#launch-preview")
        assert "2 local image(s)" in text_of(form, "#launch-warnings")
        await pilot.press(*"nvidia/cuda:12.2.0-base-ubuntu22.04")
        form.query_one("#f-command", Input).value = "nvidia-smi -L"
        await pilot.pause()
        assert text_of(form, "#launch-preview") == (
            "docker run --detach --runtime=nvidia -e "
            f"NVIDIA_VISIBLE_DEVICES={GPU2},{GPU0} -e NVIDIA_DRIVER_CAPABILITIES=compute,utility "
            "nvidia/cuda:12.2.0-base-ubuntu22.04 nvidia-smi -L"
        )
        form.query_one("#f-mode", Select).value = "legacy"
        await pilot.pause()
        preview = text_of(form, "#launch-preview")
        assert "--device=/dev/nvidia1 --device=/dev/nvidia3 " in preview  # by minor, in marking order
        assert "--volume=nvidia_driver_535.129.03:/usr/local/nvidia:ro" in preview
        form.query_one("#f-mode", Select).value = "gpus"
        form.query_one("#f-mps", Input).value = "40"
        await pilot.pause()
        assert f"--gpus '\"device={GPU2},{GPU0}\"' -e CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=40 --ipc=host" in text_of(
            form, "#launch-preview"
        )
        form.query_one("#f-env", Input).value = "9X=1"
        await pilot.pause()
        assert text_of(form, "#launch-preview").startswith("invalid env name '9X'")
        assert form.spec is None
        form.query_one("#launch-go").press()
        await pilot.pause()
        assert "Nothing to launch" in text_of(form, "#launch-result")
        await pilot.press("escape")
        assert not isinstance(app.screen, LaunchScreen)


async def test_the_launch_key_without_marks_takes_the_highlighted_card():
    app = fake_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await first_snapshot(pilot)
        await pilot.press("down", "l")
        assert [g.index for g in app.screen.gpus] == [1]


def test_launch_form_snapshot(snap_compare):
    async def ready(pilot):
        await first_snapshot(pilot)
        await mark_2_then_0(pilot)
        await pilot.press("l")
        await settle(pilot)
        await pilot.press(*"gpudock-test/busybox:latest")
        pilot.app.screen.query_one("#f-command", Input).value = "sh -c 'echo ready'"
        await pilot.pause()

    assert snap_compare(fake_app(), terminal_size=(100, 40), run_before=ready)


# -- a real launch through the form ---------------------------------------------------------------


@pytest.fixture
def docker_env(engine, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", engine.base_url)
    return engine


async def test_launch_from_the_form_warns_about_a_held_card_then_starts_and_shows_logs(docker_env):
    engine = docker_env
    engine.client.containers.run(
        engine.image,
        ["sleep", "300"],
        detach=True,
        name="train-a",
        runtime="nvidia",
        environment={"NVIDIA_VISIBLE_DEVICES": GPU2},
    )
    # The dashboard watches the real engine; the form launches on the engine the dashboard watches.
    app = make_app(refresh=3600, docker_base_url=engine.base_url)
    async with app.run_test(size=(120, 50)) as pilot:
        await first_snapshot(pilot)
        await mark_2_then_0(pilot)
        await pilot.press("l")
        await settle(pilot)
        form = app.screen
        assert "GPU 2 is already held by train-a" in text_of(form, "#launch-warnings")
        await pilot.press(*engine.image)
        form.query_one("#f-command", Input).value = "sh -c 'echo hello-from-form; echo $NVIDIA_VISIBLE_DEVICES'"
        form.query_one("#f-name", Input).value = "from-form"
        await pilot.pause()
        form.query_one("#launch-go").press()
        await settle(pilot)
        assert "Press Enter (or y) to launch anyway" in text_of(form, "#launch-result")
        assert not [c for c in engine.client.containers.list(all=True) if c.name == "from-form"]
        form.query_one("#launch-go").press()
        await pilot.pause()
        await settle(pilot)
        result = text_of(form, "#launch-result")
        assert "Started from-form" in result, result
        assert "warning: GPU 2 (" + GPU2 + ") is already held by train-a" in result
        assert "  hello-from-form" in result and f"  {GPU2},{GPU0}" in result
        c = engine.client.containers.get("from-form")
        assert c.attrs["HostConfig"]["Runtime"] == "nvidia"


async def test_the_form_launches_on_the_engine_the_dashboard_watches():
    # --demo: the dashboard watches the simulated engine, so the form's client and its "held by"
    # warnings come from that engine too, never from whatever DOCKER_HOST happens to name.
    app = make_app(refresh=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        client = app.docker_client_factory()
        assert client.api.base_url.startswith("http+docker://") and app.host.sim is not None
        assert {c.name for c in client.containers.list()} >= {"train-llama", "triton", "embedder"}
        held = app.holders_for_launch(app.snapshot)
        gpu2 = app.snapshot.gpus[2].uuid
        assert held[gpu2] == ("embedder", "triton")
        assert app.snapshot.gpus[3].uuid not in held
