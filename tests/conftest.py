"""Shared test set-up: the private Docker engine, fake NVIDIA device nodes, and the CI skip guard.

Fixtures
- `docker_engine` (session): a running `helpers.engine.Engine` — `.base_url`, `.socket`, `.client`
  (docker.DockerClient, the same object across restarts), `.image` ("gpudock-test/busybox:latest",
  stop signal SIGKILL), `.dev_dir`, `.workdir`, `.hook_config`, `.hook_log`, `.daemon_json`, `.log`,
  `.running()`, `.stop()`, `.restart()`, `.make_image(tag, env=, labels=, instructions=)`.
  If the engine cannot start the test FAILS (never skips) with the reason.
- `engine` (function): the same engine, made sure to be running; after the test every container
  created during the test is removed, a stopped engine is started again, and `hook_config` is
  restored, and so is `daemon_json` (dockerd's --config-file); a test may rewrite them, e.g. to
  turn the hook's debug log on.
- `cdi_docker_engine` (session): a running `helpers.engine.CdiEngine` — Debian 13's dockerd 26 with
  CDI on (`"features": {"cdi": true}`, `"cdi-spec-dirs": [.cdi_dir]`), beside the 20.10 one, with
  the same attributes plus `.cdi_dir` and `.server_version`; its `dev_dir` is `fake_nvidia_devs`.
  If it cannot start the test FAILS (never skips) with the reason.
- `cdi_engine` (function): that engine, running; afterwards the containers created during the test
  are removed, `cdi_dir` gets back the files it had (specs a test wrote are deleted), and
  `daemon_json` and `hook_config` are restored as for `engine`.
- `fake_nvidia_devs` (session): a directory with char device nodes nvidiactl (195:255),
  nvidia-modeset (195:254), nvidia0..nvidia7 (195:N), nvidia-uvm (511:0), nvidia-uvm-tools (511:1);
  it is also `docker_engine.dev_dir`.

Tests using `docker_engine`, `engine`, `cdi_docker_engine` or `cdi_engine` get the `docker` marker
(`-m "not docker"` to leave them out).

A test that runs over GPUDOCK_TEST_TIMEOUT seconds (default 300, 0: off) fails instead of hanging
the run.

With CI=true (as .ci/run sets it) a skipped test — at collection or run time — is reported as a
failure: in CI nothing may be skipped.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import traceback
from pathlib import Path

import pytest

_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from helpers.engine import CdiEngine, Engine, EngineError, make_nvidia_dev_nodes  # noqa: E402

pytest_plugins = ["pytester"]


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


# --------------------------------------------------------------------------- CI: no skips


def _skip_reason(longrepr) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if _in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (CI=true), which counts as a failure: {_skip_reason(report.longrepr)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if _in_ci() and report.skipped:
        report.outcome = "failed"
        report.longrepr = (
            f"{collector.nodeid or collector.name}: skipped at collection in CI (CI=true), "
            f"which counts as a failure: {_skip_reason(report.longrepr)}"
        )


def pytest_collection_modifyitems(config, items):
    for item in items:
        if {"docker_engine", "engine", "cdi_docker_engine", "cdi_engine"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.docker)


# --------------------------------------------------------------------------- a hung test fails

_TEST_TIMEOUT = float(os.environ.get("GPUDOCK_TEST_TIMEOUT", "300"))


class HungTest(Exception):
    """A test ran over GPUDOCK_TEST_TIMEOUT seconds (setup, call and teardown together)."""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Fail, rather than hang the whole run, a test that takes over GPUDOCK_TEST_TIMEOUT seconds
    (default 300; 0 turns this off). SIGALRM in the main thread: it also breaks an event loop
    that waits for ever. Other threads' stacks are in the failure's message."""
    if (
        _TEST_TIMEOUT <= 0
        or not hasattr(signal, "SIGALRM")
        or threading.current_thread() is not threading.main_thread()
    ):
        yield
        return

    def on_alarm(signum, frame):
        names = {t.ident: t.name for t in threading.enumerate()}
        stacks = []
        for ident, f in sys._current_frames().items():
            if ident != threading.get_ident():
                stacks.append(f"--- thread {names.get(ident, ident)}:\n" + "".join(traceback.format_stack(f)))
        raise HungTest(
            f"{item.nodeid} ran over {_TEST_TIMEOUT:.0f} s (GPUDOCK_TEST_TIMEOUT); the main thread's stack is "
            "the traceback below" + ("; other threads:\n" + "\n".join(stacks) if stacks else "")
        )

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, _TEST_TIMEOUT)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def fake_nvidia_devs(tmp_path_factory) -> Path:
    """A directory of fake NVIDIA character device nodes (see helpers.engine.NVIDIA_DEV_NODES)."""
    try:
        return make_nvidia_dev_nodes(tmp_path_factory.mktemp("nvidia-dev"))
    except EngineError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def docker_engine(fake_nvidia_devs):
    """The session's private Docker engine (helpers.engine.Engine), started once."""
    try:
        eng = Engine.start(dev_dir=fake_nvidia_devs)
    except EngineError as e:
        where = " (CI=true)" if _in_ci() else ""
        pytest.fail(
            f"private Docker engine unavailable{where}: {e}\nRun the tests with ./scripts/test, "
            "which installs docker.io and busybox-static.",
            pytrace=False,
        )
    try:
        yield eng
    finally:
        eng.close()


def _container_ids(eng: Engine) -> set[str]:
    return {c["Id"] for c in eng.client.api.containers(all=True, quiet=True)}


@pytest.fixture
def engine(docker_engine):
    """The session engine, running; afterwards the containers created during the test are removed
    and the stand-in hook's config.toml (engine.hook_config) and dockerd's --config-file
    (engine.daemon_json) are put back as they were."""
    if not docker_engine.running():
        docker_engine.restart()
    before = _container_ids(docker_engine)
    kept = {p: p.read_bytes() for p in (docker_engine.hook_config, docker_engine.daemon_json)}
    yield docker_engine
    for path, data in kept.items():
        try:
            now = None if path.is_symlink() else path.read_bytes()
        except OSError:
            now = None
        if now != data:
            path.unlink(missing_ok=True)
            path.write_bytes(data)
            if path == docker_engine.daemon_json and docker_engine.running():
                docker_engine.stop()  # it may have been started with the test's daemon.json
    if not docker_engine.running():
        docker_engine.restart()
    for cid in _container_ids(docker_engine) - before:
        try:
            docker_engine.client.api.remove_container(cid, force=True, v=True)
        except Exception:
            pass


@pytest.fixture(scope="session")
def cdi_docker_engine(fake_nvidia_devs):
    """The session's private Docker 26 engine with CDI on (helpers.engine.CdiEngine), started once."""
    try:
        eng = CdiEngine.start(dev_dir=fake_nvidia_devs)
    except EngineError as e:
        where = " (CI=true)" if _in_ci() else ""
        pytest.fail(f"private Docker 26 (CDI) engine unavailable{where}: {e}", pytrace=False)
    try:
        yield eng
    finally:
        eng.close()


def _dir_files(d: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in d.iterdir() if p.is_file() and not p.is_symlink()}


@pytest.fixture
def cdi_engine(cdi_docker_engine):
    """The CDI engine, running; afterwards its containers made during the test are removed, its
    cdi_dir holds the files it held before, and daemon_json and hook_config are put back."""
    eng = cdi_docker_engine
    if not eng.running():
        eng.restart()
    before = _container_ids(eng)
    kept = {p: p.read_bytes() for p in (eng.hook_config, eng.daemon_json)}
    specs = _dir_files(eng.cdi_dir)
    yield eng
    # containers first: one the test left running may hold files of the specs
    if eng.running():
        for cid in _container_ids(eng) - before:
            try:
                eng.client.api.remove_container(cid, force=True, v=True)
            except Exception:
                pass
    for p in set(eng.cdi_dir.iterdir()) - set(specs):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    for p, data in specs.items():
        if not p.is_file() or p.read_bytes() != data:
            p.unlink(missing_ok=True)
            p.write_bytes(data)
    for path, data in kept.items():
        try:
            now = None if path.is_symlink() else path.read_bytes()
        except OSError:
            now = None
        if now != data:
            path.unlink(missing_ok=True)
            path.write_bytes(data)
            if path == eng.daemon_json and eng.running():
                eng.stop()  # it may have been started with the test's daemon.json
    if not eng.running():
        eng.restart()
        for cid in _container_ids(eng) - before:
            try:
                eng.client.api.remove_container(cid, force=True, v=True)
            except Exception:
                pass
