"""Acting on containers through the session, on the simulated engine: stop, restart, remove, logs.

The simulated engine answers as dockerd does (a stop ends a following log stream, a restart is
kill, die, stop, start, restart; removing a running container without force is a 409), so what
the Containers screen and `gpudock container` do is the code that runs against dockerd.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from gpudock.cli import main
from gpudock.launch.lifecycle import ActionError, ContainerGone, holdings
from gpudock.session import open_scenario
from helpers.sim import frozen_demo


@pytest.fixture
def demo():
    host = open_scenario(frozen_demo())
    yield host
    host.close()


def states(host) -> dict[str, str]:
    return {c.name: c.state for c in host.sim.dockerd.engine.containers.values()}


def test_stop_restart_and_remove_change_the_engine(demo):
    before = states(demo)
    done = demo.container_action("burn-in", "stop")
    assert done.status == "exited" and "burn-in" in done.message and "stopped" in done.message
    assert states(demo) == {**before, "burn-in": "exited"}
    assert demo.container_action("burn-in", "restart").status == "running"
    done = demo.container_action("burn-in", "remove", force=True)
    assert done.status is None and "removed" in done.message
    assert "burn-in" not in states(demo)
    assert {k: v for k, v in before.items() if k != "burn-in"} == states(demo)


def test_a_running_container_is_removed_only_with_force(demo):
    with pytest.raises(ActionError, match="burn-in is running: stop it first, or remove it with force"):
        demo.container_action("burn-in", "remove")
    assert states(demo)["burn-in"] == "running"


def test_stopping_a_stopped_container_says_so(demo):
    demo.container_action("burn-in", "stop")
    assert "was not running (exited): nothing to stop" in demo.container_action("burn-in", "stop").message


def test_a_container_that_went_away_is_a_clear_message_and_nothing_else_is_touched(demo):
    cid = demo.sim.dockerd.engine.find("burn-in").id
    demo.sim.dockerd.engine.remove(cid, force=True)
    before = states(demo)
    for action in ("stop", "restart", "remove"):
        with pytest.raises(
            ContainerGone, match="container burn-in is gone .removed since it was shown.: nothing was done"
        ):
            demo.container_action(cid, action, expect_id=cid, shown_as="burn-in", force=True)
    assert states(demo) == before


def test_a_name_that_now_names_another_container_is_refused(demo):
    engine = demo.sim.dockerd.engine
    old, image = engine.find("burn-in").id, engine.find("burn-in").image
    engine.remove(old, force=True)
    new = engine.create({"Image": image, "Cmd": ["sleep", "1"]}, "burn-in")
    engine.start(new.id)
    with pytest.raises(ContainerGone, match="burn-in is now another container"):
        demo.container_action("burn-in", "stop", expect_id=old)
    assert engine.find("burn-in").state == "running"


def test_what_a_container_holds_names_each_gpu_by_index_bus_id_and_node(demo):
    hmap = demo.holders(demo.snapshot())
    cg = next(c for c in hmap.containers if c.name == "burn-in")
    lines = holdings(cg, hmap)
    assert lines[0] == "GPU 4  00000000:85:00.0  /dev/nvidia7  (--runtime)"
    assert lines[-1] == "1 GPU process runs in it"


def test_a_following_log_stream_gets_new_lines_and_ends_when_the_container_stops(demo):
    stream = demo.container_logs("burn-in", tail=10)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.extend(stream.lines()), daemon=True)
    reader.start()
    demo.sim.dockerd.engine.log("burn-in", "step 1 loss 0.5")
    demo.sim.dockerd.engine.log("burn-in", "step 2 loss 0.4", stream=2)
    demo.container_action("burn-in", "stop")
    reader.join(10)
    assert not reader.is_alive()  # dockerd ends a follow when the container stops
    assert got[0].startswith("burn-in: simulated by gpudock")
    assert got[1:] == ["step 1 loss 0.5", "step 2 loss 0.4"]
    stream.close()


def test_closing_a_following_stream_ends_the_reader(demo):
    stream = demo.container_logs("burn-in")
    done = threading.Event()
    threading.Thread(target=lambda: (list(stream.lines()), done.set()), daemon=True).start()
    time.sleep(0.2)
    stream.close()
    assert done.wait(10)


def test_a_restart_is_the_events_dockerd_sends(demo):
    client = demo.docker_client()
    events = client.events(decode=True, filters={"container": "burn-in"})
    got: list[str] = []

    def read() -> None:
        for e in events:
            got.append(e["Action"])
            if e["Action"] == "restart":
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 10
    while not demo.sim.dockerd.engine._subs and time.monotonic() < deadline:  # open before the restart:
        time.sleep(0.01)  # the engine sends no history
    demo.container_action("burn-in", "restart")
    reader.join(10)
    events.close()
    assert got == ["kill", "die", "stop", "start", "restart"]
    # and its program's first line again, as a real container's would be
    logs = client.containers.get("burn-in").logs().decode().splitlines()
    assert logs[-1].startswith("burn-in: simulated by gpudock, started ")


def test_the_tail_of_the_logs(demo):
    for i in range(5):
        demo.sim.dockerd.engine.log("burn-in", f"line {i}")
    stream = demo.container_logs("burn-in", tail=2, follow=False)
    assert list(stream.lines()) == ["line 3", "line 4"]
    stream.close()


def test_the_cli_says_what_the_container_held(capsys):
    assert main(["--demo", "container", "stop", "burn-in"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("burn-in (") and out[0].endswith("stopped, now exited")
    assert out[1] == "  held GPU 4  00000000:85:00.0  /dev/nvidia7  (--runtime)"
    assert main(["--demo", "container", "rm", "--force", "burn-in", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["action"] == "remove" and doc["status"] is None
    assert doc["gpus"] == [
        {"index": 4, "uuid": doc["gpus"][0]["uuid"], "pci_bus_id": "00000000:85:00.0", "device": "/dev/nvidia7"}
    ]


def test_the_cli_refuses_a_container_that_does_not_exist(capsys):
    assert main(["--demo", "container", "restart", "no-such-thing"]) == 2
    assert "container no-such-thing is gone" in capsys.readouterr().err


def test_kill_signals_gpu_processes_only(capsys):
    assert main(["--demo", "kill", "4242"]) == 2
    assert "PID 4242 is not a process on any GPU of this host" in capsys.readouterr().err
    assert main(["--demo", "kill", "--signal", "HUP", "3904121"]) == 2
    assert "TERM (15) or KILL (9) only" in capsys.readouterr().err


def test_a_stopped_simulated_container_takes_its_gpu_processes_with_it(demo):
    def on_gpu4() -> list[int]:
        return [p.pid for g in demo.snapshot().gpus if g.index == 4 for p in g.processes]

    assert on_gpu4() == [3920455]  # burn-in's gpu_burn
    demo.container_action("burn-in", "stop")
    assert on_gpu4() == []  # NVML lists a process no longer once it has exited
    demo.container_action("burn-in", "restart")
    assert on_gpu4() == [3920455]  # the scenario's process runs again
