"""The Docker side of "which container holds each GPU": a cache of containers' GPU claims.

This module owns talking to the Docker engine (``docker`` SDK): connecting (``DOCKER_HOST`` or a
given ``base_url``), telling the operator what to do when it cannot (no engine, no permission on
the socket), listing and inspecting containers, and keeping a cache of every container's GPU
requests current from the engine's event stream, so that a steady refresh costs nothing but a
dictionary lookup. The claim rules themselves live in :mod:`gpudock.host.claims`.

Use::

    w = DockerWatcher()            # or DockerWatcher("unix:///run/user/1000/docker.sock")
    w.start()                      # background thread: connect, build the cache, follow events
    ...
    containers = w.snapshot(host_snapshot.gpus)              # running containers
    everything = w.snapshot(host_snapshot.gpus, all=True)    # created/exited too
    w.status                       # DockerStatus: "connecting" | "ok" | "unavailable" + message
    w.stop()

or, for a one-shot command, ``w.connect()`` (synchronous cold build, no thread) then
``w.snapshot(gpus)``.

Faults never reach the caller as exceptions: ``status.state == "unavailable"`` with a message
that says what to do, ``snapshot`` returns ``()``, and the background thread reconnects with an
exponential backoff and rebuilds the cache when the engine comes back. A container that
disappears between list and inspect is dropped.

A hung engine (dockerd stopped, deadlocked) closes nothing: the event stream just goes quiet, and
quiet is also what an idle engine sounds like. So while the event thread runs, a heartbeat pings
the engine every ``heartbeat`` seconds; when a request (a ping, an inspect, a cold build's list)
has waited longer than ``stale_after`` seconds without an answer, the status says so:
``stale_since`` is when the first unanswered request was sent, ``message`` says the engine is not
answering, and the cache is kept as the last known picture, marked stale, until the engine
answers again (any answer, an event included, clears it).

Which engine runtimes are NVIDIA's: those whose path is an ``nvidia-container-runtime`` (from
``docker info`` ``Runtimes``), plus the runtime *named* ``nvidia`` (the name ``nvidia-ctk runtime
configure`` and nvidia-docker2 register; the test engine registers runc under it).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from gpudock.host.claims import (
    GpuIndex,
    GpuRequest,
    NodeReader,
    gpu_key,
    nvidia_runtimes,
    parse_requests,
    resolve_requests,
)
from gpudock.host.root import HostRoot
from gpudock.model import Container, Gpu, HostSnapshot

log = logging.getLogger(__name__)

__all__ = [
    "DockerStatus",
    "DockerWatcher",
    "explain_connect_error",
    "default_base_url",
    "host_node_reader",
    "remote_node_reader",
]

DEFAULT_SOCKET = "/var/run/docker.sock"

# Event actions after which a container's inspect may have changed. exec_*, health_status, top,
# attach, resize, copy ... do not change what it holds or its state.
_REINSPECT = frozenset({"create", "start", "restart", "die", "stop", "pause", "unpause", "rename", "update", "oom"})
_GONE = frozenset({"destroy", "remove"})
# What `docker ps` lists without -a: the containers that hold their devices now.
_ACTIVE = frozenset({"running", "paused", "restarting"})

DockerState = Literal["connecting", "ok", "unavailable"]


@dataclass(frozen=True, slots=True)
class DockerStatus:
    """Where gpudock stands with the Docker engine. ``message`` says what is wrong and what to do
    (None when all is well)."""

    state: DockerState
    base_url: str
    message: str | None = None
    engine_version: str | None = None
    default_runtime: str | None = None
    nvidia_runtimes: tuple[str, ...] = ()
    containers: int = 0  # containers in the cache (all states)
    since: float = field(default=0.0, compare=False)  # time.time() of the last state change
    # time.time() since when the engine has not answered (a request waits past the deadline):
    # the containers are the last known ones. None while it answers.
    stale_since: float | None = None

    @property
    def ok(self) -> bool:
        return self.state == "ok"

    @property
    def stale(self) -> bool:
        return self.stale_since is not None

    def to_json(self) -> dict:
        return {
            "state": self.state,
            "base_url": self.base_url,
            "message": self.message,
            "engine_version": self.engine_version,
            "default_runtime": self.default_runtime,
            "nvidia_runtimes": list(self.nvidia_runtimes),
            "containers": self.containers,
            "stale_since": self.stale_since,
        }


def default_base_url() -> str:
    return os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"


def _socket_path(base_url: str) -> str | None:
    for pre in ("unix://", "http+unix://"):
        if base_url.startswith(pre):
            return base_url[len(pre) :] or DEFAULT_SOCKET
    return None


def _chain(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        e = todo.pop()
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo.extend([e.__cause__, e.__context__, getattr(e, "reason", None), *getattr(e, "args", ())])


def explain_connect_error(exc: BaseException | None, base_url: str, timeout: float | None = None) -> str:
    """An operator's sentence for why the engine at ``base_url`` cannot be used, and the fix."""
    sock = _socket_path(base_url)
    fix_host = "or set DOCKER_HOST to the engine's address (e.g. unix:///run/user/$UID/docker.sock for rootless Docker)"
    if sock is not None:
        try:
            os.stat(sock)
        except FileNotFoundError:
            return (
                f"No Docker engine: the socket {sock} does not exist. Start Docker "
                f"(sudo systemctl start docker) {fix_host}."
            )
        except PermissionError:
            return f"Permission denied on a directory above {sock}: run gpudock as a user who can reach it, {fix_host}."
        except OSError:
            pass
        if not os.access(sock, os.R_OK | os.W_OK):
            return (
                f"Permission denied on the Docker socket {sock}: add your user to the docker group "
                f"(sudo usermod -aG docker $USER, then log in again) or run gpudock as root."
            )
    for e in _chain(exc) if exc is not None else ():
        if isinstance(e, PermissionError) or getattr(e, "errno", None) in (errno.EACCES, errno.EPERM):
            return (
                f"Permission denied talking to the Docker engine at {base_url}: add your user to the "
                f"docker group (sudo usermod -aG docker $USER, then log in again) or run gpudock as root."
            )
        if isinstance(e, FileNotFoundError):
            return f"No Docker engine at {base_url}: start Docker (sudo systemctl start docker) {fix_host}."
        if isinstance(e, ConnectionRefusedError):
            return (
                f"The Docker engine at {base_url} refused the connection: is dockerd running? "
                f"Start it (sudo systemctl start docker) {fix_host}."
            )
        if isinstance(e, TimeoutError) or type(e).__name__ in ("ReadTimeout", "ConnectTimeout", "ReadTimeoutError"):
            t = f" in {timeout:g} s" if timeout else ""
            return f"The Docker engine at {base_url} did not answer{t}: is it hung? (sudo systemctl status docker)"
    if exc is None:
        return f"Lost the connection to the Docker engine at {base_url} (it stopped or restarted); reconnecting."
    detail = f": {exc}"
    return f"Cannot talk to the Docker engine at {base_url}{detail}. Is Docker running? {fix_host[0].upper()}{fix_host[1:]}."  # noqa: E501


@dataclass(frozen=True, slots=True)
class _Entry:
    """What the cache keeps per container: everything but the resolution against the GPUs."""

    id: str
    name: str
    image: str
    status: str
    runtime: str | None
    pid: int | None
    started_at: str | None
    requests: tuple[GpuRequest, ...]


def host_node_reader(root: HostRoot) -> NodeReader:
    """Read a ``--device`` host path as the engine does on its host: stat, links followed (inside
    the root: the live host, a ``--root`` copy, or a simulated host whose /dev nodes are its
    root's device table)."""

    def read(path: str) -> tuple[int, int] | None:
        st = root.stat(path)
        if not stat.S_ISCHR(st.st_mode):
            return None
        return os.major(st.st_rdev), os.minor(st.st_rdev)

    return read


def remote_node_reader(base_url: str) -> NodeReader:
    """For an engine on another machine (tcp://, ssh://): its device nodes cannot be read here."""

    def read(path: str) -> tuple[int, int] | None:
        raise OSError(errno.EREMOTE, f"the engine at {base_url} runs on another machine")

    return read


def _entry(
    ins: Mapping[str, Any], nv_names: frozenset[str], default_runtime: str | None, read_node: NodeReader | None = None
) -> _Entry:
    state = ins.get("State") or {}
    cfg = ins.get("Config") or {}
    hc = ins.get("HostConfig") or {}
    pid = state.get("Pid") or None
    status = state.get("Status") or "unknown"
    return _Entry(
        id=ins.get("Id") or "",
        name=(ins.get("Name") or "").lstrip("/"),
        image=cfg.get("Image") or ins.get("Image") or "",
        status=status,
        runtime=hc.get("Runtime") or default_runtime,
        pid=pid if status in _ACTIVE else None,
        started_at=state.get("StartedAt") or None,
        requests=parse_requests(ins, nv_names, default_runtime, read_node),
    )


def _is_api_error(exc: BaseException) -> bool:
    """The engine answered, with an error status."""
    import docker.errors

    return isinstance(exc, docker.errors.APIError) and getattr(exc, "response", None) is not None


def _is_not_found(exc: BaseException) -> bool:
    import docker.errors

    return isinstance(exc, docker.errors.NotFound)


class DockerWatcher:
    """A cache of every container's GPU requests, kept current by the engine's events.

    Thread-safe: one background thread writes, any thread may call :meth:`snapshot` and read
    :attr:`status`.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        timeout: float = 10.0,
        workers: int = 8,
        backoff: tuple[float, float] = (0.5, 30.0),
        nvidia_runtime_names: Iterable[str] = ("nvidia",),
        read_node: NodeReader | None = None,
        heartbeat: float = 2.0,
        stale_after: float = 3.0,
    ) -> None:
        self.base_url = base_url or default_base_url()
        # How a --device host node is read (host_node_reader; None: from its name only).
        self._read_node = read_node
        self._explicit_url = base_url is not None
        self.timeout = timeout
        self.workers = max(1, workers)
        self.backoff = backoff
        self._extra_nv = frozenset(nvidia_runtime_names)
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._nv_names: frozenset[str] = self._extra_nv
        self._default_runtime: str | None = None
        self._version = 0  # bumps on any change of _entries
        self._status = DockerStatus("connecting", self.base_url, since=time.time())
        # resolution caches
        self._index: GpuIndex | None = None
        self._resolved: dict[str, Container] = {}
        self._snap: dict[bool, tuple[int, tuple, tuple[Container, ...]]] = {}
        # staleness: when the oldest request still without an answer was sent (None: all answered)
        self.heartbeat = heartbeat
        self.stale_after = stale_after
        self._waiting_since: float | None = None
        self._asking = 0  # requests in flight
        self._heart: threading.Thread | None = None
        # background thread
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._stream: Any = None
        self._client: Any = None

    # ---------------------------------------------------------------- public

    @property
    def status(self) -> DockerStatus:
        """Where gpudock stands with the engine, now: with ``stale_since`` set while a request has
        waited past ``stale_after`` seconds for an answer."""
        st = self._status
        since = self._waiting_since
        if st.state != "ok" or since is None or time.time() - since < self.stale_after:
            return st
        at = time.strftime("%H:%M:%S", time.localtime(since))
        return replace(
            st,
            stale_since=since,
            message=(
                f"The Docker engine at {self.base_url} has not answered since {at}: is it hung? "
                "(sudo systemctl status docker). Containers shown are as of then."
            ),
        )

    @property
    def running(self) -> bool:
        """The event thread runs (:meth:`start`): the cache follows the engine by itself."""
        t = self._thread
        return t is not None and t.is_alive()

    @property
    def generation(self) -> int:
        """Bumps whenever a container is added, changed or removed (the UI can skip redraws)."""
        return self._version

    def connect(self) -> DockerStatus:
        """Synchronously connect and build the cache (no event thread): for one-shot commands."""
        client = None
        try:
            client = self._make_client()
            with self._asking_engine():
                self._cold_build(client)
        except Exception as e:  # noqa: BLE001 - every fault becomes a status
            log.debug("Docker engine at %s: %s", self.base_url, e, exc_info=True)
            self._fail(e)
        finally:
            if client is not None:
                try:
                    client.close()
                except Exception:  # noqa: BLE001
                    pass
        return self._status

    def start(self) -> None:
        """Start the background thread (connect, build, follow events, reconnect). Idempotent."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="gpudock-docker", daemon=True)
        self._thread.start()
        if self.heartbeat > 0 and (self._heart is None or not self._heart.is_alive()):
            self._heart = threading.Thread(target=self._beat, name="gpudock-docker-heartbeat", daemon=True)
            self._heart.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the background thread and close the connection."""
        self._stop.set()
        self._close_stream()
        t = self._thread
        if t is not None:
            t.join(timeout)
        self._thread = None
        h = self._heart
        if h is not None:
            h.join(min(timeout, 0.5))  # a ping of a hung engine ends by its own timeout
        self._heart = None

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the first connection attempt finished (ok or not); True if it is ok."""
        self._ready.wait(timeout)
        return self._status.ok

    def wait_for(self, predicate, timeout: float = 10.0, interval: float = 0.02) -> bool:
        """Poll until ``predicate(self)`` is true (tests); False on timeout."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate(self):
                return True
            time.sleep(interval)
        return bool(predicate(self))

    def snapshot(self, gpus: Sequence[Gpu] | HostSnapshot, all: bool = False) -> tuple[Container, ...]:
        """Containers (running, paused or restarting like ``docker ps``; or ``all``) with their claims
        resolved against ``gpus``.

        Costs a key comparison when nothing changed; re-resolves only changed containers, and all
        of them only when the GPU list changed (index, UUID, minor, bus id, MIG devices).
        Running containers first, then by name. ``()`` while the engine is unavailable.
        """
        if isinstance(gpus, HostSnapshot):
            gpus = gpus.gpus
        key = gpu_key(gpus)
        with self._lock:
            version = self._version
            cached = self._snap.get(all)
            if cached is not None and cached[0] == version and cached[1] == key:
                return cached[2]
            if self._index is None or self._index.key != key:
                self._index = GpuIndex(gpus)
                self._resolved.clear()
                self._snap.clear()
            ix = self._index
            entries = list(self._entries.values())
        out: list[Container] = []
        resolved = self._resolved
        for e in entries:
            if not all and e.status not in _ACTIVE:
                continue
            c = resolved.get(e.id)
            if c is None:
                c = Container(
                    id=e.id,
                    name=e.name,
                    image=e.image,
                    status=e.status,
                    runtime=e.runtime,
                    pid=e.pid,
                    started_at=e.started_at,
                    claims=resolve_requests(e.requests, ix),
                )
                with self._lock:
                    if self._entries.get(e.id) is e and self._index is ix:
                        resolved[e.id] = c
            out.append(c)
        out.sort(key=lambda c: (c.status not in _ACTIVE, c.name, c.id))
        result = tuple(out)
        with self._lock:
            if self._version == version and self._index is ix:
                self._snap[all] = (version, key, result)
        return result

    def container(self, cid: str) -> _Entry | None:
        """The cache entry for a full or short container id (or name), or None."""
        with self._lock:
            e = self._entries.get(cid)
            if e is not None:
                return e
            for e in self._entries.values():
                if e.id.startswith(cid) or e.name == cid:
                    return e
        return None

    # ---------------------------------------------------------------- internals

    def _make_client(self):
        import docker

        if self._explicit_url:
            client = docker.DockerClient(base_url=self.base_url, version="auto", timeout=self.timeout)
        else:
            client = docker.from_env(version="auto", timeout=self.timeout)
        if _socket_path(self.base_url) is not None:
            # A unix socket goes through no proxy: skip requests' per-call proxy lookup in the
            # environment, a third of the CPU of each inspect.
            client.api.trust_env = False
        return client

    @contextlib.contextmanager
    def _asking_engine(self):
        """Around requests to the engine: while one waits for an answer, :attr:`status` turns
        stale past ``stale_after``. An HTTP error (404, 500) is an answer; a timeout is not."""
        with self._lock:
            self._asking += 1
            if self._waiting_since is None:
                self._waiting_since = time.time()
        answered = False
        try:
            yield
            answered = True
        except Exception as e:
            answered = _is_api_error(e)
            raise
        finally:
            with self._lock:
                self._asking -= 1
                if answered:
                    self._waiting_since = None

    def _heard(self) -> None:
        """The engine spoke unasked (an event): it is not hung."""
        with self._lock:
            if self._asking == 0:
                self._waiting_since = None

    def _beat(self) -> None:
        """Ping the engine every ``heartbeat`` seconds while the event thread follows it."""
        client = None
        me = threading.current_thread()
        try:
            # a stop() then start() makes a new heartbeat: this one ends when it wakes
            while not self._stop.wait(self.heartbeat) and self._heart is me:
                if self._status.state != "ok":
                    continue  # connecting or unavailable: the event thread says so itself
                try:
                    with self._asking_engine():  # making a client asks too: version="auto"
                        if client is None:
                            client = self._make_client()
                        client.api.ping()
                except Exception as e:  # noqa: BLE001 - a hung or lost engine: the status says it
                    log.debug("Docker engine at %s: heartbeat: %s", self.base_url, e)
                    if client is not None:
                        try:
                            client.close()
                        except Exception:  # noqa: BLE001
                            pass
                    client = None
        finally:
            if client is not None:
                try:
                    client.close()
                except Exception:  # noqa: BLE001
                    pass

    def _set_status(self, **kw) -> None:
        old = self._status
        st = replace(old, **kw)
        if st.state != old.state:
            st = replace(st, since=time.time())
        self._status = st

    def _fail(self, exc: BaseException | None) -> None:
        msg = explain_connect_error(exc, self.base_url, self.timeout)
        with self._lock:
            if self._entries:
                self._entries.clear()
                self._resolved.clear()
                self._snap.clear()
                self._version += 1
        self._set_status(state="unavailable", message=msg, containers=0)
        self._ready.set()

    def _cold_build(self, client) -> None:
        """List and inspect every container; replace the cache."""
        info = client.info()
        nv = nvidia_runtimes(info.get("Runtimes")) | (self._extra_nv & set((info.get("Runtimes") or {}).keys()))
        default_rt = info.get("DefaultRuntime") or "runc"
        api = client.api
        ids = [c["Id"] for c in api.containers(all=True, trunc=False)]
        self._listed(ids)

        def inspect(cid: str):
            try:
                return api.inspect_container(cid)
            except Exception as e:  # noqa: BLE001
                if _is_not_found(e):
                    return None  # gone between list and inspect
                raise

        if self.workers > 1 and len(ids) > 8:
            with ThreadPoolExecutor(self.workers) as ex:
                found = list(ex.map(inspect, ids))
        else:
            found = [inspect(i) for i in ids]
        nvf = frozenset(nv)
        entries = {}
        for ins in found:
            if ins:
                e = _entry(ins, nvf, default_rt, self._read_node)
                entries[e.id] = e
        with self._lock:
            self._nv_names = nvf
            self._default_runtime = default_rt
            self._entries = entries
            self._resolved.clear()
            self._snap.clear()
            self._version += 1
        self._set_status(
            state="ok",
            message=None,
            engine_version=info.get("ServerVersion"),
            default_runtime=default_rt,
            nvidia_runtimes=tuple(sorted(nvf)),
            containers=len(entries),
        )
        self._ready.set()

    def _listed(self, ids: list[str]) -> None:
        """Called between listing and inspecting during a cold build (a seam for tests: a container
        removed right here must be dropped, not crash the build)."""

    def _reinspect(self, client, cid: str) -> None:
        try:
            with self._asking_engine():
                ins = client.api.inspect_container(cid)
        except Exception as e:  # noqa: BLE001
            if _is_not_found(e):
                self._drop(cid)
                return
            raise
        e = _entry(ins, self._nv_names, self._default_runtime, self._read_node)
        with self._lock:
            if self._entries.get(e.id) == e:
                return
            self._entries[e.id] = e
            self._resolved.pop(e.id, None)
            self._snap.clear()
            self._version += 1
            n = len(self._entries)
        self._set_status(containers=n)

    def _drop(self, cid: str) -> None:
        with self._lock:
            if self._entries.pop(cid, None) is None:
                return
            self._resolved.pop(cid, None)
            self._snap.clear()
            self._version += 1
            n = len(self._entries)
        self._set_status(containers=n)

    def _on_event(self, client, ev: Mapping[str, Any]) -> None:
        if ev.get("Type", "container") != "container":
            return
        action = (ev.get("Action") or ev.get("status") or "").split(":", 1)[0].strip()
        cid = ev.get("id") or (ev.get("Actor") or {}).get("ID")
        if not cid:
            return
        if action in _GONE:
            self._drop(cid)
        elif action in _REINSPECT:
            self._reinspect(client, cid)

    def _close_stream(self) -> None:
        s = self._stream
        if s is not None:
            try:
                s.close()
            except Exception:  # noqa: BLE001
                pass

    def _run(self) -> None:
        delay = self.backoff[0]
        while not self._stop.is_set():
            client = None
            exc: BaseException | None = None
            try:
                client = self._make_client()
                self._client = client
                # Open the event stream *before* listing, so nothing that happens during the cold
                # build is missed (re-inspecting is idempotent).
                self._stream = client.api.events(decode=True, filters={"type": "container"})
                if self._stop.is_set():
                    break
                with self._asking_engine():
                    self._cold_build(client)
                delay = self.backoff[0]
                for ev in self._stream:
                    if self._stop.is_set():
                        break
                    self._heard()
                    try:
                        self._on_event(client, ev)
                    except Exception as e:  # noqa: BLE001
                        if _is_not_found(e):
                            continue
                        raise
            except Exception as e:  # noqa: BLE001 - every fault becomes a status
                exc = e
            finally:
                self._close_stream()
                self._stream = None
                if client is not None:
                    try:
                        client.close()
                    except Exception:  # noqa: BLE001
                        pass
                self._client = None
            if self._stop.is_set():
                break
            # The stream ended (engine stopped) or something failed: unavailable until reconnected.
            self._fail(exc)
            self._stop.wait(delay)
            delay = min(delay * 2, self.backoff[1])
