"""MIG devices in a launch: the demo's GPU 6 has three (6:0 3g.40gb, 6:1 2g.20gb, 6:2 1g.10gb).
An operator names one by `<gpu>:<mig>` or its `MIG-…` UUID; the arguments then name that MIG
device in the form each mode takes, and what cannot be meant is refused in words."""

from __future__ import annotations

import pytest

from gpudock.launch.selection import SelectionError, parse_selection
from gpudock.launch.spec import LaunchError, build_spec
from gpudock.session import open_scenario
from helpers.sim import frozen_demo

MIG_6_0 = "MIG-5d1e6f2a-7b3c-5d4e-9f60-718293a4b5c1"
MIG_6_1 = "MIG-6e2f7a3b-8c4d-5e5f-a071-8293a4b5c6d2"


@pytest.fixture(scope="module")
def snap():
    with open_scenario(frozen_demo()) as host:
        yield host.snapshot()


def test_a_mig_device_by_index_and_by_uuid(snap):
    by_index = parse_selection(["6:1"], snap)
    by_uuid = parse_selection([MIG_6_1.lower()], snap)
    for sel in (by_index, by_uuid):
        assert [g.index for g in sel.gpus] == [6]
        assert [m.uuid for m in sel.migs] == [MIG_6_1]


def test_two_mig_devices_of_one_gpu_and_a_whole_gpu_keep_their_order(snap):
    sel = parse_selection("6:1,2,6:0", snap)
    assert [(g.index, m.index if m else None) for g, m in sel.items] == [(6, 1), (2, None), (6, 0)]
    assert [g.index for g in sel.cards] == [6, 2]


@pytest.mark.parametrize(
    "items, message",
    [
        (["6", "6:0"], "GPU 6 ('6') and its MIG device 6:0 ('6:0') overlap"),
        (["6:0", "6"], "GPU 6 ('6') and its MIG device ('6:0') overlap"),
        (["6:0", MIG_6_0], "MIG device 6:0 is named twice"),
        (["2:0"], "GPU 2 has no MIG device 0 (MIG is off on it, or it has no MIG devices)"),
        (["6:9"], "GPU 6 has no MIG device 9 (its MIG devices are 6:0, 6:1, 6:2)"),
        (["9:0"], "this host has no GPU 9"),
        (["MIG-00000000-0000-0000-0000-000000000000"], "no MIG device on this host has that UUID"),
    ],
)
def test_what_cannot_be_meant_is_refused(snap, items, message):
    with pytest.raises(SelectionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_selection(items, snap)


def test_each_mode_names_the_mig_device(snap):
    sel = parse_selection(["6:1", "2"], snap)
    gpu2 = snap.gpus[2].uuid
    runtime = build_spec(snap, sel, "runtime", image="x")
    assert ("NVIDIA_VISIBLE_DEVICES", f"{MIG_6_1},{gpu2}") in runtime.gpu_env
    assert build_spec(snap, sel, "gpus", image="x").gpu_args() == ["--gpus", f'"device={MIG_6_1},{gpu2}"']
    assert build_spec(snap, sel, "cdi", image="x").gpu_args() == [
        "--device",
        f"nvidia.com/gpu={MIG_6_1}",
        "--device",
        f"nvidia.com/gpu={gpu2}",
    ]
    by_index = build_spec(snap, sel, "runtime", image="x", ids="index")
    assert ("NVIDIA_VISIBLE_DEVICES", "6:1,2") in by_index.gpu_env
    doc = runtime.to_json()
    assert [(g["index"], g["mig_uuid"]) for g in doc["gpus"]] == [(6, MIG_6_1), (2, None)]
    assert f"GPUs 6:1 ({MIG_6_1}), 2 ({gpu2})" in runtime.compose_text()


def test_legacy_mode_cannot_give_a_mig_device(snap):
    with pytest.raises(LaunchError, match="legacy mode maps whole /dev/nvidiaN nodes: it cannot give MIG device 6:0"):
        build_spec(snap, parse_selection(["6:0"], snap), "legacy", image="x")
