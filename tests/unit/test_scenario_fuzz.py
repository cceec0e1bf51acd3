"""Scenario files from a fuzzer: the demo's TOML data with keys deleted, given other types, out of
range values, unknown keys and duplicated tables. Every one is either refused with a
ScenarioError that starts with the file's name, or loads into a host whose simulated NVML answers
every call of a snapshot (no exception inside a callback, no GPU error the file did not ask for,
no value wrapped around) and whose simulated engine lists and inspects every container. Never
another exception."""

from __future__ import annotations

import copy
import dataclasses
import os
import sys
import tomllib
from importlib import resources

import pynvml
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpudock.host.claims import claims_from_inspect
from gpudock.host.nvml import NvmlSession
from gpudock.host.root import HostRoot
from gpudock.sim.dockerd import SimEngineState
from gpudock.sim.libnvml import SimNvmlLibrary
from gpudock.sim.scenario import ScenarioError, parse_scenario

DEMO = tomllib.loads((resources.files("gpudock.sim") / "scenarios" / "demo.toml").read_text(encoding="utf-8"))
SOURCE = "fuzz.toml"
# 2,000 in CI (about a minute of one core); fewer while working. No example database: every run
# draws the same examples from a fixed seed, so a failure is one a rerun shows again.
EXAMPLES = 2000 if os.environ.get("CI", "").lower() not in ("", "0", "false", "no") else 300


def _paths(node, path=()):
    """Every key and array item of the document, at any depth, as a path of keys and indices."""
    if path:
        yield path
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*path, i))


PATHS = list(_paths(DEMO))


def _at(doc, path):
    for k in path:
        doc = doc[k]
    return doc


TABLE_PATHS = [()] + [p for p in PATHS if isinstance(_at(DEMO, p), dict)]
LEAVES = [_at(DEMO, p) for p in PATHS if not isinstance(_at(DEMO, p), (dict, list))]

# Values of every TOML type, with the edges that broke the simulated host before: zero, negative,
# huge and non-finite numbers, words where numbers go, empty and NUL strings, dates.
values = st.one_of(
    st.sampled_from([0, -1, -5, 1, 7, 253, 254, 2**31, 2**32, 2**64, 10**40, 0.0, -0.5, 1e300]),
    st.sampled_from([float("inf"), float("-inf"), float("nan"), True, False, "", "three", "x", "\0", "12.2"]),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.text(max_size=12),
    st.sampled_from(LEAVES),  # a value another key takes
    st.lists(st.one_of(st.integers(-3, 10), st.text(max_size=4), st.sampled_from(LEAVES)), max_size=3),
    st.dictionaries(st.sampled_from(["base", "amplitude", "period", "phase", "x"]), st.floats() | st.integers()),
    st.datetimes(),
    st.dates(),
    st.times(),
)

mutation = st.one_of(
    st.tuples(st.just("delete"), st.sampled_from(PATHS)),
    st.tuples(st.just("set"), st.sampled_from(PATHS), values),
    st.tuples(st.just("duplicate"), st.sampled_from([p for p in PATHS if isinstance(p[-1], int)])),
    st.tuples(st.just("add"), st.sampled_from(TABLE_PATHS), st.text(min_size=1, max_size=10), values),
)


def _mutate(doc, change) -> None:
    kind, path, *rest = change
    try:
        if kind == "add":
            _at(doc, path)[rest[0]] = rest[1]
            return
        parent = _at(doc, path[:-1])
        if kind == "delete":
            del parent[path[-1]]
        elif kind == "set":
            parent[path[-1]] = rest[0]
        else:
            parent.append(copy.deepcopy(parent[path[-1]]))
    except (KeyError, IndexError, TypeError, AttributeError):
        pass  # an earlier change removed or replaced what this one names


class _Unraisable:
    """Exceptions raised inside ctypes callbacks: ctypes cannot raise them to the caller and
    reports them through sys.unraisablehook (the NVML call then answers garbage)."""

    def __enter__(self):
        self.seen: list[str] = []
        self._old = sys.unraisablehook
        sys.unraisablehook = lambda u: self.seen.append(f"{u.exc_type.__name__}: {u.exc_value}")
        return self

    def __exit__(self, *exc):
        sys.unraisablehook = self._old


@pytest.fixture(autouse=True)
def _no_leaked_session():
    yield
    pynvml.nvmlLib = None
    pynvml._nvmlGetFunctionPointer_cache.clear()


def _check_nvml(sc, root: HostRoot) -> list:
    snaps = []
    for t in (0.0, 7.3, 1234.5):
        lib = SimNvmlLibrary(dataclasses.replace(sc, frozen=False), clock=lambda t=t: t)
        with NvmlSession(lambda lib=lib: lib, source="sim:fuzz", root=root) as s:
            snaps.append(s.snapshot())
    for snap in snaps:
        if sc.init_error is not None:
            assert snap.nvml_failure is not None and snap.nvml_failure.code == sc.init_error
            continue
        if sc.missing_functions:
            continue  # playing an older driver: what it lacks is the scenario's choice
        assert snap.nvml_failure is None, snap.nvml_failure
        assert len(snap.gpus) == len(sc.gpus)
        for g, sg in zip(snap.gpus, sc.gpus):
            if sg.lost:
                assert g.error and g.error.startswith("GPU is lost")
                continue
            assert g.error is None, (sg.uuid, g.error)
            if sg.unsupported:
                continue
            assert (g.uuid, g.minor, g.memory_total_mib) == (sg.uuid, sg.minor, sg.memory_total_mib)
            assert g.pci_bus_id == sg.pci_bus_id and g.name == sg.name
            assert 0 <= g.utilization_gpu <= 100 and 0 <= g.utilization_memory <= 100
            assert 0 <= g.memory_used_mib <= g.memory_total_mib
            assert 0 <= g.temperature_c < 1000 and 0 <= g.power_w < 100_000
            assert len(g.processes) == len(sg.processes)
            assert len(g.mig_devices) == (len(sg.mig) if sg.mig_current else 0)
    return snaps[0].gpus


def _check_engine(sc, gpus) -> None:
    state = SimEngineState(sc)
    state.info()
    state.version()
    state.image_list()
    listed = state.list_containers({"all": ["1"]})
    assert len(listed) == len(sc.containers)
    for c in sc.containers:
        ins = state.find(c.id).inspect()
        claims_from_inspect(ins, gpus, ("nvidia",), state.engine.default_runtime)
        state.image_inspect(c.image)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(st.lists(mutation, min_size=1, max_size=3))
def test_a_mutated_demo_is_refused_with_its_place_or_runs(tmp_path, changes):
    doc = copy.deepcopy(DEMO)
    for change in changes:
        _mutate(doc, change)
    with _Unraisable() as unraisable:
        try:
            sc = parse_scenario(doc, SOURCE)
        except ScenarioError as e:
            assert str(e).startswith(f"{SOURCE}: "), str(e)
            assert "Traceback" not in str(e) and len(str(e)) < 1000
            return
        gpus = _check_nvml(sc, HostRoot(tmp_path))  # an empty /proc: commands come from NVML
        _check_engine(sc, gpus)
    assert unraisable.seen == []


def test_the_fuzzer_reaches_every_table():
    """The mutations can name every part of the demo: GPUs, processes, MIG, driver, [host],
    [docker], images, containers and their devices."""
    heads = {p[0] for p in PATHS}
    assert heads >= {"name", "driver", "gpu", "host", "docker", "image", "container"}
    assert any(p[:1] == ("gpu",) and "process" in p for p in PATHS)
    assert any(p[:1] == ("gpu",) and "mig" in p for p in PATHS)
    assert any(p[:1] == ("container",) and "devices" in p for p in PATHS)
