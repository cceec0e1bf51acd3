"""A hung engine is not a quiet one: the watcher marks its containers stale, and says since when.

An operator's story: dockerd hangs (stopped with SIGSTOP, deadlocked). Nothing closes: the event
stream just goes silent, as it does on an idle engine. The dashboard must not go on presenting the
holders as current: within seconds the Docker banner says the engine is not answering and since
when, the holder column marks what it shows as the last known, and when the engine answers again
all of it goes. Played here by the simulated engine's hang hook (SimDockerd.stalled); the private
dockerd stopped with SIGSTOP is in tests/integration/test_holders_engine.py."""

from __future__ import annotations

import time

import pytest
from rich.text import Text

from gpudock.host.docker import DockerStatus, DockerWatcher
from gpudock.session import open_scenario
from gpudock.sim.dockerd import SimDockerd
from gpudock.ui.screens.gpus import gpu_details, holder_cell
from gpudock.ui.widgets.docker_banner import docker_banner_text
from helpers.sim import frozen_demo, session


@pytest.fixture(scope="module")
def snap():
    s = session(frozen_demo())
    try:
        yield s.snapshot()
    finally:
        s.shutdown()


@pytest.fixture
def dockerd():
    with SimDockerd.start(frozen_demo()) as d:
        yield d


def test_a_stalled_engine_turns_the_watcher_stale_and_an_answer_clears_it(dockerd, snap):
    w = DockerWatcher(dockerd.base_url, heartbeat=0.1, stale_after=0.3, timeout=60, backoff=(0.1, 0.5))
    w.start()
    try:
        assert w.wait_for(lambda w: w.status.ok, 10), w.status
        running = {c.name for c in w.snapshot(snap.gpus)}
        assert "train-llama" in running
        # idle is not hung: the heartbeat is answered, nothing turns stale
        assert not w.wait_for(lambda w: w.status.stale, timeout=1.0)
        before = time.time()
        with dockerd.stalled():
            assert w.wait_for(lambda w: w.status.stale, timeout=10), w.status
            st = w.status
            assert st.state == "ok" and before <= st.stale_since <= time.time()
            at = time.strftime("%H:%M:%S", time.localtime(st.stale_since))
            assert st.message == (
                f"The Docker engine at {dockerd.base_url} has not answered since {at}: is it hung? "
                "(sudo systemctl status docker). Containers shown are as of then."
            )
            assert st.to_json()["stale_since"] == st.stale_since
            # the last known containers are kept, not dropped: they are what the engine said last
            assert {c.name for c in w.snapshot(snap.gpus)} == running
            # a container started meanwhile is not known yet; "since" stays when the first request was sent
            dockerd.engine.start(dockerd.engine.create({"Image": "redis:7", "Cmd": ["x"]}, "during-hang").id)
            assert w.wait_for(lambda w: w.status.stale_since == st.stale_since, timeout=1.0)
            assert "during-hang" not in {c.name for c in w.snapshot(snap.gpus)}
        assert w.wait_for(lambda w: not w.status.stale, timeout=10), w.status
        assert w.status.message is None
        assert w.wait_for(lambda w: "during-hang" in {c.name for c in w.snapshot(snap.gpus)}, timeout=10)
    finally:
        w.stop()


def test_the_session_carries_staleness_to_the_holders_map():
    with open_scenario(frozen_demo()) as s:
        w = s.start_watching()
        w.heartbeat, w.stale_after = 0.1, 0.3
        assert w.wait_for(lambda w: w.status.ok, 10)
        assert s.poll()[1].docker.stale_since is None
        with s.sim.dockerd.stalled():
            assert w.wait_for(lambda w: w.status.stale, timeout=15)
            _snap, hmap = s.poll()
            assert hmap.docker.stale_since is not None
            assert hmap.to_json()["docker"]["stale_since"] == hmap.docker.stale_since
            assert hmap.gpu(hmap.gpus[0].uuid).holders  # still shown: train-llama, as last known
        assert w.wait_for(lambda w: not w.status.stale, timeout=10)


def test_the_banner_says_the_engine_is_not_answering_and_since_when():
    now = time.time()
    assert docker_banner_text(DockerStatus("ok", "unix:///x")) is None
    stale = DockerStatus("ok", "unix:///x", message="m", stale_since=now - 7)
    text = docker_banner_text(stale, now=now)
    at = time.strftime("%H:%M:%S", time.localtime(now - 7))
    assert text.plain == f" Docker  not answering since {at} (7 s): holders shown are as of then"
    assert len(text.plain) <= 80  # one line of an 80-column terminal


def test_the_holder_column_marks_stale_holders(snap):
    with open_scenario(frozen_demo()) as s:
        hmap = s.holders(s.snapshot())
    gh = hmap.gpu(snap.gpus[0].uuid)
    assert holder_cell(gh, (), 16) == "train-llama"
    cell = holder_cell(gh, (), 16, stale=True)
    assert isinstance(cell, Text) and cell.plain == "? train-llama" and cell.style == "dim"
    idle = hmap.gpu(snap.gpus[3].uuid)  # no container holds GPU 3: unknown now, not "free"
    assert holder_cell(idle, (), 16, stale=True).plain == "?"
    stale = DockerStatus("ok", "unix:///x", message="The Docker engine … has not answered since …", stale_since=1.0)
    details = gpu_details(snap.gpus[0], gh, (), stale).plain
    assert "Docker      The Docker engine … has not answered since …" in details
    assert "Held by     train-llama" in details
