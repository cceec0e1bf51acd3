"""Launching more precisely, on the demo's simulated engine: a MIG device chosen in the form reaches
the generated arguments and the engine, the docker run line goes to the clipboard, the launch is
saved as a compose file (never over one without asking), and after a launch the marks are cleared
and the new container is the one selected on the Containers screen."""

from __future__ import annotations

import os

import pytest
from textual.widgets import Input, Select, Static

from gpudock.ui.screens.confirm import ConfirmScreen
from gpudock.ui.screens.containers import ContainerScreen
from gpudock.ui.screens.gpus import GpuScreen
from gpudock.ui.screens.launch import ComposePathScreen, LaunchScreen
from gpudock.ui.widgets.live_table import LiveTable
from helpers.dashboard import first_snapshot, make_app, until

IMAGE = "nvidia/cuda:12.0.1-base-ubuntu22.04"  # a local image of the demo's engine
MIG_6_1 = "MIG-6e2f7a3b-8c4d-5e5f-a071-8293a4b5c6d2"  # GPU 6's MIG device 1 (2g.20gb), held by no one


def preview(form) -> str:
    return " ".join(str(form.query_one("#launch-preview", Static).render()).split())


async def open_form(pilot, *keys: str) -> LaunchScreen:
    await first_snapshot(pilot)
    await pilot.press(*keys, "l")
    await until(pilot, lambda: isinstance(pilot.app.screen, LaunchScreen), "the form")
    form = pilot.app.screen
    await until(pilot, lambda: hasattr(form, "_facts"), "the engine's images")
    return form


@pytest.fixture
def in_tmp(tmp_path):
    cwd = os.getcwd()
    os.chdir(tmp_path)
    yield tmp_path
    os.chdir(cwd)


async def test_a_mig_device_chosen_in_the_form_reaches_the_arguments_and_the_engine():
    app = make_app(refresh=0.3)
    async with app.run_test(size=(80, 24)) as pilot:
        form = await open_form(pilot, *["down"] * 6)  # GPU 6, the MIG card
        mig = form.query_one("#f-mig-0", Select)
        assert mig.value == ""  # the whole GPU, until a MIG device is chosen
        form.query_one("#f-image", Input).value = IMAGE
        await pilot.pause()
        assert f"NVIDIA_VISIBLE_DEVICES={form.snapshot.gpus[6].uuid}" in preview(form)  # the whole GPU
        assert "GPU 6 is already held by mistral-mig" in str(form.query_one("#launch-warnings", Static).render())
        mig.value = MIG_6_1
        await pilot.pause()
        assert f"NVIDIA_VISIBLE_DEVICES={MIG_6_1}" in preview(form)
        assert "GPU 6 MIG 6:1 2g.20gb" in str(form.query_one("#launch-gpus", Static).render())
        # mistral-mig holds MIG 6:0 only: 6:1 is free, no warning
        assert "already held" not in str(form.query_one("#launch-warnings", Static).render())
        form.query_one("#f-mode", Select).value = "gpus"
        await pilot.pause()
        assert f"""--gpus '"device={MIG_6_1}"'""" in preview(form)
        form.query_one("#f-mode", Select).value = "legacy"
        await pilot.pause()
        assert "legacy mode maps whole /dev/nvidiaN nodes: it cannot give MIG device 6:1" in preview(form)
        form.query_one("#f-mode", Select).value = "runtime"
        form.query_one("#f-name", Input).value = "on-mig"
        await pilot.pause()
        await pilot.press("enter")
        await until(pilot, lambda: "Started on-mig" in str(form.query_one("#launch-result", Static).render()), "run")
        started = app.host.sim.dockerd.engine.find("on-mig")
        assert f"NVIDIA_VISIBLE_DEVICES={MIG_6_1}" in started.env
        # and the holders map says it holds that MIG device of GPU 6
        await until(
            pilot, lambda: app.holders is not None and any(c.name == "on-mig" for c in app.holders.containers), ""
        )
        cg = next(c for c in app.holders.containers if c.name == "on-mig")
        assert [(g.index, g.mig_uuids) for g in cg.gpus] == [(6, (MIG_6_1,))]


async def test_the_docker_run_line_goes_to_the_clipboard():
    app = make_app(refresh=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        form = await open_form(pilot)
        await pilot.press("ctrl+y")
        await pilot.pause()
        assert app.clipboard == ""  # nothing to copy until the form makes a spec
        assert any("Nothing to copy" in n.message for n in app._notifications)
        form.query_one("#f-image", Input).value = IMAGE
        await pilot.pause()
        await pilot.press("ctrl+y")
        assert app.clipboard == form.spec.docker_run_line()
        assert app.clipboard.startswith("docker run --detach --runtime=nvidia")


async def test_the_launch_is_saved_as_a_compose_file_and_not_over_one_without_asking(in_tmp):
    app = make_app(refresh=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        form = await open_form(pilot)
        form.query_one("#f-image", Input).value = IMAGE
        form.query_one("#f-name", Input).value = "trainer"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, ComposePathScreen), "the path prompt")
        assert app.screen.query_one(Input).value == "compose.yaml"
        await pilot.press("enter")
        await until(pilot, lambda: (in_tmp / "compose.yaml").exists(), "the file")
        written = (in_tmp / "compose.yaml").read_text()
        assert written == form.spec.compose_text()
        assert 'container_name: "trainer"' in written and "NVIDIA_VISIBLE_DEVICES" in written

        form.query_one("#f-name", Input).value = "trainer2"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, ComposePathScreen), "the path prompt")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        assert app.screen.title_text == "Overwrite compose.yaml?"
        await pilot.press("n")
        await until(pilot, lambda: app.screen is form, "back in the form")
        assert (in_tmp / "compose.yaml").read_text() == written  # as it was

        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, ComposePathScreen), "the path prompt")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        await pilot.press("y")
        await until(pilot, lambda: "trainer2" in (in_tmp / "compose.yaml").read_text(), "written over")
        assert (in_tmp / "compose.yaml.gpudock-bak").read_text() == written


async def test_a_compose_path_in_a_missing_directory_says_so(in_tmp):
    app = make_app(refresh=3600)
    async with app.run_test(size=(80, 24)) as pilot:
        form = await open_form(pilot)
        form.query_one("#f-image", Input).value = IMAGE
        await pilot.pause()
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, ComposePathScreen), "the path prompt")
        app.screen.query_one(Input).value = "no/such/dir/compose.yaml"
        await pilot.press("enter")
        await until(pilot, lambda: any(n.message.startswith("Not saved:") for n in app._notifications), "refused")
    assert list(in_tmp.iterdir()) == []


async def test_after_a_launch_the_marks_are_cleared_and_the_container_is_selected_on_the_containers_screen():
    app = make_app(refresh=0.3)
    async with app.run_test(size=(80, 24)) as pilot:
        await first_snapshot(pilot)
        await pilot.press("down", "down", "down", "space", "down", "down", "space")  # GPUs 3 and 5: free
        gpus = app.screen
        assert isinstance(gpus, GpuScreen) and len(gpus.marks) == 2
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, LaunchScreen), "the form")
        form = app.screen
        form.query_one("#f-image", Input).value = IMAGE
        form.query_one("#f-name", Input).value = "zz-new"
        await pilot.pause()
        await pilot.press("enter")
        await until(pilot, lambda: "Started zz-new" in str(form.query_one("#launch-result", Static).render()), "run")
        assert gpus.marks == []
        assert str(gpus.query_one(LiveTable).get_cell(GpuScreen.row_key(app.snapshot.gpus[3]), "idx")) == "3"
        await pilot.press("escape")
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ContainerScreen), "the Containers screen")
        cid = app.host.sim.dockerd.engine.find("zz-new").id
        await until(pilot, lambda: app.screen.current_key() == cid, "the new container highlighted")
