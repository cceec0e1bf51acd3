"""A tiny Docker Engine API server for the simulated host: the scenario's containers and images.

This module owns the Docker side of a simulated host at the Engine API boundary, as
:mod:`gpudock.sim.libnvml` owns the NVML side at the library boundary: the real ``docker`` SDK,
:class:`gpudock.host.docker.DockerWatcher` (list, inspect, event stream), the claim rules and the
launcher talk to it over a UNIX socket exactly as they talk to dockerd. Stdlib only
(``socketserver.UnixStreamServer`` + ``http.server.BaseHTTPRequestHandler``, a thread per
connection).

Served (any ``/v1.NN`` prefix, or none):

* ``GET|HEAD /_ping``, ``GET /version``, ``GET /info`` (runtimes, default runtime, cgroup driver,
  CDI spec dirs from the scenario's ``[docker]`` table);
* ``GET /containers/json`` (``all``, ``limit``, ``filters`` status/name/id/label),
  ``GET /containers/{id|name|prefix}/json`` (a realistic inspect document; 404
  ``{"message": "No such container: X"}``), ``GET /containers/{id}/logs`` (multiplexed frames;
  ``tail``; ``follow`` keeps the stream open, with each new line, until the container stops or is
  removed, as dockerd does);
* ``POST /containers/create`` (``?name=``), ``POST /containers/{id}/start|stop|kill|restart``,
  ``DELETE /containers/{id}`` (``force``; 409 for a running container without it, dockerd's
  words): kept in memory, with dockerd's events (a restart is kill, die, stop, start, restart), so
  a launch from the demo's launcher shows up in the holder column and a stop empties it. Each start
  writes the container's first log line again, as a real container's program would;
* ``GET /events``: a chunked stream that stays open and carries one JSON line per container event
  (``filters`` type/container/event; ``until`` ends it at once);
* ``GET /images/json``, ``GET /images/{name}/json``;
* volumes of the ``local`` driver: ``GET /volumes`` (``filters`` name/driver/label/dangling),
  ``POST /volumes/create``, ``GET /volumes/{name}``, ``DELETE /volumes/{name}`` (409 while a
  container uses it); a container's ``Binds`` naming a missing volume make an empty one, as
  dockerd does, and another volume driver is "not found". Each volume gets a directory under the
  engine's socket directory. A scenario with a driver version starts with the driver volume
  ``nvidia_driver_<version>`` a host set up for legacy launches has: a read-only bind of a
  directory holding the driver's file names (placeholders), so ``--mode legacy`` launches work
  on the demo.

Anything else answers 404 ``{"message": "page not found"}``, as dockerd does.

Use::

    d = SimDockerd.start(scenario)          # or SimDockerd.start(scenario, socket_dir)
    docker.DockerClient(base_url=d.base_url)
    d.engine.create(...); d.engine.start(cid)   # change the engine from Python (tests), with events
    with d.stalled(): ...                   # a hung engine (tests): requests and events wait
    d.close()

Nothing here runs a process: a container's PIDs are the scenario's (``/proc`` for them comes from
:mod:`gpudock.sim.procfs`); a container started through the API gets a made-up PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import secrets
import select
import shutil
import socket
import socketserver
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from gpudock.host.root import HostRoot
from gpudock.sim.scenario import Scenario, SimContainer, SimEngine, SimImage, image_ref

__all__ = ["SimDockerd", "SimEngineState", "ApiError"]

_ZERO_TIME = "0001-01-01T00:00:00Z"
_VERSION_PREFIX = re.compile(r"^/v\d+(?:\.\d+)?(?=/)")
_ACTIVE = ("running", "paused", "restarting")


class ApiError(Exception):
    """An Engine API error: HTTP status and dockerd's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


def _epoch(rfc3339: str | None) -> int:
    if not rfc3339 or rfc3339.startswith("0001-"):
        return 0
    text = re.sub(r"(\.\d{1,6})\d*", r"\1", rfc3339.replace("Z", "+00:00"))
    try:
        return int(datetime.fromisoformat(text).timestamp())
    except ValueError:
        return 0


def _ago(seconds: float) -> str:
    s = max(0, int(seconds))
    for unit, n in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if s >= 2 * n:
            return f"{s // n} {unit}"
    if s >= 3600:
        return "About an hour"
    if s >= 60:
        return "About a minute"
    return f"{s} seconds" if s > 1 else "Less than a second"


def _merge_env(image_env: tuple[str, ...] | list[str], env: tuple[str, ...] | list[str]) -> list[str]:
    """``Config.Env`` as dockerd builds it: the image's env with the container's values replacing
    same-named keys in place, new keys appended."""
    out: list[str] = []
    pos: dict[str, int] = {}
    for item in list(image_env) + list(env):
        key = item.split("=", 1)[0]
        if key in pos:
            out[pos[key]] = item
        else:
            pos[key] = len(out)
            out.append(item)
    return out


@dataclass
class _Container:
    """One container as the engine keeps it (mutable: start/stop change it)."""

    id: str
    name: str
    image: str
    image_id: str
    state: str
    runtime: str
    env: list[str]
    cmd: list[str]
    labels: dict[str, str]
    host_config: dict[str, Any]
    pid: int
    created: str
    started: str | None
    finished: str | None
    exit_code: int
    tty: bool = False
    logs: list[tuple[int, str]] = field(default_factory=list)  # (stream 1|2, line)
    # the scenario's host PIDs of its processes (PID 1 and the GPU processes): they end when it stops
    host_pids: tuple[int, ...] = ()
    mounts: list[dict] = field(default_factory=list)  # inspect's Mounts: volumes and binds

    def inspect(self) -> dict:
        state = self.state
        return {
            "Id": self.id,
            "Created": self.created,
            "Path": self.cmd[0] if self.cmd else "",
            "Args": self.cmd[1:],
            "State": {
                "Status": state,
                "Running": state in ("running", "paused", "restarting"),
                "Paused": state == "paused",
                "Restarting": state == "restarting",
                "OOMKilled": False,
                "Dead": state == "dead",
                "Pid": self.pid if state in _ACTIVE else 0,
                "ExitCode": self.exit_code,
                "Error": "",
                "StartedAt": self.started or _ZERO_TIME,
                "FinishedAt": self.finished or _ZERO_TIME,
            },
            "Image": self.image_id,
            "ResolvConfPath": f"/var/lib/docker/containers/{self.id}/resolv.conf",
            "HostnamePath": f"/var/lib/docker/containers/{self.id}/hostname",
            "LogPath": f"/var/lib/docker/containers/{self.id}/{self.id}-json.log",
            "Name": "/" + self.name,
            "RestartCount": 0,
            "Driver": "overlay2",
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "docker-default",
            "HostConfig": dict(self.host_config, Runtime=self.runtime),
            "Mounts": [dict(m) for m in self.mounts],
            "Config": {
                "Hostname": self.id[:12],
                "Domainname": "",
                "User": "",
                "Tty": self.tty,
                "OpenStdin": False,
                "Env": list(self.env),
                "Cmd": list(self.cmd),
                "Image": self.image,
                "WorkingDir": "",
                "Entrypoint": None,
                "Labels": dict(self.labels),
            },
            "NetworkSettings": {"Networks": {}, "Ports": {}},
        }

    def summary(self, now: float) -> dict:
        if self.state in _ACTIVE:
            status = f"Up {_ago(now - _epoch(self.started))}" + (" (Paused)" if self.state == "paused" else "")
        elif self.state in ("exited", "dead"):
            status = f"Exited ({self.exit_code}) {_ago(now - _epoch(self.finished or self.started))} ago"
        else:
            status = self.state.capitalize()
        return {
            "Id": self.id,
            "Names": ["/" + self.name],
            "Image": self.image,
            "ImageID": self.image_id,
            "Command": " ".join(self.cmd),
            "Created": _epoch(self.created),
            "Ports": [],
            "Labels": dict(self.labels),
            "State": self.state,
            "Status": status,
            "HostConfig": {"NetworkMode": self.host_config.get("NetworkMode", "default")},
            "NetworkSettings": {"Networks": {}},
            "Mounts": [dict(m) for m in self.mounts],
        }


def _host_config(c: SimContainer) -> dict[str, Any]:
    return {
        "Binds": None,
        "NetworkMode": "default",
        "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        "AutoRemove": False,
        "Privileged": False,
        "PidMode": "",
        "IpcMode": "private",
        "CgroupnsMode": "private",
        "CgroupParent": "",
        "Devices": [
            {"PathOnHost": d.host, "PathInContainer": d.container, "CgroupPermissions": d.permissions}
            for d in c.devices
        ],
        "DeviceRequests": [
            {
                "Driver": r.driver,
                "Count": r.count,
                "DeviceIDs": list(r.device_ids) or None,
                "Capabilities": [list(a) for a in r.capabilities] or None,
                "Options": {},
            }
            for r in c.device_requests
        ]
        or None,
        "Annotations": None,
    }


class SimEngineState:
    """The engine's containers and images, thread-safe, with event subscribers."""

    def __init__(self, scenario: Scenario, root: HostRoot | None = None) -> None:
        self.engine: SimEngine = scenario.docker or SimEngine()
        # The simulated host's files: volumes' directories are made there, at the host paths a real
        # engine would give (/var/lib/docker/volumes/...). None: volumes have no files.
        self.root = root
        self.volumes: dict[str, dict] = {}
        self._lock = threading.Lock()
        # Notified on every state change and log line: what a following log stream waits on.
        self.changed = threading.Condition(self._lock)
        # Called with a container's record when it stops (SimHost: its processes end) and when it
        # starts (the simulated toolkit's debug logs; its processes run again).
        self.on_stop: Callable[[_Container], None] | None = None
        # Called with a container's record when it starts (the simulated toolkit's debug logs).
        self.on_start: Callable[[_Container], None] | None = None
        self._subs: list[queue.Queue] = []
        self._next_pid = 3_990_001
        self.images: dict[str, SimImage] = {im.name: im for im in scenario.images}
        for c in scenario.containers:
            ref = image_ref(c.image)
            self.images.setdefault(ref, SimImage(ref))
        self.containers: dict[str, _Container] = {}
        for c in scenario.containers:
            im = self.images[image_ref(c.image)]
            self.containers[c.id] = _Container(
                id=c.id,
                name=c.name,
                image=c.image,
                image_id=im.id,
                state=c.state,
                runtime=c.runtime or self.engine.default_runtime,
                env=_merge_env(im.env, c.env),
                cmd=c.command.split() if c.command else [],
                labels=dict(im.labels) | dict(c.labels),
                host_config=_host_config(c),
                pid=c.pid or 0,
                created=c.created,
                started=c.started,
                finished=c.started if c.state in ("exited", "dead") else None,
                exit_code=c.exit_code,
                logs=[(1, f"{c.name}: simulated by gpudock (scenario {scenario.name}); nothing runs here")],
                host_pids=tuple(dict.fromkeys([*([c.pid] if c.pid else []), *(h for h, _ in c.pids)])),
            )

        module = scenario.host.module if scenario.host is not None else scenario.driver_version
        if root is not None and module:
            self._seed_driver_volume(module)

    # ------------------------------------------------------------------ lookups

    def find(self, ref: str) -> _Container:
        """By full id, name (with or without '/'), or unique id prefix; ApiError 404 otherwise."""
        with self._lock:
            return self._find(ref)

    def _find(self, ref: str) -> _Container:
        c = self.containers.get(ref)
        if c is not None:
            return c
        name = ref.lstrip("/")
        for c in self.containers.values():
            if c.name == name:
                return c
        hits = [c for c in self.containers.values() if ref and c.id.startswith(ref)]
        if len(hits) == 1:
            return hits[0]
        raise ApiError(404, f"No such container: {ref}")

    def image(self, ref: str) -> SimImage:
        im = self.images.get(image_ref(ref))
        if im is not None:
            return im
        bare = ref[7:] if ref.startswith("sha256:") else ref
        hits = [i for i in self.images.values() if bare and i.id[7:].startswith(bare)]
        if len(hits) == 1:
            return hits[0]
        raise ApiError(404, f"No such image: {ref}")

    # ------------------------------------------------------------------ events

    def subscribe(self) -> queue.Queue:
        q: queue.Queue = queue.Queue()
        with self._lock:
            self._subs.append(q)
        return q

    def unsubscribe(self, q: queue.Queue) -> None:
        with self._lock:
            if q in self._subs:
                self._subs.remove(q)

    def close_streams(self) -> None:
        with self._lock:
            for q in self._subs:
                q.put(None)

    def _emit(self, c: _Container, action: str, **attrs: str) -> None:
        t = time.time()
        ev = {
            "status": action,
            "id": c.id,
            "from": c.image,
            "Type": "container",
            "Action": action,
            "Actor": {"ID": c.id, "Attributes": {**c.labels, "image": c.image, "name": c.name, **attrs}},
            "scope": "local",
            "time": int(t),
            "timeNano": int(t * 1e9),
        }
        for q in self._subs:
            q.put(ev)
        self.changed.notify_all()

    def follow_logs(self, c: _Container, seen: int, timeout: float) -> tuple[list[tuple[int, str]], bool]:
        """The log lines after the first ``seen``, waiting up to ``timeout`` s for one, and whether
        the stream goes on (the container still runs and is still there)."""
        with self._lock:
            if len(c.logs) <= seen and c.state in _ACTIVE and self.containers.get(c.id) is c:
                self.changed.wait(timeout)
            alive = c.state in _ACTIVE and self.containers.get(c.id) is c
            return c.logs[seen:], alive

    def log(self, ref: str, line: str, stream: int = 1) -> None:
        """A line the container writes (tests, and the simulated containers' own output)."""
        with self._lock:
            c = self._find(ref)
            c.logs.append((stream, line))
            self.changed.notify_all()

    # ------------------------------------------------------------------ changes (with events)

    def create(self, body: dict, name: str | None = None) -> _Container:
        image = body.get("Image") or ""
        if not image:
            raise ApiError(400, "No command specified" if body.get("Cmd") is None else "image is required")
        im = self.image(image)
        hc = dict(body.get("HostConfig") or {})
        runtime = hc.pop("Runtime", None) or self.engine.default_runtime
        if runtime not in dict(self.engine.runtimes):
            raise ApiError(400, f"Unknown runtime specified {runtime}")
        if hc.get("Privileged"):
            hc["Privileged"] = True
        hc.setdefault("Privileged", False)
        hc.setdefault("Devices", [])
        hc.setdefault("DeviceRequests", None)
        hc.setdefault("NetworkMode", "default")
        mounts = self._mounts(hc)
        cmd = body.get("Cmd")
        if isinstance(cmd, str):
            cmd = cmd.split()
        with self._lock:
            if name:
                if not re.match(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$", name):
                    raise ApiError(400, f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
                name = name.lstrip("/")
                for other in self.containers.values():
                    if other.name == name:
                        raise ApiError(
                            409,
                            f'Conflict. The container name "/{name}" is already in use by container '
                            f'"{other.id}". You have to remove (or rename) that container to be able to reuse that name.',  # noqa: E501
                        )
            else:
                name = f"sim_{secrets.token_hex(4)}"
            cid = secrets.token_hex(32)
            c = _Container(
                id=cid,
                name=name,
                image=image,
                image_id=im.id,
                state="created",
                runtime=runtime,
                env=_merge_env(im.env, body.get("Env") or []),
                cmd=list(cmd or []),
                labels=dict(im.labels) | dict(body.get("Labels") or {}),
                host_config=hc,
                pid=0,
                created=_now_rfc3339(),
                started=None,
                finished=None,
                exit_code=0,
                tty=bool(body.get("Tty")),
                mounts=mounts,
                logs=[
                    (1, f"{name}: simulated by gpudock; nothing runs here"),
                    (1, f"image {image}, runtime {runtime}"),
                ],
            )
            self.containers[cid] = c
            self._emit(c, "create")
            return c

    def start(self, ref: str) -> bool:
        """False when it was already running (HTTP 304)."""
        with self._lock:
            c = self._find(ref)
            if c.state in _ACTIVE:
                return False
            c.state = "running"
            c.pid = self._next_pid
            self._next_pid += 1
            c.started = _now_rfc3339()
            c.finished = None
            c.exit_code = 0
            c.logs.append((1, f"{c.name}: simulated by gpudock, started {c.started}; nothing runs here"))
            self._emit(c, "start")
        if self.on_start is not None:
            self.on_start(c)  # outside the lock: it reads and writes files
        return True

    def stop(self, ref: str, signal: str = "SIGTERM") -> bool:
        """False when it was not running (HTTP 304)."""
        stopped = self._stop(ref, signal)
        if stopped is not None and self.on_stop is not None:
            self.on_stop(stopped)  # outside the lock
        return stopped is not None

    def _stop(self, ref: str, signal: str) -> _Container | None:
        with self._lock:
            c = self._find(ref)
            if c.state not in _ACTIVE:
                return None
            c.state = "exited"
            c.exit_code = 137 if signal in ("SIGKILL", "KILL", "9") else 143
            c.finished = _now_rfc3339()
            c.pid = 0
            self._emit(c, "kill", signal=signal)
            self._emit(c, "die", exitCode=str(c.exit_code))
            if signal not in ("SIGKILL", "KILL", "9"):
                self._emit(c, "stop")
            return c

    def emit_restart(self, ref: str) -> None:
        with self._lock:
            self._emit(self._find(ref), "restart")

    def remove(self, ref: str, force: bool = False) -> None:
        with self._lock:
            c = self._find(ref)
            if c.state in _ACTIVE:
                if not force:
                    raise ApiError(
                        409,
                        f"You cannot remove a {c.state} container {c.id}. "
                        "Stop the container before attempting removal or force remove",
                    )
                c.state = "exited"
                c.exit_code = 137
                c.finished = _now_rfc3339()
                c.pid = 0
                self._emit(c, "kill", signal="SIGKILL")
                self._emit(c, "die", exitCode="137")
            del self.containers[c.id]
            self._emit(c, "destroy")
        if self.on_stop is not None:
            self.on_stop(c)

    # ------------------------------------------------------------------ volumes (local driver)

    def _volume_doc(self, name: str, labels: dict | None, options: dict | None) -> dict:
        mountpoint = f"/var/lib/docker/volumes/{name}/_data"
        if self.root is not None:
            os.makedirs(self.root.real(mountpoint), exist_ok=True)
        return {
            "CreatedAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Driver": "local",
            "Labels": labels,
            "Mountpoint": mountpoint,
            "Name": name,
            "Options": options,
            "Scope": "local",
        }

    def _seed_driver_volume(self, version: str) -> None:
        """The driver volume a host set up for legacy launches has: built by gpudock from the
        simulated host's own driver files (placeholders: nothing runs on a simulated host), a
        read-only bind of its directory, as ``gpudock run --mode legacy`` makes it."""
        from gpudock.launch.spec import LaunchError
        from gpudock.launch.volume import DEFAULT_VOLUME_DIR, VOLUME_LABEL, build_driver_volume

        try:
            build_driver_volume(self.root, self.root.real(DEFAULT_VOLUME_DIR), version)
        except LaunchError:
            return  # no driver files on this host: no volume either
        name = f"nvidia_driver_{version}"
        device = f"{DEFAULT_VOLUME_DIR}/nvidia_driver/{version}"
        self.volumes[name] = self._volume_doc(
            name, {VOLUME_LABEL: version}, {"type": "none", "o": "bind,ro", "device": device}
        )

    def create_volume(self, body: dict) -> dict:
        name = body.get("Name") or secrets.token_hex(32)
        driver = body.get("Driver") or "local"
        if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", name):
            raise ApiError(
                400,
                f'create {name}: "{name}" includes invalid characters for a local volume name, only '
                '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path',
            )
        if driver != "local":
            raise ApiError(404, f'create {name}: error looking up volume plugin {driver}: plugin "{driver}" not found')
        opts = dict(body.get("DriverOpts") or {})
        bad = sorted(k for k in opts if k not in ("type", "o", "device", "size"))
        if bad:
            raise ApiError(400, f'create {name}: invalid option key: "{bad[0]}"')
        with self._lock:
            if name not in self.volumes:
                self.volumes[name] = self._volume_doc(name, dict(body.get("Labels") or {}), opts)
            return dict(self.volumes[name])

    def volume(self, name: str) -> dict:
        with self._lock:
            v = self.volumes.get(name)
        if v is None:
            raise ApiError(404, f"get {name}: no such volume")
        return dict(v)

    def _users(self, name: str) -> list[str]:
        return [c.id for c in self.containers.values() if any(m.get("Name") == name for m in c.mounts)]

    def list_volumes(self, params: dict[str, list[str]]) -> dict:
        filters = _filters(params)
        with self._lock:
            vols = [dict(v, _used=bool(self._users(v["Name"]))) for v in self.volumes.values()]
        out = []
        for v in sorted(vols, key=lambda v: v["Name"]):
            used = v.pop("_used")
            if "name" in filters and not any(n in v["Name"] for n in filters["name"]):
                continue
            if "driver" in filters and v["Driver"] not in filters["driver"]:
                continue
            if "label" in filters and not all(_label_match(v["Labels"] or {}, lab) for lab in filters["label"]):
                continue
            if "dangling" in filters and (filters["dangling"][0].lower() in ("1", "true")) == used:
                continue
            out.append(v)
        return {"Volumes": out, "Warnings": None}

    def remove_volume(self, name: str) -> None:
        with self._lock:
            v = self.volumes.get(name)
            if v is None:
                raise ApiError(404, f"get {name}: no such volume")
            users = self._users(name)
            if users:
                raise ApiError(409, f"remove {name}: volume is in use - [{', '.join(users)}]")
            del self.volumes[name]
        if self.root is not None:
            shutil.rmtree(os.path.dirname(self.root.real(v["Mountpoint"])), ignore_errors=True)

    def _mounts(self, hc: dict) -> list[dict]:
        """``HostConfig.Binds`` as inspect's ``Mounts``; a named volume that does not exist is made
        (local driver, empty), as dockerd does; another volume driver is not found."""
        driver = hc.get("VolumeDriver") or "local"
        out = []
        for bind in hc.get("Binds") or ():
            src, _, rest = str(bind).partition(":")
            dst, _, mode = rest.partition(":")
            rw = "ro" not in mode.split(",")
            if src.startswith("/"):
                out.append(
                    {
                        "Type": "bind",
                        "Source": src,
                        "Destination": dst,
                        "Mode": mode,
                        "RW": rw,
                        "Propagation": "rprivate",
                    }
                )
                continue
            with self._lock:
                v = self.volumes.get(src)
            if v is None:
                if driver != "local":
                    raise ApiError(404, f'error looking up volume plugin {driver}: plugin "{driver}" not found')
                with self._lock:
                    v = self.volumes.setdefault(src, self._volume_doc(src, None, None))
            out.append(
                {
                    "Type": "volume",
                    "Name": src,
                    "Source": v["Mountpoint"],
                    "Destination": dst,
                    "Driver": v["Driver"],
                    "Mode": mode or "z",
                    "RW": rw,
                    "Propagation": "",
                }
            )
        return out

    # ------------------------------------------------------------------ documents

    def info(self) -> dict:
        e = self.engine
        with self._lock:
            states = [c.state for c in self.containers.values()]
        return {
            "ID": "SIMD:GPUD:OCKS:IMUL:ATED:HOST:0000:0000:0000:0000:0000:0001",
            "Containers": len(states),
            "ContainersRunning": states.count("running"),
            "ContainersPaused": states.count("paused"),
            "ContainersStopped": len(states) - states.count("running") - states.count("paused"),
            "Images": len(self.images),
            "Driver": "overlay2",
            "DockerRootDir": "/var/lib/docker",
            "CgroupDriver": e.cgroup_driver,
            "CgroupVersion": "2",
            "KernelVersion": "5.15.0-91-generic",
            "OperatingSystem": "Ubuntu 22.04.3 LTS (simulated by gpudock)",
            "OSType": "linux",
            "Architecture": "x86_64",
            "NCPU": 224,
            "MemTotal": 2163684425728,
            "Name": "gpudock-sim",
            "ServerVersion": e.server_version,
            "Runtimes": {name: {"path": path} for name, path in e.runtimes},
            "DefaultRuntime": e.default_runtime,
            "CDISpecDirs": list(e.cdi_spec_dirs),
            "Warnings": None,
        }

    def version(self) -> dict:
        e = self.engine
        return {
            "Platform": {"Name": "Docker Engine - Community (simulated by gpudock)"},
            "Version": e.server_version,
            "ApiVersion": e.api_version,
            "MinAPIVersion": "1.12",
            "Os": "linux",
            "Arch": "amd64",
            "KernelVersion": "5.15.0-91-generic",
            "GoVersion": "go1.20.10",
            "GitCommit": "gpudock-sim",
            "Components": [{"Name": "Engine", "Version": e.server_version, "Details": {"ApiVersion": e.api_version}}],
        }

    def list_containers(self, params: dict[str, list[str]]) -> list[dict]:
        all_ = (params.get("all") or ["0"])[0].lower() in ("1", "true")
        filters = _filters(params)
        now = time.time()
        with self._lock:
            cs = list(self.containers.values())
        out = []
        for c in sorted(cs, key=lambda c: c.created, reverse=True):
            if not all_ and c.state not in _ACTIVE and "status" not in filters:
                continue
            if "status" in filters and c.state not in filters["status"]:
                continue
            if "name" in filters and not any(re.search(n.lstrip("/"), c.name) for n in filters["name"]):
                continue
            if "id" in filters and not any(c.id.startswith(i) for i in filters["id"]):
                continue
            if "label" in filters and not all(_label_match(c.labels, lab) for lab in filters["label"]):
                continue
            if "volume" in filters and not any(
                m.get("Name") in filters["volume"] or m.get("Destination") in filters["volume"] for m in c.mounts
            ):
                continue
            out.append(c.summary(now))
        limit = int((params.get("limit") or ["-1"])[0] or -1)
        return out[:limit] if limit > 0 else out

    def image_list(self) -> list[dict]:
        return [
            {
                "Id": im.id,
                "ParentId": "",
                "RepoTags": [im.name],
                "RepoDigests": [],
                "Created": 1700000000,
                "Size": im.size,
                "SharedSize": -1,
                "VirtualSize": im.size,
                "Labels": dict(im.labels) or None,
                "Containers": -1,
            }
            for im in self.images.values()
        ]

    def image_inspect(self, ref: str) -> dict:
        im = self.image(ref)
        return {
            "Id": im.id,
            "RepoTags": [im.name],
            "RepoDigests": [],
            "Parent": "",
            "Created": "2023-11-14T22:13:20Z",
            "Architecture": "amd64",
            "Os": "linux",
            "Size": im.size,
            "Config": {
                "Env": list(im.env),
                "Labels": dict(im.labels) or None,
                "Cmd": ["/bin/bash"],
                "Entrypoint": None,
                "WorkingDir": "",
            },
            "RootFS": {"Type": "layers", "Layers": []},
        }


def _filters(params: dict[str, list[str]]) -> dict[str, list[str]]:
    raw = (params.get("filters") or [""])[0]
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise ApiError(400, f"invalid filter: {raw}") from None
    out: dict[str, list[str]] = {}
    for k, v in (data or {}).items():
        out[k] = [x for x, on in v.items() if on] if isinstance(v, dict) else list(v)
    return out


def _label_match(labels: dict[str, str], expr: str) -> bool:
    k, sep, v = expr.partition("=")
    return k in labels and (not sep or labels[k] == v)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Docker/sim"
    sys_version = ""
    server: _Server

    # ------------------------------------------------------------------ plumbing

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # quiet: the dashboard owns the terminal

    def address_string(self) -> str:
        return "unix"

    def _common_headers(self) -> None:
        e = self.server.state.engine
        self.send_header("Api-Version", e.api_version)
        self.send_header("Docker-Experimental", "false")
        self.send_header("Ostype", "linux")
        self.send_header("Server", f"Docker/{e.server_version} (linux)")

    def send_response(self, code: int, message: str | None = None) -> None:
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())

    def _send(self, code: int, body: bytes = b"", ctype: str = "application/json") -> None:
        self.send_response(code)
        self._common_headers()
        if code not in (204, 304):
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and code not in (204, 304) and self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, code: int, obj: Any) -> None:
        self._send(code, (json.dumps(obj) + "\n").encode())

    def _body(self) -> dict:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n > 0 else b""
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except ValueError as e:
            raise ApiError(400, f"invalid JSON body: {e}") from None
        return data if isinstance(data, dict) else {}

    def _route(self, method: str) -> None:
        self.server.wait_while_stalled()
        url = urlsplit(self.path)
        path = _VERSION_PREFIX.sub("", url.path, count=1)
        params = parse_qs(url.query, keep_blank_values=True)
        try:
            self._dispatch(method, path, params)
        except ApiError as e:
            if method != "GET" and method != "HEAD":
                self.close_connection = True  # the body may not have been read
            self._json(e.status, {"message": e.message})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # noqa: BLE001 - a 500 like dockerd's, never a dead thread
            self.close_connection = True
            self._json(500, {"message": f"simulated engine: {type(e).__name__}: {e}"})

    def do_GET(self) -> None:  # noqa: N802 - http.server's names
        self._route("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._route("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._route("DELETE")

    def do_PUT(self) -> None:  # noqa: N802
        self._route("PUT")

    # ------------------------------------------------------------------ routes

    def _dispatch(self, method: str, path: str, params: dict[str, list[str]]) -> None:
        st = self.server.state
        q = lambda k, d="": (params.get(k) or [d])[0]  # noqa: E731
        if method in ("GET", "HEAD") and path == "/_ping":
            self._send(200, b"OK", "text/plain; charset=utf-8")
            return
        if method == "GET":
            if path == "/version":
                return self._json(200, st.version())
            if path == "/info":
                return self._json(200, st.info())
            if path == "/containers/json":
                return self._json(200, st.list_containers(params))
            if path == "/events":
                return self._events(params)
            if path == "/images/json":
                return self._json(200, st.image_list())
            if path == "/volumes":
                return self._json(200, st.list_volumes(params))
            m = re.match(r"^/volumes/([^/]+)$", path)
            if m:
                return self._json(200, st.volume(unquote(m.group(1))))
            m = re.match(r"^/images/(.+)/json$", path)
            if m:
                return self._json(200, st.image_inspect(unquote(m.group(1))))
            m = re.match(r"^/containers/([^/]+)/json$", path)
            if m:
                return self._json(200, st.find(unquote(m.group(1))).inspect())
            m = re.match(r"^/containers/([^/]+)/logs$", path)
            if m:
                return self._logs(st.find(unquote(m.group(1))), params)
        if method == "POST":
            if path == "/containers/create":
                c = st.create(self._body(), q("name") or None)
                return self._json(201, {"Id": c.id, "Warnings": []})
            if path == "/volumes/create":
                return self._json(201, st.create_volume(self._body()))
            m = re.match(r"^/containers/([^/]+)/(start|stop|kill|restart)$", path)
            if m:
                self._body()
                ref, action = unquote(m.group(1)), m.group(2)
                if action == "start":
                    return self._send(204 if st.start(ref) else 304)
                if action == "stop":
                    return self._send(204 if st.stop(ref) else 304)
                if action == "kill":
                    if not st.stop(ref, q("signal", "SIGKILL")):
                        raise ApiError(409, f"Container {ref} is not running")
                    return self._send(204)
                st.stop(ref)
                st.start(ref)
                st.emit_restart(ref)
                return self._send(204)
        if method == "DELETE":
            m = re.match(r"^/containers/([^/]+)$", path)
            if m:
                st.remove(unquote(m.group(1)), force=q("force").lower() in ("1", "true"))
                return self._send(204)
            m = re.match(r"^/volumes/([^/]+)$", path)
            if m:
                st.remove_volume(unquote(m.group(1)))
                return self._send(204)
        raise ApiError(404, "page not found")

    def _logs(self, c: _Container, params: dict[str, list[str]]) -> None:
        want = {1: params.get("stdout", ["0"])[0] in ("1", "true"), 2: params.get("stderr", ["0"])[0] in ("1", "true")}
        tail = (params.get("tail") or ["all"])[0]

        def frames(lines: list[tuple[int, str]]) -> bytes:
            out = bytearray()
            for stream, line in lines:
                if not want.get(stream):
                    continue
                data = (line + "\n").encode()
                if c.tty:
                    out += data
                else:  # the multiplexed stream: [stream, 0, 0, 0, size(be32)] + data
                    out += bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data
            return bytes(out)

        st = self.server.state
        lines, alive = st.follow_logs(c, 0, 0)
        seen = len(lines)
        if tail.isdigit():
            lines = lines[len(lines) - int(tail) :] if int(tail) else []
        ctype = "application/vnd.docker.raw-stream" if c.tty else "application/vnd.docker.multiplexed-stream"
        if params.get("follow", ["0"])[0] not in ("1", "true"):
            return self._send(200, frames(lines), ctype)
        # Following: a chunked stream, one chunk per new line, ended when the container stops or
        # goes (dockerd ends a follow then), when the client goes, or when the engine closes.
        self.close_connection = True
        self.send_response(200)
        self._common_headers()
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            data = frames(lines)
            if data:  # (an empty chunk would end the stream)
                self._chunk(data)
            while alive and not self.server.closing.is_set():
                new, alive = st.follow_logs(c, seen, 0.5)
                seen += len(new)
                data = frames(new)
                if data:
                    self.server.wait_while_stalled()
                    self._chunk(data)
                elif self._client_gone():
                    return
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass

    def _client_gone(self) -> bool:
        try:
            r, _, _ = select.select([self.connection], [], [], 0)
            return bool(r) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _events(self, params: dict[str, list[str]]) -> None:
        filters = _filters(params)
        st = self.server.state
        sub = st.subscribe()
        self.close_connection = True
        try:
            self.send_response(200)
            self._common_headers()
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            if not params.get("until"):
                while not self.server.closing.is_set():
                    try:
                        ev = sub.get(timeout=0.5)
                    except queue.Empty:
                        if self._client_gone():
                            return
                        continue
                    if ev is None:
                        break
                    self.server.wait_while_stalled()
                    if _event_matches(ev, filters):
                        self._chunk((json.dumps(ev) + "\n").encode())
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass
        finally:
            st.unsubscribe(sub)


def _event_matches(ev: dict, filters: dict[str, list[str]]) -> bool:
    if "type" in filters and ev["Type"] not in filters["type"]:
        return False
    if "event" in filters and ev["Action"] not in filters["event"]:
        return False
    if "container" in filters:
        name = ev["Actor"]["Attributes"].get("name", "")
        if not any(ev["id"].startswith(f) or name == f for f in filters["container"]):
            return False
    return True


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    # listen()'s backlog. socketserver's default of 5 is less than the watcher's 8 parallel
    # inspects: a UNIX socket whose backlog is full refuses a client with a timeout at once
    # (EAGAIN, BlockingIOError), and the engine would look unavailable. dockerd asks for
    # SOMAXCONN; so do we (the kernel caps it at net.core.somaxconn).
    request_queue_size = socket.SOMAXCONN

    def __init__(self, path: str, state: SimEngineState) -> None:
        self.state = state
        self.closing = threading.Event()
        self.answering = threading.Event()  # cleared: a hung engine (SimDockerd.stalled)
        self.answering.set()
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(path, _Handler)

    def process_request(self, request, client_address) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def wait_while_stalled(self) -> None:
        """Hold a request (or an event) while the engine plays hung; until it is closed."""
        while not self.answering.wait(0.1):
            if self.closing.is_set():
                return

    def drop_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class SimDockerd:
    """A running simulated engine: ``base_url`` (``unix://…/docker.sock``), ``engine`` (the state,
    to change from Python), ``close()``."""

    def __init__(self, server: _Server, socket_path: str, owned_dir: str | None) -> None:
        self._server = server
        self.socket_path = socket_path
        self.base_url = f"unix://{socket_path}"
        self.engine: SimEngineState = server.state
        self._owned_dir = owned_dir
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="gpudock-sim-dockerd", daemon=True
        )
        self._thread.start()

    @classmethod
    def start(
        cls, scenario: Scenario, socket_dir: str | os.PathLike | None = None, root: HostRoot | None = None
    ) -> SimDockerd:
        """Serve ``scenario``'s engine on ``<socket_dir>/docker.sock`` (a new temporary directory,
        removed by :meth:`close`, when not given); ``root``: the simulated host's files, where its
        volumes keep theirs."""
        owned = None
        if socket_dir is None:
            socket_dir = owned = tempfile.mkdtemp(prefix="gpudock-sim-")
        path = os.path.join(os.fspath(socket_dir), "docker.sock")
        if len(path.encode()) > 107:  # sun_path holds 108 bytes with the NUL
            raise ValueError(f"socket path too long for a UNIX socket: {path}")
        if os.path.exists(path):
            os.unlink(path)
        server = _Server(path, SimEngineState(scenario, root))
        return cls(server, path, owned)

    @contextlib.contextmanager
    def stalled(self):
        """Play a hung dockerd (as one stopped with SIGSTOP) for the block: connections are still
        accepted, but no request is answered and no event is sent until it ends."""
        self._server.answering.clear()
        try:
            yield self
        finally:
            self._server.answering.set()

    def close(self) -> None:
        """Stop serving: open event streams end, open connections are dropped, the socket goes."""
        srv = self._server
        srv.closing.set()
        srv.state.close_streams()
        srv.shutdown()
        srv.server_close()
        srv.drop_connections()
        self._thread.join(5)
        try:
            os.unlink(self.socket_path)
        except OSError:
            pass
        if self._owned_dir:
            shutil.rmtree(self._owned_dir, ignore_errors=True)

    def __enter__(self) -> SimDockerd:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
