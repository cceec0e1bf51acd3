"""Choosing GPUs: indices, UUIDs, bus ids, NV_GPU strings and 'all', in the order given."""

from __future__ import annotations

import pytest

from gpudock.launch.selection import SelectionError, parse_plugin_devices, parse_selection
from gpudock.model import HostSnapshot
from helpers.gpus import UUIDS, shuffled_host


def host() -> HostSnapshot:
    return shuffled_host()


def idx(sel) -> list[int]:
    return [g.index for g in sel.gpus]


def test_order_is_kept_2_0_is_not_0_2():
    assert idx(parse_selection(["2", "0"], host())) == [2, 0]
    assert idx(parse_selection(["0", "2"], host())) == [0, 2]


@pytest.mark.parametrize("nv_gpu", ["2,0", "2 0", " 2 , 0 ", "2\t0"])
def test_nv_gpu_strings_split_on_commas_and_spaces(nv_gpu):
    assert idx(parse_selection(nv_gpu, host())) == [2, 0]


def test_full_uuid_any_case_and_unambiguous_prefix():
    assert idx(parse_selection([UUIDS[3].upper().replace("GPU-", "gpu-")], host())) == [3]
    assert idx(parse_selection(["GPU-4f3a"], host())) == [0]


def test_ambiguous_uuid_prefix_is_refused_naming_both_cards():
    with pytest.raises(SelectionError, match=r"ambiguous GPU 'GPU-a81c'.*GPU 1.*GPU 2"):
        parse_selection(["GPU-a81c"], host())


@pytest.mark.parametrize("spelling", ["0000:3b:00.0", "00000000:3B:00.0", "3b:00.0", "0000:3B:00.0"])
def test_bus_id_in_any_spelling(spelling):
    assert idx(parse_selection([spelling], host())) == [3]


def test_mixed_kinds_in_one_nv_gpu_string():
    sel = parse_selection(f"0000:18:00.0,{UUIDS[1]} 0", host())
    assert idx(sel) == [2, 1, 0]
    assert not sel.all


def test_all_is_every_card_in_index_order():
    sel = parse_selection("all", host())
    assert sel.all and idx(sel) == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "items, message",
    [
        ([], "no GPU selected"),
        (["", " , "], "no GPU selected"),
        (["7"], r"unknown GPU '7': this host has no GPU with NVML index 7 \(indices: 0-3\)"),
        (["GPU-ffff"], "unknown GPU 'GPU-ffff': no GPU on this host has that UUID"),
        (["0000:99:00.0"], "unknown GPU '0000:99:00.0': no GPU on this host is at PCI bus id 0000:99:00.0"),
        (["nvidia0"], "unknown GPU 'nvidia0': name a GPU by NVML index"),
        (["1,1"], r"GPU 1 is named twice \('1' and '1'\)"),
        ([UUIDS[0], "GPU-4f3a1c"], "GPU 0 is named twice"),
        (["0", UUIDS[0]], r"index '0' and UUID '.*' are the same card \(GPU 0 \(GPU-4f3a"),
        (["0000:0a:00.0", "1"], r"bus id '0000:0a:00.0' and index '1' are the same card"),
        (["all", "0"], "'all' cannot be combined with other GPUs"),
    ],
)
def test_bad_selections_say_what_is_wrong(items, message):
    with pytest.raises(SelectionError, match=message):
        parse_selection(items, host())


def test_all_on_a_host_without_gpus():
    with pytest.raises(SelectionError, match="this host has no GPUs"):
        parse_selection("all", HostSnapshot("535.129.03", "12.2", None, ()))


# -- the plugin's dev= rules ---------------------------------------------------------------------


@pytest.mark.parametrize("value", ["", "*"])
def test_plugin_dev_empty_or_star_is_all(value):
    sel = parse_plugin_devices(value, host())
    assert sel.all and idx(sel) == [0, 1, 2, 3]


def test_plugin_dev_merges_duplicates_keeps_order_and_takes_first_prefix_match():
    assert idx(parse_plugin_devices("2 0 2", host())) == [2, 0]
    assert idx(parse_plugin_devices("GPU-a81c", host())) == [1]  # the plugin's first match


@pytest.mark.parametrize(
    "value, bad", [("0,2", "0,2"), ("0  2", ""), ("4", "4"), ("-1", "-1"), ("gpu-4f", "gpu-4f"), ("1_0", "1_0")]
)
def test_plugin_dev_invalid_device_text(value, bad):
    with pytest.raises(SelectionError) as e:
        parse_plugin_devices(value, host())
    assert str(e.value) == f"invalid device: {bad}"


def test_an_index_of_5000_digits_is_an_unknown_gpu_quoted_short():
    """int() of more than 4,300 digits raises ValueError: it must never be reached."""
    with pytest.raises(SelectionError) as e:
        parse_selection(["9" * 5000], host())
    msg = str(e.value)
    assert msg.startswith("unknown GPU '999999999999…(5000 digits)': this host has no GPU with that NVML index")
    assert msg.endswith("(indices: 0-3)") and len(msg) < 200
    # leading zeros are an index as they always were, however many
    assert idx(parse_selection(["0" * 5000 + "2"], host())) == [2]
    with pytest.raises(SelectionError, match=r"^invalid device: 9{5000}$"):
        parse_plugin_devices("9" * 5000, host())  # Go's strconv.Atoi fails: the plugin's own words
