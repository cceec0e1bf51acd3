"""The seam between gpudock's faces (the CLI, the dashboard, the exporter) and the host they show.

This module owns two things and is the only place that decides them:

* :class:`Options` — the host options, parsed once from the command line into a frozen object
  (``--demo``, ``--sim NAME|FILE``, ``--root DIR``, ``--nvml-lib FILE``, ``--docker-host URL``,
  ``--no-docker``, ``--readonly`` (or ``GPUDOCK_READONLY=1``), the dashboard's ``--refresh`` and
  ``--no-demo``, the toolkit's ``--config`` and ``--daemon-json``). Contradictions are refused
  here, with what to do.
* :class:`HostSession` — the host those options name, real or simulated, and everything a
  command or a screen talks to: the NVML session, the simulated host when there is one
  (:class:`gpudock.sim.host.SimHost`: its files, its engine, its NVML library), the Docker engine
  (one address, one watcher, and clients made the same way for every caller), the host root for
  files (:class:`gpudock.host.root.HostRoot`), the environment the toolkit's config lookup reads,
  and ``close()``.

Changes to the host go through the session too, so that it can refuse them itself: container
actions (:meth:`HostSession.container_action`, :meth:`HostSession.shell_argv`), signals to GPU
processes (:meth:`HostSession.signal_process`: never to this machine's processes from a simulated
host), and, in a read-only session (``--readonly``), every change: the session's Docker clients
refuse any request that would change the engine, and :meth:`HostSession.refuse_if_readonly` is
what the launch form, the toolkit's edits and the commands call first.

On a simulated host every probe above the three boundaries (the NVML library, the Engine API
socket, the files under the root) is the code that runs on a real one: the session only chooses
what sits at the boundaries. Nothing else in gpudock builds a Docker client or chooses between
real and simulated.

No Textual here: the CLI, the TUI and the tests all use it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gpudock.host.docker import DockerStatus, DockerWatcher, host_node_reader, remote_node_reader
from gpudock.host.holders import HoldersMap, build_holders
from gpudock.host.nvml import NvmlSession, system_loader
from gpudock.host.root import HostRoot
from gpudock.model import HostSnapshot

log = logging.getLogger(__name__)

__all__ = [
    "Options",
    "HostSession",
    "SessionError",
    "ReadOnlyError",
    "readonly_message",
    "open_session",
    "open_scenario",
    "builtin_scenarios",
    "DOCKER_SOCKET",
]

DOCKER_SOCKET = "/var/run/docker.sock"
NVML_NOT_FOUND = 12  # NVML_ERROR_LIBRARY_NOT_FOUND: no driver on this machine at all
DEMO_BANNER = (
    "No NVIDIA driver on this machine (libnvidia-ml.so.1 not found): showing the built-in simulated "
    "host. Use --no-demo to see the error instead."
)


class SessionError(Exception):
    """The options name a host that cannot be opened; the message says why and what to do."""


class ReadOnlyError(SessionError):
    """A change was asked of a read-only session (``--readonly``): nothing was changed."""


READONLY_ENV = "GPUDOCK_READONLY"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def readonly_from_env(environ: Mapping[str, str]) -> bool:
    """``GPUDOCK_READONLY``: 1/true/yes/on, or 0/false/no/off/empty; anything else is refused."""
    value = environ.get(READONLY_ENV)
    if value is None:
        return False
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise SessionError(f"{READONLY_ENV}={value!r}: set it to 1 for a read-only session, or 0 (or unset it)")


@dataclass(frozen=True)
class Options:
    """How gpudock was asked to reach its host, parsed once (see :meth:`from_namespace`)."""

    demo: bool = False
    sim: str | None = None  # a built-in scenario's name or a scenario file
    root: str = "/"
    nvml_lib: str | None = None
    docker_host: str | None = None
    no_docker: bool = False
    # nothing that changes the host: no launch, no toolkit edits, no container or process actions
    readonly: bool = False
    readonly_from: str = "--readonly"  # how it was asked, for the messages (or GPUDOCK_READONLY=1)
    # the dashboard
    refresh: float = 1.0
    no_demo: bool = False
    # the toolkit's files, when not where the toolkit looks for them
    config: str | None = None
    daemon_json: str | None = None

    @classmethod
    def from_namespace(cls, ns: Any, environ: Mapping[str, str] | None = None) -> Options:
        """The options from an argparse namespace (each command has only some of them), and
        ``GPUDOCK_READONLY`` from ``environ`` (default: ours)."""
        names = cls.__dataclass_fields__
        values = {n: getattr(ns, n) for n in names if getattr(ns, n, None) is not None}
        if not values.get("readonly") and readonly_from_env(os.environ if environ is None else environ):
            values["readonly"], values["readonly_from"] = True, f"{READONLY_ENV}=1"
        opts = cls(**values)
        opts.check()
        return opts

    @property
    def simulated(self) -> bool:
        return self.demo or self.sim is not None

    def check(self) -> None:
        """Refuse what cannot be meant: one host at a time, and a simulated host brings its own."""
        if self.demo and self.sim is not None:
            raise SessionError("--demo and --sim name two simulated hosts: give one (--demo is --sim demo)")
        if self.simulated:
            which = "--demo" if self.demo else f"--sim {self.sim}"
            # --docker-host stays allowed: an explicit engine in place of the simulated one (its
            # containers against simulated GPUs); DOCKER_HOST in the environment never reaches in.
            for flag, given in (
                ("--root", self.root not in ("", "/")),
                ("--nvml-lib", self.nvml_lib is not None),
            ):
                if given:
                    raise SessionError(
                        f"{which} is a whole simulated host (its GPUs, its engine and its files); {flag} names "
                        f"part of a real one: leave out {flag}, or leave out {which}"
                    )
        if self.refresh <= 0:
            raise SessionError(f"--refresh {self.refresh}: the refresh period must be a positive number of seconds")

    @property
    def scenario_name(self) -> str | None:
        return "demo" if self.demo else self.sim


@dataclass
class HostSession:
    """One host, opened by :func:`open_session`; ``close()`` (or ``with``) releases it."""

    options: Options
    root: HostRoot
    nvml: NvmlSession
    docker_url: str | None  # None: --no-docker
    sim: Any = None  # gpudock.sim.host.SimHost when simulated
    scenario: Any = None  # gpudock.sim.scenario.Scenario when simulated
    banner: str | None = None  # why this host is shown (the fallback to the demo)
    nvml_library: str | None = None  # the libnvidia-ml loaded, when not the loader's choice
    proc_root_override: str | None = None  # see open_scenario
    _watcher: DockerWatcher | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _closed: bool = False

    # -- what the host is --------------------------------------------------------------------

    @property
    def simulated(self) -> bool:
        return self.sim is not None

    @property
    def source(self) -> str:
        return self.nvml.source

    @property
    def hostname(self) -> str:
        if self.scenario is not None:
            return self.scenario.hostname
        text = None
        if not self.root.is_live:
            try:
                text = self.root.read_text("/etc/hostname", 256)
            except OSError:
                text = None
        return (text or "").strip() or socket.gethostname()

    @property
    def environ(self) -> Mapping[str, str]:
        """The environment the toolkit's config lookup reads: ours on a real host; none on a
        simulated one, whose files are all its own."""
        return {} if self.simulated else os.environ

    @property
    def proc_root(self) -> str:
        """Where the host's /proc is on this machine (GPU processes -> containers)."""
        return self.proc_root_override or self.root.path("/proc")

    @property
    def readonly(self) -> bool:
        return self.options.readonly

    def refuse_if_readonly(self, what: str) -> None:
        """Raise :class:`ReadOnlyError` when this session may not change the host; ``what``: the
        change, as the message names it ("stopping train-a")."""
        if self.options.readonly:
            raise ReadOnlyError(readonly_message(self.options, what))

    @property
    def root_label(self) -> str | None:
        """What to call the root in headers: None for this machine itself."""
        if self.simulated:
            return f"simulated host {self.scenario.name}"
        return None if self.root.is_live else f"root {self.root.root}"

    # -- NVML ------------------------------------------------------------------------------------

    def snapshot(self) -> HostSnapshot:
        """The GPUs now; each GPU process with its start time from the host's /proc (how a signal
        later tells it from a process that got its PID since)."""
        snap = self.nvml.snapshot()
        if not any(g.processes for g in snap.gpus):
            return snap
        from gpudock.host.signals import read_start_time

        starts: dict[int, int | None] = {}

        def started(pid: int) -> int | None:
            if pid not in starts:
                starts[pid] = read_start_time(pid, self.proc_root)
            return starts[pid]

        gpus = tuple(
            dataclasses.replace(
                g, processes=tuple(dataclasses.replace(p, start_time=started(p.pid)) for p in g.processes)
            )
            if g.processes
            else g
            for g in snap.gpus
        )
        return dataclasses.replace(snap, gpus=gpus)

    # -- the Docker engine -----------------------------------------------------------------------

    def docker_client(self, timeout: float = 10.0, base_url: str | None = None):
        """A docker SDK client for this host's engine (raises docker.errors.DockerException; the
        caller says what failed). The same engine for every caller: the watcher's; ``base_url``
        only where the operator named another in the same breath (nvidia-docker's ``-H``)."""
        import docker

        url = base_url or self.docker_url
        if url is None:
            raise SessionError("the Docker engine is off for this run (--no-docker)")
        if self.options.readonly:
            return _read_only_client(self.options, base_url=url, version="auto", timeout=timeout)
        return docker.DockerClient(base_url=url, version="auto", timeout=timeout)

    def reachable_docker_client(self, timeout: float = 10.0):
        """A client that answered a ping, or None (the caller reports the engine unreachable)."""
        if self.docker_url is None:
            return None
        try:
            client = self.docker_client(timeout)
            client.api.ping()
            return client
        except Exception as e:  # noqa: BLE001 - unreachable, forbidden, not an engine: all "no engine"
            log.info("Docker engine at %s not reachable: %s", self.docker_url, e)
            return None

    def _client_or_why(self, timeout: float = 10.0):
        """(a client that answered a ping, None) or (None, why not in an operator's words)."""
        if self.docker_url is None:
            return None, "no Docker engine to ask"
        client = None
        try:
            client = self.docker_client(timeout)
            client.api.ping()
            return client, None
        except Exception as e:  # noqa: BLE001 - said in words
            log.info("Docker engine at %s not reachable: %s", self.docker_url, e)
            if client is not None:
                client.close()
            return None, self.explain_engine_error(e)

    def docker_info(self, timeout: float = 3.0) -> tuple[dict | None, str | None]:
        """``docker info`` of this host's engine, or (None, what went wrong in an operator's words)."""
        from gpudock.host.docker import explain_connect_error

        if self.docker_url is None:
            return None, "not asked (--no-docker)"
        client = None
        try:
            client = self.docker_client(timeout)
            return client.info(), None
        except Exception as e:  # noqa: BLE001 - said in words, never raised
            return None, explain_connect_error(e, self.docker_url)
        finally:
            if client is not None:
                client.close()

    def explain_engine_error(self, exc: BaseException) -> str:
        """What an engine error means, in an operator's words: the engine's own explanation of a
        refusal, or why it cannot be reached and what to do (never docker-py's exception text)."""
        import docker

        from gpudock.host.docker import explain_connect_error

        if isinstance(exc, ReadOnlyError):
            return str(exc)
        if isinstance(exc, docker.errors.APIError):
            return f"the Docker engine refused: {exc.explanation or exc}"
        return explain_connect_error(exc, self.docker_url or "the Docker engine")

    def watcher(self) -> DockerWatcher:
        """The one cache of this host's containers (not started: :meth:`start_watching` runs its
        event thread; :meth:`read_containers` builds it once, synchronously)."""
        with self._lock:
            if self._watcher is None:
                # Retry a lost engine at most every 5 s: a banner should go soon after it is back.
                self._watcher = DockerWatcher(
                    self.docker_url or _NO_ENGINE, backoff=(0.5, 5.0), read_node=self._device_node_reader()
                )
            return self._watcher

    def _device_node_reader(self):
        """How the watcher reads a container's ``--device`` host nodes: on the engine's host. That is
        this host's root for its own engine (the simulated host's device table, a --root copy, the
        live host); this machine for an engine given in place of a simulated one; nowhere for an
        engine reached over the network."""
        url = self.docker_url or _NO_ENGINE
        if not url.startswith(("unix://", "http+unix://")):
            return remote_node_reader(url)
        if self.simulated and url != f"unix://{self.sim.files.docker_socket}":
            return host_node_reader(HostRoot("/"))
        return host_node_reader(self.root)

    def start_watching(self) -> DockerWatcher:
        w = self.watcher()
        if self.docker_url is not None:
            w.start()
        return w

    def holders(self, snapshot: HostSnapshot, *, all: bool = False) -> HoldersMap:
        """Join a snapshot with the engine's containers and the GPU processes' /proc entries. With
        the watcher running (:meth:`start_watching`) this costs only what changed; otherwise the
        engine is read once, now."""
        w = self.watcher()
        if not w.running:
            w.connect()
        return self._join(w, snapshot, all)

    def _join(self, w: DockerWatcher, snapshot: HostSnapshot, all: bool) -> HoldersMap:
        # The exact tuple the watcher returns: build_holders caches its container-side work on it.
        containers = w.snapshot(snapshot.gpus, all=all)
        return build_holders(snapshot, containers, proc_root=self.proc_root, docker_status=w.status)

    def poll(self, *, all: bool = False) -> tuple[HostSnapshot, HoldersMap | None]:
        """One refresh: the GPUs and who holds them, from the running watcher
        (:meth:`start_watching`; until it has connected, its status says "connecting"). What the
        dashboard and the exporter repeat."""
        snap = self.snapshot()
        if self.docker_url is None:
            return snap, None
        try:
            return snap, self._join(self.watcher(), snap, all)
        except Exception:  # noqa: BLE001 - the GPU view must keep working whatever the join does
            log.exception("holders join failed")
            return snap, None

    @property
    def docker_status(self) -> DockerStatus | None:
        return self._watcher.status if self._watcher is not None else None

    def run_nvml_program(self, argv: list[str]) -> int:
        """``sim-exec``: run a Python program that uses nvidia-ml-py (nvitop, gpustat, a script) in
        this process, with this simulated host's NVML library bound under pynvml; its exit status."""
        if not self.simulated:
            raise SessionError("only a simulated host's library can be bound for another program (--demo, --sim)")
        from gpudock.sim import exec as sim_exec

        try:
            return sim_exec.run(self.scenario, argv)
        except sim_exec.ProgramError as e:
            raise SessionError(str(e)) from None

    # -- acting on containers and processes (every change checked here) ------------------------

    def container_action(self, ref: str, action: str, *, expect_id: str | None = None, force: bool = False, **kw):
        """Stop, restart or remove a container (:func:`gpudock.launch.lifecycle.act`): the id shown
        (``expect_id``) or, from the CLI, a name. Raises ReadOnlyError, or lifecycle.ActionError
        (ContainerGone) in operator words."""
        from gpudock.launch import lifecycle

        doing = lifecycle.ACTIONS[action][2] if action in lifecycle.ACTIONS else action
        self.refuse_if_readonly(f"{doing} container {kw.get('shown_as') or ref}")
        client = self._action_client()
        try:
            return lifecycle.act(client, ref, action, expect_id=expect_id, force=force, **kw)
        finally:
            client.close()

    def container_logs(self, ref: str, *, tail: int = 500, follow: bool = True):
        """A :class:`gpudock.launch.lifecycle.LogStream` of a container's output (reading only:
        allowed in a read-only session). Its client closes with it."""
        from gpudock.launch import lifecycle

        client = self._action_client(timeout=None)
        try:
            return lifecycle.LogStream(lifecycle.find(client, ref), tail=tail, follow=follow, on_close=client.close)
        except BaseException:
            client.close()
            raise

    def shell_argv(self, ref: str, *, expect_id: str | None = None, shown_as: str | None = None) -> list[str]:
        """The ``docker exec -it CONTAINER sh`` command line for a shell in a running container of
        this host's engine, after the checks: not read-only, not the simulated engine's (nothing
        runs in its containers), the container there and running, sh in its image (started once,
        ``sh -c 'exit 0'``, so that a missing one is the engine's words, not a dead terminal)."""
        from gpudock.launch import lifecycle

        who = shown_as or ref
        self.refuse_if_readonly(f"opening a shell in {who}")
        if self.simulated and self.docker_url == f"unix://{self.sim.files.docker_socket}":
            raise lifecycle.ActionError(
                f"{who} is a container of the simulated host {self.scenario.name}: nothing runs in it, so there "
                "is no shell to open (a real engine: --docker-host URL)"
            )
        client = self._action_client()
        try:
            c = lifecycle.find(client, ref, expect_id=expect_id, shown_as=shown_as)
            if c.status != "running":
                raise lifecycle.ActionError(f"{c.name} is {c.status}, not running: a shell needs a running container")
            argv = lifecycle.shell_argv(self.docker_url, c.id)  # the docker CLI is there
            lifecycle.probe_shell(client, c)  # and so is sh in the image
            return argv
        finally:
            client.close()

    def _action_client(self, timeout: float | None = 30.0):
        from gpudock.launch.lifecycle import ActionError

        try:
            return self.docker_client(timeout)
        except SessionError as e:
            raise ActionError(str(e)) from None

    def process_start_time(self, pid: int) -> int | None:
        """``pid``'s start time from the host's /proc (see :mod:`gpudock.host.signals`)."""
        from gpudock.host.signals import read_start_time

        return read_start_time(pid, self.proc_root)

    def signal_process(self, pid: int, sig, expected_start: int | None, *, what: str = ""):
        """Send SIGTERM or SIGKILL to a host process the operator was shown (its start time then:
        ``expected_start``). Refused (:class:`gpudock.host.signals.SignalRefused`, or ReadOnlyError)
        in a read-only session, on a simulated host whose processes are its own (they are not this
        machine's: nothing is sent, and nothing is simulated either — the scenario's processes are
        its own data), and for a PID that exited or was reused since."""
        from gpudock.host import signals

        sig = signals.parse_signal(sig.name if hasattr(sig, "name") else sig)
        self.refuse_if_readonly(f"sending {sig.name} to PID {pid}")
        if self.simulated and self.proc_root_override is None:
            raise signals.SignalRefused(
                f"PID {pid} is a process of the simulated host {self.scenario.name}, not of this machine: no signal "
                "is sent (a simulated host never signals this machine's processes, and its own are made up)"
            )
        return signals.send_signal(pid, sig, expected_start, proc_root=self.proc_root, what=what)

    # -- the doctor ------------------------------------------------------------------------------

    def diagnose(self):
        """(facts, findings) for this host: its root, its NVML session, its engine."""
        from gpudock.doctor import diagnose

        client, why = (None, None) if self.options.no_docker else self._client_or_why()
        try:
            return diagnose(
                self.root,
                self.nvml,
                client,
                use_docker=not self.options.no_docker,
                nvml_library=self.nvml_library,
                environ=self.environ,
                docker_unreachable=why,
            )
        finally:
            if client is not None:
                client.close()

    # -- lifetime --------------------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._watcher is not None:
            self._watcher.stop()
        self.nvml.shutdown()
        if self.sim is not None:
            self.sim.close()

    def __enter__(self) -> HostSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def readonly_message(options: Options, what: str) -> str:
    return (
        f"this is a read-only session ({options.readonly_from}): {what} would change the host, and is turned off; "
        f"start gpudock without {options.readonly_from.split('=')[0]} to do it"
    )


def _read_only_client(options: Options, **kwargs):
    """A docker SDK client that sends only requests that read (GET, HEAD): any POST, PUT or DELETE
    (create, start, stop, kill, remove, exec, volume create...) raises ReadOnlyError unsent."""
    import docker

    class ReadOnlyAPIClient(docker.APIClient):
        def _refuse(self, method: str, url: str):
            path = re.sub(r"^[a-z+]+://[^/]*(/v[0-9.]+)?", "", url)
            raise ReadOnlyError(readonly_message(options, f"the Docker request {method} {path}"))

        def _post(self, url, **kw):
            self._refuse("POST", url)

        def _put(self, url, **kw):
            self._refuse("PUT", url)

        def _delete(self, url, **kw):
            self._refuse("DELETE", url)

    client = docker.DockerClient.__new__(docker.DockerClient)
    client.api = ReadOnlyAPIClient(**kwargs)
    return client


# A URL that never answers, for a watcher that must exist but has no engine (--no-docker).
_NO_ENGINE = "unix:///nonexistent/gpudock-no-docker.sock"


def _engine_url(options: Options, root: HostRoot) -> str | None:
    """The engine of the host: --docker-host; on a copy of a host (--root) the socket under it,
    as a container with the host at /host sees the host's engine; else DOCKER_HOST or the default
    socket."""
    if options.no_docker:
        return None
    if options.docker_host:
        return options.docker_host
    if not root.is_live:
        return f"unix://{root.real(DOCKER_SOCKET)}"
    return os.environ.get("DOCKER_HOST") or f"unix://{DOCKER_SOCKET}"


def _root_library(root: HostRoot) -> tuple[Any, str | None]:
    """(loader, host path) for the libnvidia-ml.so.1 that a copy of a host's own ld.so.cache
    resolves: a copy is examined with its own library. Loading a library runs its constructors:
    only the root's own, as its loader would pick it."""
    from gpudock.doctor import libview

    pick = None
    try:
        pick = libview.pick_in(libview.scan(root), "libnvidia-ml.so.1")
    except Exception as e:  # noqa: BLE001 - an unreadable cache means "no library"; the doctor says why
        log.info("no libnvidia-ml.so.1 under %s: %s", root.root, e)
    if pick is None or pick.dangling or not pick.resolved:

        def missing():
            raise OSError(f"no libnvidia-ml.so.1 in {root.root}/etc/ld.so.cache")

        return missing, None
    return system_loader(root.real(pick.resolved)), pick.resolved


def open_session(options: Options, *, fallback_to_demo: bool = False) -> HostSession:
    """Open the host ``options`` name. ``fallback_to_demo`` (the dashboard only; the CLI never
    simulates silently): where this machine has no NVIDIA driver at all, open the built-in
    simulated host instead, with a banner that says so (unless ``--no-demo``)."""
    options.check()
    if options.simulated:
        return _open_simulated(options, options.scenario_name)
    root = HostRoot(options.root or "/")
    if not root.is_dir("/"):
        raise SessionError(f"--root {options.root}: not a directory")
    library = None
    if options.nvml_lib:
        loader = system_loader(options.nvml_lib)
        library = options.nvml_lib
    elif not root.is_live:
        loader, library = _root_library(root)
    else:
        loader = None
    nvml = NvmlSession(loader, source="nvml", root=root)
    if fallback_to_demo and not options.no_demo:
        failure = nvml.start()
        if failure is not None and failure.code == NVML_NOT_FOUND:
            nvml.shutdown()
            session = _open_simulated(options, "demo")
            session.banner = DEMO_BANNER
            return session
    return HostSession(options, root, nvml, _engine_url(options, root), nvml_library=library)


def _open_simulated(options: Options, name: str) -> HostSession:
    from gpudock.sim.scenario import ScenarioError, resolve_scenario

    try:
        scenario = resolve_scenario(name)
    except ScenarioError as e:
        raise SessionError(str(e)) from None
    return open_scenario(scenario, options)


def open_scenario(
    scenario: Any, options: Options | None = None, *, docker_url: str | None = None, proc_root: str | None = None
) -> HostSession:
    """A session on a simulated host for ``scenario`` (a :class:`gpudock.sim.scenario.Scenario`,
    e.g. one a test builds in code). For tests that put a real engine under simulated GPUs:
    ``docker_url`` in place of the scenario's engine, and ``proc_root`` (that engine's host's
    /proc) in place of the simulated /proc for mapping GPU processes to containers."""
    from gpudock.sim.host import SimHost

    options = options or Options(sim=scenario.name)
    sim = SimHost(scenario).start()
    try:
        nvml = NvmlSession(sim.library_loader(), source=f"sim:{scenario.name}", root=sim.root)
        # Without [docker] the simulated host runs no engine: its socket is absent, as on a real one.
        own = sim.docker_base_url or f"unix://{sim.files.docker_socket}"
        url = docker_url or options.docker_host or (None if options.no_docker else own)
        return HostSession(options, sim.root, nvml, url, sim=sim, scenario=scenario, proc_root_override=proc_root)
    except BaseException:
        sim.close()
        raise


def builtin_scenarios() -> list[tuple[str, str]]:
    """(name, description) of every built-in simulated host, for ``--sim NAME``."""
    from gpudock.sim.scenario import builtin_names, builtin_scenario

    return [(n, builtin_scenario(n).description) for n in builtin_names()]
