"""The holders map: which containers hold each GPU, which processes run on it, and what is wrong.

This module owns the join of a :class:`~gpudock.model.HostSnapshot` (GPUs and their NVML
processes, host PIDs) with the containers from :mod:`gpudock.host.docker` (their resolved
claims) and :mod:`gpudock.host.procmap` (host PID → container, PID inside it). It reads nothing
but ``/proc/<pid>`` (through the PID mapper) and returns immutable values with ``to_json()``.

Conflicts (:class:`Conflict` ``kind``):

"Running" below means running, paused or restarting (what ``docker ps`` lists).

* ``shared`` — two or more *running* containers hold the same GPU (MIG: the same MIG device, or
  one of them holds the whole GPU); or a privileged container runs a process, by ``--privileged``
  alone, on a GPU (MIG device) that another running container holds: one conflict per GPU and
  privileged container, with ``pid`` set to its first such process;
* ``holds-all`` — a running container holds every GPU of a host with more than one;
* ``no-container`` — a GPU process that runs in no container (a host process; a PID whose
  ``/proc`` entry cannot be read is shown with ``location == "unreadable"``, not as a conflict);
* ``foreign-container`` — a GPU process in a container this Docker engine does not know
  (Kubernetes/containerd, CRI-O, podman, another engine; not raised while the engine is unreadable);
* ``unclaimed`` — a process on a GPU its container was not given and cannot reach (a
  hand-mapped ``/dev/nvidia*`` the rules could not see, a ``--device-cgroup-rule`` with a bind
  mount of ``/dev``, a stale claim; not ``--privileged``, see below);
* ``unresolved`` — a running container asks for a GPU that does not exist on this host;
* ``privileged`` — a running container is ``--privileged``: it can open every GPU's device node,
  including cards given to other containers (a warning, like ``holds-all``: one per container,
  ``gpu_uuid`` None). When it actually uses a card another container holds, that is also a
  ``shared`` conflict (above): the warning is about what it could do, ``shared`` about what it does.

``--privileged`` (claims with mechanism ``privileged``, see :mod:`gpudock.host.claims`) means the
container *can reach* every GPU, not that it *holds* them. What an operator needs from it:

* its processes on any GPU are its own: they are attributed to it with ``claimed`` True and
  ``access == "privileged"`` (``"claim"`` when an explicit claim covers them), never
  ``unclaimed``;
* it is not a holder: :attr:`GpuHolders.holders`, the holder column, ``shared`` and ``holds-all``
  count explicit claims only, so a privileged container that runs nothing does not hide the
  containers that really hold each card (and a privileged container that also selects GPUs with
  ``NVIDIA_VISIBLE_DEVICES`` or ``--gpus`` holds those, as any container would);
* it is listed as able to reach the rest: :attr:`GpuHolders.reachable_by` (per GPU, the
  containers that can open it without holding it) and :attr:`ContainerGpus.reachable` (per
  container, the GPUs it can open without holding them; with :attr:`ContainerGpus.gpus` that is
  every GPU), and flagged by the ``privileged`` conflict, which
  :meth:`HoldersMap.conflicts_for_gpu` also returns for a GPU where the container runs a process
  by privilege alone (so that row is marked; the other rows are not, as the container does not
  use them).

Stopped containers (with ``--all``) are listed with what they would hold, and take no part in
``shared``/``holds-all``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from gpudock.host.claims import gpu_key
from gpudock.host.procmap import ContainerPid, PidMapper
from gpudock.model import Claim, Container, Gpu, GpuProcess, HostSnapshot, mechanism_label

__all__ = [
    "Holder",
    "HeldProcess",
    "GpuRef",
    "GpuHolders",
    "ContainerGpus",
    "Conflict",
    "HoldersMap",
    "build_holders",
]

# Container states in which a container holds its devices now (``docker ps`` without ``-a``).
ACTIVE_STATES = frozenset({"running", "paused", "restarting"})

ProcessLocation = Literal["container", "foreign-container", "host", "unreadable"]
ConflictKind = Literal[
    "shared", "holds-all", "no-container", "foreign-container", "unclaimed", "unresolved", "privileged"
]
# How a process's container may use its GPU: an explicit claim covers it, or only --privileged.
ProcessAccess = Literal["claim", "privileged"]
PRIVILEGED = "privileged"  # the claim mechanism and the conflict kind


@dataclass(frozen=True, slots=True)
class Holder:
    """One container holding one GPU, and how (all of its claims on that GPU).

    The same shape lists a container that can *reach* a GPU without holding it
    (:attr:`GpuHolders.reachable_by`: mechanisms ``("privileged",)``, selectors ``("--privileged",)``).
    """

    container_id: str
    name: str
    status: str
    mechanisms: tuple[str, ...]  # "device", "runtime-env", "device-request", "cdi"; "privileged" (reach)
    selectors: tuple[str, ...]  # what it asked for, verbatim ("/dev/nvidia3", "count=2", "all")
    mig_uuids: tuple[str, ...] = ()  # the MIG devices it holds on this GPU; () = the whole GPU
    whole: bool = True  # holds the whole GPU (not only MIG devices)

    @property
    def running(self) -> bool:
        """Running, paused or restarting: it holds the GPU now (what ``docker ps`` lists)."""
        return self.status in ACTIVE_STATES

    @property
    def short_id(self) -> str:
        return self.container_id[:12]

    def to_json(self) -> dict:
        return {
            "container_id": self.container_id,
            "name": self.name,
            "status": self.status,
            "mechanisms": list(self.mechanisms),
            "selectors": list(self.selectors),
            "mig_uuids": list(self.mig_uuids),
        }


@dataclass(frozen=True, slots=True)
class HeldProcess:
    """A GPU process (NVML, host PID) with the container it runs in.

    ``claimed``: True when its container holds this GPU or can reach it (``--privileged``), False
    when it cannot (a conflict), None when it is in no container this engine knows. ``access``
    says which when True: ``"claim"`` (an explicit claim covers it) or ``"privileged"`` (only
    ``--privileged`` does: the container uses a card it was not given); None otherwise.
    """

    pid: int
    gpu_uuid: str | None
    gpu_index: int
    container_id: str | None  # full id; set for a foreign container too
    container_name: str | None  # None when Docker does not know the container
    container_pid: int | None  # NSpid: the PID inside the container
    used_memory_mib: int | None = None
    kind: str = "compute"
    command: str | None = None
    mig_uuid: str | None = None
    claimed: bool | None = None
    # "container": a container this engine knows; "foreign-container": one it does not;
    # "host": no container; "unreadable": /proc/<pid> gone or not visible (e.g. a simulated host)
    location: ProcessLocation = "unreadable"
    access: ProcessAccess | None = None

    def to_json(self) -> dict:
        return {
            "pid": self.pid,
            "location": self.location,
            "gpu_uuid": self.gpu_uuid,
            "gpu_index": self.gpu_index,
            "container_id": self.container_id,
            "container_name": self.container_name,
            "container_pid": self.container_pid,
            "used_memory_mib": self.used_memory_mib,
            "type": self.kind,
            "command": self.command,
            "mig_uuid": self.mig_uuid,
            "claimed": self.claimed,
            "access": self.access,
        }


@dataclass(frozen=True, slots=True)
class GpuRef:
    uuid: str
    index: int | None
    minor: int | None
    mechanisms: tuple[str, ...] = ()
    mig_uuids: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {
            "uuid": self.uuid,
            "index": self.index,
            "minor": self.minor,
            "mechanisms": list(self.mechanisms),
            "mig_uuids": list(self.mig_uuids),
        }


@dataclass(frozen=True, slots=True)
class GpuHolders:
    """One GPU: who holds it, who else can reach it, and what runs on it.

    ``holders``: containers with an explicit claim on it (the holder column). ``reachable_by``:
    containers that can open it without holding it (``--privileged``), same shape, same order.
    """

    index: int
    uuid: str | None
    minor: int | None
    pci_bus_id: str | None
    name: str | None
    holders: tuple[Holder, ...]
    processes: tuple[HeldProcess, ...]
    conflicts: tuple[Conflict, ...] = ()
    reachable_by: tuple[Holder, ...] = ()

    @property
    def running_holders(self) -> tuple[Holder, ...]:
        return tuple(h for h in self.holders if h.running)

    def label(self, width: int | None = None) -> str:
        """The holder column's text: "" (free), "name", "name +2" (running holders only)."""
        names = [h.name for h in self.holders if h.running]
        if not names:
            return ""
        s = names[0] if len(names) == 1 else f"{names[0]} +{len(names) - 1}"
        if width is not None and len(s) > width:
            tail = "" if len(names) == 1 else f" +{len(names) - 1}"
            keep = max(1, width - len(tail) - 1)
            s = names[0][:keep] + "…" + tail
        return s

    def to_json(self) -> dict:
        return {
            "index": self.index,
            "uuid": self.uuid,
            "minor": self.minor,
            "pci_bus_id": self.pci_bus_id,
            "name": self.name,
            "holders": [h.to_json() for h in self.holders],
            "reachable_by": [h.to_json() for h in self.reachable_by],
            "processes": [p.to_json() for p in self.processes],
        }


@dataclass(frozen=True, slots=True)
class ContainerGpus:
    """One container: the GPUs it holds (in the order it asked for them), its GPU processes, its bad claims.

    ``privileged``: started with ``--privileged``; ``reachable``: the GPUs it can open without
    holding them (every GPU not in ``gpus`` when privileged, else ``()``), mechanisms
    ``("privileged",)``. ``label()`` and ``holds_all`` count held GPUs only.
    """

    container: Container
    gpus: tuple[GpuRef, ...]
    processes: tuple[HeldProcess, ...]
    unresolved: tuple[Claim, ...]  # claims whose gpu_uuid is None (error says why)
    holds_all: bool = False
    privileged: bool = False
    reachable: tuple[GpuRef, ...] = ()

    @property
    def id(self) -> str:
        return self.container.id

    @property
    def name(self) -> str:
        return self.container.name

    def label(self) -> str:
        """GPU indices for the container panel: "0,1,3", "all (8)", "" (none)."""
        if self.holds_all and len(self.gpus) > 1:
            return f"all ({len(self.gpus)})"
        return ",".join(str(g.index) if g.index is not None else "?" for g in self.gpus)

    def to_json(self) -> dict:
        out = self.container.to_json()
        out["gpus"] = [g.to_json() for g in self.gpus]
        out["processes"] = [p.to_json() for p in self.processes]
        out["holds_all"] = self.holds_all
        out["privileged"] = self.privileged
        out["reachable_gpus"] = [g.to_json() for g in self.reachable]
        return out


@dataclass(frozen=True, slots=True)
class Conflict:
    kind: ConflictKind
    message: str
    gpu_uuid: str | None = None
    gpu_index: int | None = None
    container_ids: tuple[str, ...] = ()
    pid: int | None = None

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "message": self.message,
            "gpu_uuid": self.gpu_uuid,
            "gpu_index": self.gpu_index,
            "container_ids": list(self.container_ids),
            "pid": self.pid,
        }


@dataclass(frozen=True, slots=True)
class HoldersMap:
    gpus: tuple[GpuHolders, ...]
    containers: tuple[ContainerGpus, ...]
    conflicts: tuple[Conflict, ...]
    docker: object | None = None  # gpudock.host.docker.DockerStatus (or None when not asked)

    def gpu(self, uuid: str) -> GpuHolders | None:
        for g in self.gpus:
            if g.uuid == uuid:
                return g
        return None

    def running_holder_names(self) -> dict[str, tuple[str, ...]]:
        """GPU UUID -> names of the running containers holding it (the launcher's "already held"
        warnings), sorted."""
        return {
            g.uuid: tuple(sorted(h.name for h in g.running_holders)) for g in self.gpus if g.uuid and g.running_holders
        }

    def labels(self, width: int | None = None) -> dict[str, str]:
        """GPU UUID → the holder column's text (:meth:`GpuHolders.label`), for every GPU with a UUID."""
        return {g.uuid: g.label(width) for g in self.gpus if g.uuid}

    def gpu_at(self, index: int) -> GpuHolders | None:
        for g in self.gpus:
            if g.index == index:
                return g
        return None

    def container(self, cid: str) -> ContainerGpus | None:
        """By full id, short id prefix or name."""
        for c in self.containers:
            if c.id == cid:
                return c
        for c in self.containers:
            if c.id.startswith(cid) or c.name == cid:
                return c
        return None

    def conflicts_for_container(self, cid: str) -> tuple[Conflict, ...]:
        return tuple(c for c in self.conflicts if cid in c.container_ids)

    def conflicts_for_gpu(self, uuid: str) -> tuple[Conflict, ...]:
        """Conflicts on this GPU (shared, its processes), holds-all conflicts of its holders, and
        privileged conflicts of containers that run a process on it by ``--privileged`` alone
        (not of every privileged container: a GPU it does not use is not marked)."""
        g = self.gpu(uuid)
        holders = {h.container_id for h in g.holders} if g else set()
        by_privilege = {p.container_id for p in g.processes if p.access == PRIVILEGED} if g else set()
        return tuple(
            c
            for c in self.conflicts
            if c.gpu_uuid == uuid
            or (c.kind == "holds-all" and holders & set(c.container_ids))
            or (c.kind == PRIVILEGED and by_privilege & set(c.container_ids))
        )

    def conflicts_for_unreadable(self, index: int) -> tuple[Conflict, ...]:
        """The running containers' claims on a GPU NVML cannot read (it has no UUID): what the
        lost card takes down with it."""
        return tuple(
            c for c in self.conflicts if c.kind == "unresolved" and c.gpu_uuid is None and c.gpu_index == index
        )

    def container_names(self, ids) -> list[str]:
        by_id = {c.id: c.name for c in self.containers}
        return [by_id.get(i, i[:12]) for i in ids]

    def to_json(self) -> dict:
        d = self.docker
        return {
            "docker": d.to_json() if d is not None and hasattr(d, "to_json") else None,
            "gpus": [g.to_json() for g in self.gpus],
            "containers": [c.to_json() for c in self.containers],
            "conflicts": [c.to_json() for c in self.conflicts],
        }


def _short(cid: str) -> str:
    return cid[:12]


def _uniq(items) -> tuple:
    return tuple(dict.fromkeys(i for i in items if i is not None))


def _overlap(a: Holder, b: Holder) -> bool:
    if a.whole or b.whole:
        return True
    return bool(set(a.mig_uuids) & set(b.mig_uuids))


@dataclass(frozen=True, slots=True)
class _Static:
    """The part of the map that depends only on the containers and the GPU list (not on the
    processes): computed once per (containers tuple, GPU key) and reused by steady refreshes."""

    known: dict
    claims_on: dict  # gpu uuid → container id → [Claim]
    reach_on: dict  # gpu uuid → frozenset of container ids that can reach it (--privileged)
    holders_of: dict  # gpu uuid → tuple[Holder]
    reachable_of: dict  # gpu uuid → tuple[Holder] (reach without holding)
    gpu_conflicts: dict  # gpu uuid → tuple[Conflict] (shared)
    containers: tuple  # tuple[ContainerGpus] without processes
    position: dict  # container id → index in containers
    conflicts: tuple  # shared, holds-all, unresolved


_STATIC_CACHE: list = []  # [(containers tuple, gpu key, _Static)], most recent first
_STATIC_CACHE_SIZE = 4
_static_lock = threading.Lock()


def _static_for(containers: Sequence[Container], gpus: tuple[Gpu, ...]) -> _Static:
    if not isinstance(containers, tuple):
        return _build_static(containers, gpus)
    key = gpu_key(gpus)
    with _static_lock:
        for i, (cs, k, st) in enumerate(_STATIC_CACHE):
            if cs is containers and k == key:
                if i:
                    _STATIC_CACHE.insert(0, _STATIC_CACHE.pop(i))
                return st
    st = _build_static(containers, gpus)
    with _static_lock:
        _STATIC_CACHE.insert(0, (containers, key, st))
        del _STATIC_CACHE[_STATIC_CACHE_SIZE:]
    return st


def _unreadable_gpu_named(cl: Claim, gpus: tuple[Gpu, ...]) -> int | None:
    """The index of the GPU an unresolved claim names when that GPU is on this host but NVML
    cannot read it (lost, needing a reset: no UUID to resolve to), so that its row can say which
    container it takes down with it. None when the claim names no such GPU."""
    sel = cl.selector.strip()
    if sel.startswith("nvidia.com/gpu="):
        sel = sel.split("=", 1)[1]
    unreadable = [g for g in gpus if not g.uuid]
    if sel.isdigit():
        hit = [g for g in unreadable if g.index == int(sel)]
    elif sel.startswith("/dev/nvidia") and sel[len("/dev/nvidia") :].isdigit():
        hit = [g for g in unreadable if g.minor == int(sel[len("/dev/nvidia") :])]
    else:
        hit = []
    return hit[0].index if len(hit) == 1 else None


def _build_static(containers: Sequence[Container], gpus: tuple[Gpu, ...]) -> _Static:
    by_uuid = {g.uuid: g for g in gpus if g.uuid}
    known = {c.id: c for c in containers}

    # --- claims → per container {gpu uuid: claims}, per GPU {container id: claims}
    claims_on: dict[str, dict[str, list[Claim]]] = {}
    mine_of: dict[str, dict[str, list[Claim]]] = {}
    unresolved: dict[str, list[Claim]] = {}
    reach: dict[str, set[str]] = {}  # gpu uuid → privileged container ids
    privileged: set[str] = set()
    for c in containers:
        if not c.claims:
            continue
        mine: dict[str, list[Claim]] = {}
        for cl in c.claims:
            u = cl.gpu_uuid
            if cl.mechanism == PRIVILEGED:  # can reach, not holds
                privileged.add(c.id)
                if u in by_uuid:
                    reach.setdefault(u, set()).add(c.id)
                continue
            if u is None:
                unresolved.setdefault(c.id, []).append(cl)
            elif u in by_uuid:
                lst = mine.get(u)
                if lst is None:
                    lst = mine[u] = []
                    claims_on.setdefault(u, {})[c.id] = lst
                lst.append(cl)
            else:  # resolved against another GPU list; treat as unresolved now
                unresolved.setdefault(c.id, []).append(
                    replace(cl, gpu_uuid=None, error=f"no GPU with UUID {u} on this host")
                )
        if mine:
            mine_of[c.id] = mine

    # one summary per (container, GPU), shared by Holder and GpuRef
    summary: dict[tuple[str, str], tuple[tuple, tuple, tuple, bool]] = {}
    holders_of: dict[str, tuple[Holder, ...]] = {}
    for uuid, per in claims_on.items():
        hs = []
        for cid, cls in per.items():
            c = known[cid]
            if len(cls) == 1:
                cl = cls[0]
                sm = ((cl.mechanism,), (cl.selector,), (cl.mig_uuid,) if cl.mig_uuid else (), cl.mig_uuid is None)
            else:
                sm = (
                    _uniq(cl.mechanism for cl in cls),
                    _uniq(cl.selector for cl in cls),
                    _uniq(cl.mig_uuid for cl in cls),
                    any(cl.mig_uuid is None for cl in cls),
                )
            summary[(cid, uuid)] = sm
            hs.append(Holder(cid, c.name, c.status, sm[0], sm[1], sm[2], sm[3]))
        hs.sort(key=lambda h: (not h.running, h.name))
        holders_of[uuid] = tuple(hs)

    reachable_of: dict[str, tuple[Holder, ...]] = {}
    for uuid, cids in reach.items():
        held = claims_on.get(uuid, {})
        hs = [
            Holder(cid, known[cid].name, known[cid].status, (PRIVILEGED,), ("--privileged",))
            for cid in cids
            if cid not in held
        ]
        if hs:
            hs.sort(key=lambda h: (not h.running, h.name, h.container_id))
            reachable_of[uuid] = tuple(hs)

    conflicts: list[Conflict] = []
    gpu_conflicts: dict[str, tuple[Conflict, ...]] = {}
    for g in gpus:
        running = [h for h in holders_of.get(g.uuid, ()) if h.running] if g.uuid else []
        if len(running) < 2:
            continue
        clash: set[str] = set()
        for i, h in enumerate(running):
            for o in running[i + 1 :]:
                if _overlap(h, o):
                    clash.add(h.container_id)
                    clash.add(o.container_id)
        if clash:
            names = [h.name for h in running if h.container_id in clash]
            c = Conflict(
                "shared",
                f"GPU {g.index} is held by {len(names)} running containers: {', '.join(names)}",
                g.uuid,
                g.index,
                tuple(h.container_id for h in running if h.container_id in clash),
            )
            gpu_conflicts[g.uuid] = (c,)
            conflicts.append(c)

    n_gpus = len(by_uuid)
    order = {g.uuid: i for i, g in enumerate(gpus) if g.uuid}
    cont_out = []
    for c in containers:
        mine = mine_of.get(c.id)
        refs: tuple[GpuRef, ...] = ()
        if mine:
            lst = []
            # in the container's own order: --gpus '"device=2,0"' holds 2 first, and that matters
            # (CUDA device 0 inside it is GPU 2)
            asked = {u: i for i, u in enumerate(c.gpu_uuids)}
            for u in sorted(mine, key=lambda u: (asked.get(u, len(asked)), order[u])):
                g = by_uuid[u]
                sm = summary[(c.id, u)]
                lst.append(GpuRef(u, g.index, g.minor, sm[0], sm[2]))
            refs = tuple(lst)
        holds_all = n_gpus > 1 and len(refs) == n_gpus
        bad = tuple(unresolved.get(c.id, ()))
        is_priv = c.id in privileged
        reachable: tuple[GpuRef, ...] = ()
        if is_priv:
            reachable = tuple(
                GpuRef(g.uuid, g.index, g.minor, (PRIVILEGED,))
                for g in gpus
                if g.uuid and c.id in reach.get(g.uuid, ()) and not (mine and g.uuid in mine)
            )
        cont_out.append(
            ContainerGpus(
                container=c,
                gpus=refs,
                processes=(),
                unresolved=bad,
                holds_all=holds_all,
                privileged=is_priv,
                reachable=reachable,
            )
        )
        active = c.status in ACTIVE_STATES
        if active and holds_all:
            conflicts.append(
                Conflict("holds-all", f"container {c.name} holds every GPU ({n_gpus})", None, None, (c.id,))
            )
        if active and is_priv:
            conflicts.append(
                Conflict(PRIVILEGED, _privileged_message(c, refs, reach, holders_of, gpus), None, None, (c.id,))
            )
        if active and gpus:  # no GPUs at all (NVML failed): the NVML banner says it, not 1 line per claim
            for cl in bad:
                conflicts.append(
                    Conflict(
                        "unresolved",
                        f"container {c.name} asks for {cl.selector!r} ({mechanism_label(cl.mechanism)}): {cl.error}",
                        None,
                        _unreadable_gpu_named(cl, gpus),
                        (c.id,),
                    )
                )
    return _Static(
        known=known,
        claims_on=claims_on,
        reach_on={u: frozenset(ids) for u, ids in reach.items()},
        holders_of=holders_of,
        reachable_of=reachable_of,
        gpu_conflicts=gpu_conflicts,
        containers=tuple(cont_out),
        position={c.id: i for i, c in enumerate(containers)},
        conflicts=tuple(conflicts),
    )


def _privileged_message(
    c: Container, refs: tuple[GpuRef, ...], reach: dict, holders_of: dict, gpus: tuple[Gpu, ...]
) -> str:
    """The privileged conflict's text: what it can reach, and the cards it can reach that other
    running containers hold (the risk an operator acts on)."""
    n = sum(1 for g in gpus if g.uuid and c.id in reach.get(g.uuid, ()))
    msg = f"container {c.name} is privileged (--privileged): it can open every GPU ({n})"
    if refs:
        msg += f", not only the {'one' if len(refs) == 1 else len(refs)} it holds"
    others = []
    for g in gpus:
        if not g.uuid or c.id not in reach.get(g.uuid, ()):
            continue
        names = [h.name for h in holders_of.get(g.uuid, ()) if h.running and h.container_id != c.id]
        if names:
            others.append(f"{g.index} ({', '.join(names)})")
    if others:
        msg += f", including GPUs held by other containers: {'; '.join(others)}"
    return msg


def build_holders(
    snapshot: HostSnapshot,
    containers: Sequence[Container],
    *,
    pid_mapper: Callable[[int], ContainerPid | None] | None = None,
    proc_root: str = "/proc",
    docker_status: object | None = None,
) -> HoldersMap:
    """Join GPUs, containers and GPU processes into a :class:`HoldersMap`.

    ``pid_mapper`` maps a host PID to :class:`ContainerPid` (default: a fresh
    :class:`~gpudock.host.procmap.PidMapper` over ``proc_root``). A process whose PID cannot be
    read keeps the container the snapshot already gave it (simulated hosts), else none.

    Everything that depends only on the containers and the GPU list is cached for the same
    ``containers`` tuple (as :meth:`DockerWatcher.snapshot` returns it while nothing changed), so a
    steady refresh only maps the GPU processes.
    """
    docker_ok = docker_status is None or bool(getattr(docker_status, "ok", True))
    mapper = pid_mapper if pid_mapper is not None else PidMapper(proc_root)
    gpus: tuple[Gpu, ...] = tuple(snapshot.gpus)
    st = _static_for(containers, gpus)
    known = st.known
    claims_on = st.claims_on
    reach_on = st.reach_on

    # --- processes
    procs_of_gpu: dict[int, list[HeldProcess]] = {}
    procs_of_container: dict[str, list[HeldProcess]] = {}
    conflicts: list[Conflict] = []
    priv_shared: dict[str, list[Conflict]] = {}  # gpu uuid → shared conflicts from --privileged use
    for g in gpus:
        if not g.processes:
            continue
        out = procs_of_gpu.setdefault(g.index, [])
        for p in g.processes:
            hp = _map_process(p, g, mapper, known, claims_on, reach_on)
            out.append(hp)
            if hp.container_id and hp.container_id in known:
                procs_of_container.setdefault(hp.container_id, []).append(hp)
            what = f"PID {p.pid}" + (f" ({p.command})" if p.command else "")
            if hp.access == PRIVILEGED:
                c = _privileged_use(g, hp, what, st.holders_of.get(g.uuid, ()), priv_shared.get(g.uuid, ()))
                if c is not None:
                    priv_shared.setdefault(g.uuid, []).append(c)
                    conflicts.append(c)
            if hp.location == "unreadable":
                continue
            if hp.location == "host":
                conflicts.append(
                    Conflict(
                        "no-container", f"{what} on GPU {g.index} runs in no container", g.uuid, g.index, (), p.pid
                    )
                )
            elif hp.location == "foreign-container":
                if not docker_ok:  # the engine is unreadable: we cannot tell whose it is
                    continue
                conflicts.append(
                    Conflict(
                        "foreign-container",
                        f"{what} on GPU {g.index} runs in container {_short(hp.container_id)}, "
                        "which this Docker engine does not know (Kubernetes, containerd, podman or another engine?)",
                        g.uuid,
                        g.index,
                        (hp.container_id,),
                        p.pid,
                    )
                )
            elif hp.claimed is False:
                conflicts.append(
                    Conflict(
                        "unclaimed",
                        f"{what} in container {hp.container_name} runs on GPU {g.index}, "
                        f"which {hp.container_name} was not given",
                        g.uuid,
                        g.index,
                        (hp.container_id,),
                        p.pid,
                    )
                )

    gpu_out = tuple(
        GpuHolders(
            index=g.index,
            uuid=g.uuid,
            minor=g.minor,
            pci_bus_id=g.pci_bus_id,
            name=g.name,
            holders=st.holders_of.get(g.uuid, ()) if g.uuid else (),
            processes=tuple(procs_of_gpu.get(g.index, ())),
            conflicts=(st.gpu_conflicts.get(g.uuid, ()) + tuple(priv_shared.get(g.uuid, ()))) if g.uuid else (),
            reachable_by=st.reachable_of.get(g.uuid, ()) if g.uuid else (),
        )
        for g in gpus
    )
    cont_out = st.containers
    if procs_of_container:
        lst = list(cont_out)
        for cid, procs in procs_of_container.items():
            i = st.position[cid]
            lst[i] = replace(lst[i], processes=tuple(procs))
        cont_out = tuple(lst)
    return HoldersMap(gpu_out, cont_out, tuple(conflicts) + st.conflicts, docker_status)


def _privileged_use(
    g: Gpu, hp: HeldProcess, what: str, holders: tuple[Holder, ...], seen: Sequence[Conflict]
) -> Conflict | None:
    """A ``shared`` conflict when a process that reached ``g`` through ``--privileged`` alone runs
    on a card (or MIG device) another running container holds; None when none does, or when this
    GPU already has one for the same container."""
    cid = hp.container_id
    if any(cid == c.container_ids[-1] for c in seen):
        return None
    others = [
        h
        for h in holders
        if h.running and h.container_id != cid and (h.whole or hp.mig_uuid is None or hp.mig_uuid in h.mig_uuids)
    ]
    if not others:
        return None
    names = ", ".join(h.name for h in others)
    return Conflict(
        "shared",
        f"GPU {g.index} is held by {names} and used by privileged container {hp.container_name} "
        f"through --privileged: {what}",
        g.uuid,
        g.index,
        tuple(h.container_id for h in others) + (cid,),
        hp.pid,
    )


def _map_process(
    p: GpuProcess,
    g: Gpu,
    mapper: Callable[[int], ContainerPid | None],
    known: dict[str, Container],
    claims_on: dict[str, dict[str, list[Claim]]],
    reach_on: dict[str, frozenset[str]],
) -> HeldProcess:
    cp = mapper(p.pid)
    cid: str | None = None
    cpid: int | None = None
    location = "unreadable"
    if cp is not None:
        location = "container" if cp.ids else "host"
        depth = next((i for i, x in enumerate(cp.ids) if x in known), None)
        if depth is not None:
            cid = cp.ids[depth]
            cpid = cp.container_pid(depth)
        elif cp.ids:
            cid = cp.ids[0]
            cpid = cp.container_pid(0)
    elif p.container_id:  # PID not readable here (simulated host): keep what the snapshot says
        cid = p.container_id
        cpid = p.container_pid
        if cid not in known:
            cid = next((k for k in known if k.startswith(cid)), cid)
    c = known.get(cid) if cid else None
    if cid is not None:
        location = "container" if c is not None else "foreign-container"
    claimed: bool | None = None
    access: ProcessAccess | None = None
    if c is not None and g.uuid:
        cls = claims_on.get(g.uuid, {}).get(c.id, ())
        if any(cl.mig_uuid is None or p.mig_uuid is None or cl.mig_uuid == p.mig_uuid for cl in cls):
            claimed, access = True, "claim"
        elif c.id in reach_on.get(g.uuid, ()):
            claimed, access = True, PRIVILEGED
        else:
            claimed = False
    return HeldProcess(
        pid=p.pid,
        gpu_uuid=g.uuid,
        gpu_index=g.index,
        container_id=cid,
        container_name=c.name if c is not None else None,
        container_pid=cpid,
        used_memory_mib=p.used_memory_mib,
        kind=p.kind,
        command=p.command,
        mig_uuid=p.mig_uuid,
        claimed=claimed,
        location=location,
        access=access,
    )


def proc_root_for(root: str | None) -> str:
    """``<root>/proc`` for a ``--root`` prefix ("/" or None: "/proc")."""
    return os.path.join(root or "/", "proc")
