"""The container panel's cells for --privileged containers: they can reach every card."""

from __future__ import annotations

from gpudock.host.holders import ContainerGpus, GpuRef
from gpudock.model import Container
from gpudock.ui.screens.containers import container_cells


def _refs(*indices):
    return tuple(GpuRef(f"GPU-{i}", i, i, ("privileged",)) for i in indices)


def _cg(status="running", held=(), reach=(), privileged=True):
    c = Container("c" * 64, "priv", "img", status)
    gpus = tuple(GpuRef(f"GPU-{i}", i, i, ("runtime-env",)) for i in held)
    return ContainerGpus(c, gpus, (), (), privileged=privileged, reachable=_refs(*reach))


def test_a_privileged_container_that_selects_nothing_can_reach_any_card():
    cells = container_cells(_cg(reach=range(8)), (), wide=False)
    assert str(cells["gpus"]) == "any (8)" and cells["gpus"].style == "bold yellow"
    assert cells["how"] == "--privileged"


def test_a_privileged_container_holds_what_it_selects_and_reaches_the_rest():
    cells = container_cells(_cg(held=(1,), reach=(0, 2, 3, 4, 5, 6, 7)), (), wide=False)
    assert str(cells["gpus"]) == "1 +7"
    assert cells["how"] == "--runtime+--privileged"


def test_an_unprivileged_container_is_unchanged():
    cells = container_cells(_cg(held=(1,), privileged=False), (), wide=False)
    assert str(cells["gpus"]) == "1" and cells["how"] == "--runtime"


def test_a_stopped_privileged_container_is_not_bold():
    cells = container_cells(_cg(status="exited", reach=range(8)), (), wide=False)
    assert cells["gpus"].style == "yellow"
