"""Which GPUs a container holds, read from its ``docker inspect`` dict. Pure functions, no I/O.

This module owns the rules for every way Docker hands a container a GPU, and for resolving what
the container asked for against the GPUs NVML reports on this host. It is split in two steps so
that a cache can keep the first and redo only the second when the GPU list changes:

* :func:`parse_requests` turns an inspect dict into :class:`GpuRequest` values (what was asked
  for, verbatim, with its mechanism). It does not need the GPU list.
* :func:`resolve_requests` turns requests into :class:`~gpudock.model.Claim` values against a
  :class:`GpuIndex` built from the host's :class:`~gpudock.model.Gpu` list.

:func:`claims_from_inspect` does both.

Mechanisms and the semantics chosen (references: nvidia-stack.md §6.1, §8.3, §9; failures.md §20):

``device`` — ``HostConfig.Devices``. A ``/dev/nvidia<minor>`` node is mapped **by minor**, never by
    index (NVML index and minor differ on many boards). What the container can open is the host
    node's major:minor: Docker stats ``PathOnHost`` (links followed) and writes that number into the
    container's device cgroup rule, whatever either path is called. So with a ``read_node`` (see
    :func:`parse_requests`; the watcher reads the node through the host's root) the claim is the
    node's: char 195:N with N <= 253 is the GPU of minor N; 195:254 (``nvidia-modeset``), 195:255
    (``nvidiactl``), another major (``nvidia-uvm``, ``/dev/null``) or a path that is not a char
    device holds no card. Only when the node cannot be read (missing, unreadable, an engine on
    another machine) are the names used, and the claim says so in its ``error``: the minor is
    taken from ``PathOnHost`` when that is ``/dev/nvidiaN``, else from ``PathInContainer``
    ``/dev/nvidiaN`` (the host path may be anywhere, e.g. ``/tmp/x/nvidia3``), else from a host
    basename ``nvidiaN``. Control nodes (``nvidiactl``, ``nvidia-uvm``, ``nvidia-uvm-tools``,
    ``nvidia-modeset``, ``nvidia-caps/*``, ``nvidia-nvswitch*``) hold no card. A ``PathOnHost``
    that is a CDI name (``vendor.com/class=name``) is a ``cdi`` request. A directory given as
    ``--device`` (Docker then adds every device node under it) is not walked: it holds no card.

``runtime-env`` — the container's runtime (``HostConfig.Runtime``, or the engine's default runtime
    when empty) is one registered for NVIDIA, and ``NVIDIA_VISIBLE_DEVICES`` in ``Config.Env``
    (image env merged with ``-e``; the last value wins) says which devices:

    * unset: no GPU, **except** a legacy CUDA image (``CUDA_VERSION`` set and
      ``NVIDIA_REQUIRE_CUDA`` unset), where the toolkit defaults to ``all``;
    * empty, or ``void`` anywhere in the list: no GPU (runc behaviour);
    * ``none``: a GPU container with no card (libraries and control devices only): no claim;
    * ``all``; NVML indices; full UUIDs (case-insensitive); UUID prefixes (``GPU-fef8089b``, which
      older toolkits and the docs accept; current libnvidia-container requires the full UUID) when
      they match exactly one GPU; PCI bus ids; MIG ``<gpu>:<mig>``, ``MIG-<uuid>`` and
      ``MIG-GPU-<uuid>/<gi>/<ci>``; CDI names.

    ``NV_GPU`` is read by the old nvidia-docker wrapper only, never by the engine or the runtime:
    it never counts. The toolkit's ``swarm-resource`` and volume-mount device lists are not read
    (off by default). When the container also has an NVIDIA device request (``--gpus``), the
    engine appends its own ``NVIDIA_VISIBLE_DEVICES`` to the OCI spec, which wins: the env claims
    are then not counted. Nor are they when it has ``nvidia.com/gpu`` CDI devices from a
    DeviceRequest: NVIDIA's CDI specs (``nvidia-ctk cdi generate``) set
    ``NVIDIA_VISIBLE_DEVICES=void`` in their ``containerEdits``, and the engine's CDI injection
    replaces the image's or ``-e`` value with it in the OCI spec (seen on Docker 26: a CUDA image
    with ``NVIDIA_VISIBLE_DEVICES=all`` on the nvidia runtime, given ``nvidia.com/gpu=3``, runs
    with ``void`` and holds GPU 3 only).

``device-request`` — ``HostConfig.DeviceRequests`` (``--gpus``) with ``Driver`` ``nvidia``, or
    empty with a capability AND-list the NVIDIA driver offers (``[["gpu"]]``): ``DeviceIDs``
    (indices, UUIDs, ...; a quoted ``"device=1,2"`` id is split on commas as the engine joins them),
    ``Count`` N → indices 0..N-1, ``Count`` -1 → all, ``Count`` 0 → none.

``cdi`` — CDI names of kind ``nvidia.com/gpu`` (``=0``, ``=GPU-<uuid>``, ``=all``, ``=0:1``,
    ``=MIG-<uuid>``, ``=gpu0``, ``=mig0:1``) from ``DeviceRequests`` with ``Driver`` ``cdi``, from
    ``HostConfig.Devices`` entries whose ``PathOnHost`` is a CDI name, and (NVIDIA runtime only)
    from ``HostConfig.Annotations`` ``cdi.k8s.io/*`` values. Other vendors' kinds hold no
    NVIDIA GPU and are ignored. Docker 25+ (``docker run --device nvidia.com/gpu=0``, or the API)
    reports CDI devices only as a DeviceRequest, in inspect as ``{"Driver": "cdi", "Count": 0,
    "DeviceIDs": ["nvidia.com/gpu=0", ...], "Capabilities": [], "Options": {}}`` (Docker 26.1);
    a CDI name in ``HostConfig.Devices`` is refused by Docker at start ("error gathering device
    information while adding custom device"), so such a container never runs there.

``privileged`` — ``HostConfig.Privileged`` (``docker run --privileged``, compose ``privileged: true``).
    Docker gives a privileged container every device node of the host and a device cgroup that
    allows them all, so it can open every ``/dev/nvidia<minor>`` whatever else it asked for
    (failures.md §20, NVIDIA/nvidia-docker#764). The request resolves to one Claim per GPU of this
    host (``selector`` ``"--privileged"``, ``mig_uuid`` None: MIG devices too, as it also sees
    ``/dev/nvidia-caps``); GPUs without a UUID are left out, and with no GPU known (NVML failed)
    there is nothing to claim, so no Claim and no error. It does not depend on the runtime (runc
    gives the nodes too; only the driver libraries would be missing).

    These claims mean *can reach*, not *holds*: :mod:`gpudock.host.holders` keeps them out of the
    holders (a privileged container running nothing would otherwise look like it held every card,
    hiding the containers that really do), uses them to attribute the container's GPU processes to
    it (not "unclaimed"), lists the container as one that can reach every GPU, and raises a
    ``privileged`` conflict. The container's other mechanisms are read as for any container and
    still claim what they select: the NVIDIA runtime honours ``NVIDIA_VISIBLE_DEVICES`` for a
    privileged container even where ``accept-nvidia-visible-devices-envvar-when-unprivileged`` is
    false, and ``--gpus``, devices and CDI are unaffected by the flag. ``CapAdd: SYS_ADMIN`` alone
    does not open the device cgroup and is not read.

A selector that names nothing on this host becomes a Claim with ``gpu_uuid=None`` and an ``error``
that says why ("index 9 does not exist on this host (8 GPUs)"). A MIG claim has ``gpu_uuid`` set to
the parent GPU and ``mig_uuid`` to the MIG device. A resolved claim may carry an ``error`` too: a
note on how sure it is (a device node that could not be read, mapped by its name).
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gpudock.model import Claim, ClaimMechanism, Gpu, MigDevice, sysfs_bus_id

__all__ = [
    "GpuRequest",
    "GpuIndex",
    "NVIDIA_DRIVER_CAPABILITIES",
    "parse_requests",
    "resolve_requests",
    "claims_from_inspect",
    "gpu_key",
    "is_nvidia_runtime_path",
    "nvidia_runtimes",
    "is_cdi_name",
    "env_map",
    "NodeReader",
    "NVIDIA_MAJOR",
]

# The capability set moby's NVIDIA device driver registers (daemon/nvidia_linux.go).
NVIDIA_DRIVER_CAPABILITIES = frozenset(
    {"gpu", "nvidia", "compute", "compat32", "graphics", "utility", "video", "display"}
)

# The NVIDIA driver's character major: minors 0-253 are GPUs, 254 nvidia-modeset, 255 nvidiactl.
NVIDIA_MAJOR = 195
_MAX_GPU_MINOR = 253

# (major, minor) of the character device a host path names (links followed), None when it names
# something else (a file, a directory, a block device); OSError when it cannot be read.
NodeReader = Callable[[str], "tuple[int, int] | None"]

_DEV_CARD = re.compile(r"^/dev/nvidia(\d+)$")
_BASENAME_CARD = re.compile(r"(?:^|/)nvidia(\d+)$")
# vendor.com/class=name; vendor is a DNS-ish name, class a word.
_CDI_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9.\-]*)/([A-Za-z0-9][A-Za-z0-9_.\-]*)=(.+)$")
_INDEX = re.compile(r"^\d+$")
_MIG_INDEX = re.compile(r"^(\d+):(\d+)$")
_MIG_OLD = re.compile(r"^MIG-(GPU-[0-9A-Fa-f-]+)/(\d+)/(\d+)$")
_BUS_ID = re.compile(r"^(?:([0-9A-Fa-f]{1,8}):)?([0-9A-Fa-f]{1,2}):([0-9A-Fa-f]{1,2})\.([0-7])$")
_CDI_TYPE_INDEX = re.compile(r"^(gpu|mig)(\d+(?::\d+)?)$")


@dataclass(frozen=True, slots=True)
class GpuRequest:
    """One device a container asked for, before resolving it against this host's GPUs.

    ``selector`` is shown to the operator verbatim ("/dev/nvidia3", "2", "count=2",
    "nvidia.com/gpu=0"); ``token`` is what gets resolved: an NVIDIA device id ("all", "2",
    "GPU-…", "0:1", "MIG-…", a bus id), ``"minor:N"`` for a device node, ``"count:N"`` for a
    ``--gpus N`` request, ``"cdi:<name>"`` for the part after ``=`` of an ``nvidia.com/gpu`` CDI
    name, or ``"privileged"`` for a ``--privileged`` container (every GPU it can reach).
    """

    mechanism: ClaimMechanism
    selector: str
    token: str
    note: str | None = None  # how it was read, when not from the device itself (becomes the claim's error)


# --------------------------------------------------------------------------------------------
# Engine runtimes


def is_nvidia_runtime_path(path: str | None) -> bool:
    """True when a runtime's executable is an NVIDIA container runtime.

    ``nvidia-container-runtime`` and its modes (``.cdi``, ``.legacy``), and the older
    ``nvidia-container-runtime-experimental``, wherever installed.
    """
    if not path:
        return False
    base = path.rstrip("/").rsplit("/", 1)[-1]
    return base.startswith("nvidia-container-runtime") and not base.startswith("nvidia-container-runtime-hook")


def nvidia_runtimes(runtimes: Mapping[str, Any] | None) -> frozenset[str]:
    """Names of the engine's runtimes (``docker info`` ``Runtimes``) that are NVIDIA's."""
    out = set()
    for name, spec in (runtimes or {}).items():
        path = spec.get("path") if isinstance(spec, Mapping) else None
        if is_nvidia_runtime_path(path):
            out.add(name)
    return frozenset(out)


# --------------------------------------------------------------------------------------------
# Parsing


def env_map(env: Iterable[str] | None) -> dict[str, str]:
    """``Config.Env`` ("K=V" strings) as a dict; the last value of a key wins, as in the kernel's
    view of a duplicated variable and the toolkit's env map. "K" without "=" is skipped."""
    out: dict[str, str] = {}
    for item in env or ():
        if not isinstance(item, str):
            continue
        k, sep, v = item.partition("=")
        if sep:
            out[k] = v
    return out


def is_cdi_name(s: str) -> bool:
    """A fully qualified CDI device name, ``vendor.com/class=name`` (not a path)."""
    return not s.startswith("/") and _CDI_NAME.match(s) is not None


def _cdi_request(name: str, mechanism: ClaimMechanism) -> GpuRequest | None:
    m = _CDI_NAME.match(name.strip())
    if not m:
        return GpuRequest(mechanism, name, "bad:not a CDI device name (vendor.com/class=name)")
    vendor, cls, dev = m.groups()
    if vendor.lower() != "nvidia.com" or cls.lower() != "gpu":
        return None  # another vendor's or kind's device: not an NVIDIA GPU
    return GpuRequest(mechanism, name, "cdi:" + dev)


def _split_list(value: str) -> list[str]:
    return [t.strip() for t in value.split(",") if t.strip()]


def _device_requests(devs: Any, read_node: NodeReader | None = None) -> list[GpuRequest]:
    out: list[GpuRequest] = []
    for d in devs or ():
        if not isinstance(d, Mapping):
            continue
        host = d.get("PathOnHost") or ""
        cont = d.get("PathInContainer") or ""
        if not isinstance(host, str) or not isinstance(cont, str):
            continue
        if host and is_cdi_name(host):
            r = _cdi_request(host, "cdi")
            if r:
                out.append(r)
            continue
        selector = host if (not cont or cont == host) else f"{host}:{cont}"
        note = None
        if read_node is not None and host.startswith("/"):
            try:
                node = read_node(host)
            except OSError as e:
                # the errno's words: strerror may carry where it was resolved (a temporary root)
                why = os.strerror(e.errno) if e.errno and e.errno != errno.EREMOTE else (e.strerror or str(e))
                note = f"the host node {host} could not be read ({why}): its GPU is taken from the name"
            else:
                if node is not None and node[0] == NVIDIA_MAJOR and node[1] <= _MAX_GPU_MINOR:
                    out.append(GpuRequest("device", selector, f"minor:{node[1]}"))
                continue  # a control node, another driver's device, or no device: no card
        minor = None
        for path, rx in ((host, _DEV_CARD), (cont, _DEV_CARD), (host, _BASENAME_CARD)):
            m = rx.search(path) if path else None
            if m:
                minor = int(m.group(1))
                break
        if minor is None:
            continue  # not a card: control device, something else, or a directory
        out.append(GpuRequest("device", selector, f"minor:{minor}", note))
    return out


def _is_nvidia_request(dr: Mapping[str, Any]) -> bool:
    driver = (dr.get("Driver") or "").strip().lower()
    if driver == "nvidia":
        return True
    if driver:
        return False
    # Empty driver: the engine picks a driver whose capability set holds one AND-list.
    for and_list in dr.get("Capabilities") or ():
        caps = {str(c).strip().lower() for c in (and_list or ())}
        if caps and caps <= NVIDIA_DRIVER_CAPABILITIES:
            return True
    return False


def _device_request_requests(drs: Any) -> tuple[list[GpuRequest], bool]:
    """Requests from ``DeviceRequests``, and whether any was an NVIDIA (``--gpus``) request."""
    out: list[GpuRequest] = []
    nvidia = False
    for dr in drs or ():
        if not isinstance(dr, Mapping):
            continue
        driver = (dr.get("Driver") or "").strip().lower()
        ids = [str(i) for i in (dr.get("DeviceIDs") or ()) if i is not None]
        if driver == "cdi":
            for name in ids:
                for part in _split_list(name):
                    r = _cdi_request(part, "cdi")
                    if r:
                        out.append(r)
            continue
        if not _is_nvidia_request(dr):
            continue
        nvidia = True
        if ids:
            for i in ids:
                for tok in _split_list(i):
                    out.append(GpuRequest("device-request", tok, tok))
            continue
        try:
            count = int(dr.get("Count") or 0)
        except (TypeError, ValueError):
            count = 0
        if count < 0:
            out.append(GpuRequest("device-request", "count=all", "all"))
        elif count > 0:
            out.append(GpuRequest("device-request", f"count={count}", f"count:{count}"))
        # Count 0 and no ids: the engine sets NVIDIA_VISIBLE_DEVICES=void.
    return out, nvidia


def _runtime_env_requests(env: Mapping[str, str]) -> list[GpuRequest]:
    value = env.get("NVIDIA_VISIBLE_DEVICES")
    if value is None:
        if "CUDA_VERSION" in env and "NVIDIA_REQUIRE_CUDA" not in env:
            return [GpuRequest("runtime-env", "all (unset; legacy CUDA image default)", "all")]
        return []
    tokens = _split_list(value)
    if not tokens or any(t.lower() == "void" for t in tokens):
        return []
    if any(t.lower() == "none" for t in tokens):
        return []
    out = []
    for t in tokens:
        if is_cdi_name(t):
            r = _cdi_request(t, "runtime-env")
            if r:
                out.append(r)
        else:
            out.append(GpuRequest("runtime-env", t, t))
    return out


def parse_requests(
    inspect: Mapping[str, Any],
    nvidia_runtime_names: Iterable[str] = ("nvidia",),
    default_runtime: str | None = "runc",
    read_node: NodeReader | None = None,
) -> tuple[GpuRequest, ...]:
    """Everything a container asked for, in the order devices, ``--gpus``, CDI, runtime env, and
    last ``privileged`` when ``HostConfig.Privileged`` is true (see the module docstring).

    ``nvidia_runtime_names`` are the engine runtimes whose path is an NVIDIA container runtime
    (see :func:`nvidia_runtimes`); ``default_runtime`` is the engine's ``DefaultRuntime``, used when
    the container's ``HostConfig.Runtime`` is empty. ``read_node`` reads a ``--device`` host node
    on the engine's host (:data:`NodeReader`); without one, devices are read from their names.
    Malformed or missing parts of the dict are treated as absent, never raised.
    """
    hc = inspect.get("HostConfig") or {}
    cfg = inspect.get("Config") or {}
    if not isinstance(hc, Mapping):
        hc = {}
    if not isinstance(cfg, Mapping):
        cfg = {}
    out = _device_requests(hc.get("Devices"), read_node)
    dr_reqs, has_nvidia_dr = _device_request_requests(hc.get("DeviceRequests"))
    out.extend(r for r in dr_reqs if r.mechanism == "device-request")
    cdi_reqs = [r for r in dr_reqs if r.mechanism == "cdi"]
    out.extend(cdi_reqs)
    runtime = hc.get("Runtime") or default_runtime
    names = nvidia_runtime_names if isinstance(nvidia_runtime_names, (set, frozenset)) else set(nvidia_runtime_names)
    if runtime and runtime in names:
        # The NVIDIA runtime also reads CDI device lists from OCI annotations "cdi.k8s.io/*"
        # (HostConfig.Annotations, API >= 1.43), ahead of the env var.
        ann = hc.get("Annotations")
        if isinstance(ann, Mapping):
            for k, v in sorted(ann.items()):
                if isinstance(k, str) and k.startswith("cdi.k8s.io/") and isinstance(v, str):
                    for name in _split_list(v):
                        r = _cdi_request(name, "cdi")
                        if r:
                            out.append(r)
        # --gpus appends the engine's NVIDIA_VISIBLE_DEVICES; an NVIDIA CDI spec sets it to void.
        if not has_nvidia_dr and not cdi_reqs:
            out.extend(_runtime_env_requests(env_map(cfg.get("Env"))))
    if hc.get("Privileged") is True:
        out.append(GpuRequest("privileged", "--privileged", "privileged"))
    return tuple(out)


# --------------------------------------------------------------------------------------------
# Resolving


def gpu_key(gpus: Sequence[Gpu]) -> tuple:
    """What claim resolution depends on in a GPU list; equal keys resolve claims identically."""
    return tuple(
        (
            g.index,
            g.uuid,
            g.minor,
            g.pci_bus_id,
            tuple((m.index, m.uuid, m.gpu_instance_id, m.compute_instance_id) for m in g.mig_devices),
        )
        for g in gpus
    )


def _bus_key(s: str) -> str | None:
    m = _BUS_ID.match(s)
    if not m:
        return None
    dom, bus, dev, fn = m.groups()
    return f"{int(dom or '0', 16):04x}:{int(bus, 16):02x}:{int(dev, 16):02x}.{fn}"


class GpuIndex:
    """Lookups over one GPU list (by index, UUID, minor, bus id, MIG). Build once per GPU list."""

    __slots__ = ("gpus", "key", "by_index", "by_uuid", "by_minor", "by_bus", "mig_by_uuid")

    def __init__(self, gpus: Sequence[Gpu]) -> None:
        self.gpus: tuple[Gpu, ...] = tuple(gpus)
        self.key = gpu_key(self.gpus)
        self.by_index = {g.index: g for g in self.gpus}
        self.by_uuid = {g.uuid.lower(): g for g in self.gpus if g.uuid}
        self.by_minor = {g.minor: g for g in self.gpus if g.minor is not None}
        self.by_bus: dict[str, Gpu] = {}
        for g in self.gpus:
            if g.pci_bus_id:
                try:
                    self.by_bus[sysfs_bus_id(g.pci_bus_id)] = g
                except (ValueError, IndexError):
                    pass
        self.mig_by_uuid: dict[str, tuple[Gpu, MigDevice]] = {}
        for g in self.gpus:
            for m in g.mig_devices:
                if m.uuid:
                    self.mig_by_uuid[m.uuid.lower()] = (g, m)

    def __len__(self) -> int:
        return len(self.gpus)

    def _count(self) -> str:
        n = len(self.gpus)
        return f"{n} GPU" + ("" if n == 1 else "s")

    # Each returns a list of (gpu_uuid, mig_uuid, error).

    def all(self) -> list[tuple[str | None, str | None, str | None]]:
        if not self.gpus:
            return [(None, None, "no GPUs are known on this host")]
        return [
            (g.uuid, None, None if g.uuid else f"GPU {g.index} cannot be read by NVML (lost, or needs a reset)")
            for g in self.gpus
        ]

    def index(self, i: int) -> tuple[str | None, str | None, str | None]:
        g = self.by_index.get(i)
        if g is None:
            return None, None, f"index {i} does not exist on this host ({self._count()})"
        if not g.uuid:
            return None, None, f"GPU {i} cannot be read by NVML (lost, or needs a reset)"
        return g.uuid, None, None

    def minor(self, n: int) -> tuple[str | None, str | None, str | None]:
        g = self.by_minor.get(n)
        if g is None:
            return None, None, f"no GPU on this host has minor {n} (/dev/nvidia{n})"
        if not g.uuid:
            return None, None, f"GPU {g.index} (minor {n}) cannot be read by NVML (lost, or needs a reset)"
        return g.uuid, None, None

    def uuid(self, u: str) -> tuple[str | None, str | None, str | None]:
        g = self.by_uuid.get(u.lower())
        if g is not None:
            return g.uuid, None, None
        low = u.lower()
        hits = [g for k, g in self.by_uuid.items() if k.startswith(low)]
        if len(hits) == 1:
            return hits[0].uuid, None, None
        if len(hits) > 1:
            return None, None, f"UUID prefix {u} matches {len(hits)} GPUs on this host"
        return None, None, f"no GPU with UUID {u} on this host"

    def mig_index(self, gi: int, mi: int) -> tuple[str | None, str | None, str | None]:
        g = self.by_index.get(gi)
        if g is None:
            return None, None, f"index {gi} does not exist on this host ({self._count()})"
        for m in g.mig_devices:
            if m.index == mi:
                return g.uuid, m.uuid, None
        if not g.mig_devices:
            return None, None, f"GPU {gi} has no MIG devices (MIG {gi}:{mi} does not exist)"
        return None, None, (f"MIG device {gi}:{mi} does not exist (GPU {gi} has {len(g.mig_devices)} MIG devices)")

    def mig_uuid(self, u: str) -> tuple[str | None, str | None, str | None]:
        hit = self.mig_by_uuid.get(u.lower())
        if hit:
            return hit[0].uuid, hit[1].uuid, None
        m = _MIG_OLD.match(u)
        if m:
            parent = self.by_uuid.get(m.group(1).lower())
            if parent is None:
                return None, None, f"no GPU with UUID {m.group(1)} on this host (MIG parent)"
            gi, ci = int(m.group(2)), int(m.group(3))
            for d in parent.mig_devices:
                if d.gpu_instance_id == gi and d.compute_instance_id == ci:
                    return parent.uuid, d.uuid, None
            return None, None, (f"GPU {parent.index} has no MIG device with GPU instance {gi}, compute instance {ci}")
        return None, None, f"no MIG device with UUID {u} on this host"

    def bus(self, key: str, shown: str) -> tuple[str | None, str | None, str | None]:
        g = self.by_bus.get(key)
        if g is None:
            return None, None, f"no GPU at PCI bus id {shown} on this host"
        return g.uuid, None, None


def _resolve_id(ix: GpuIndex, tok: str) -> list[tuple[str | None, str | None, str | None]]:
    """Resolve one NVIDIA device id (NVIDIA_VISIBLE_DEVICES / DeviceIDs syntax)."""
    t = tok.strip()
    low = t.lower()
    if low == "all":
        return ix.all()
    if _INDEX.match(t):
        return [ix.index(int(t))]
    m = _MIG_INDEX.match(t)
    if m:
        return [ix.mig_index(int(m.group(1)), int(m.group(2)))]
    if low.startswith("mig-"):
        return [ix.mig_uuid(t)]
    if low.startswith("gpu-"):
        return [ix.uuid(t)]
    bk = _bus_key(t)
    if bk:
        return [ix.bus(bk, t)]
    if low in ("none", "void"):
        return []
    return [(None, None, f"{t!r} is not a GPU index, UUID, MIG device or PCI bus id")]


def _resolve_cdi(ix: GpuIndex, dev: str) -> list[tuple[str | None, str | None, str | None]]:
    m = _CDI_TYPE_INDEX.match(dev)
    if m:  # type-index names: gpu0, mig0:1
        return _resolve_id(ix, m.group(2))
    if dev.lower() in ("none", "void"):
        return [(None, None, f"{dev!r} is not an NVIDIA CDI device name")]
    return _resolve_id(ix, dev)


def resolve_requests(requests: Iterable[GpuRequest], index: GpuIndex) -> tuple[Claim, ...]:
    """Claims for ``requests`` against the GPUs in ``index``: one Claim per GPU a request names
    (``all`` gives one per GPU), or one Claim with ``gpu_uuid=None`` and an error. A
    ``privileged`` request gives one Claim per GPU with a UUID and never an error."""
    out: list[Claim] = []
    for r in requests:
        tok = r.token
        if tok.startswith("minor:"):
            results = [index.minor(int(tok[6:]))]
        elif tok.startswith("count:"):
            n = int(tok[6:])
            # One error for the GPUs past the host's, not one each: --gpus 1000000000 is one request.
            results = [index.index(i) for i in range(min(n, len(index)))]
            if n > len(index):
                asked = f"{n} GPU" + ("" if n == 1 else "s")
                results.append((None, None, f"{asked} asked for; this host has {index._count()}"))
        elif tok.startswith("cdi:"):
            results = _resolve_cdi(index, tok[4:])
        elif tok == "privileged" and r.mechanism == "privileged":
            results = [(g.uuid, None, None) for g in index.gpus if g.uuid]
        elif tok.startswith("bad:"):
            results = [(None, None, tok[4:])]
        else:
            results = _resolve_id(index, tok)
        for uuid, mig, err in results:
            if r.note is not None:
                err = r.note if err is None else f"{err} ({r.note})"
            out.append(Claim(r.mechanism, r.selector, uuid, err, mig))
    return tuple(out)


def claims_from_inspect(
    inspect: Mapping[str, Any],
    gpus: Sequence[Gpu] | GpuIndex,
    nvidia_runtime_names: Iterable[str] = ("nvidia",),
    default_runtime: str | None = "runc",
    read_node: NodeReader | None = None,
) -> tuple[Claim, ...]:
    """The container's claims on this host's GPUs (:func:`parse_requests` then
    :func:`resolve_requests`)."""
    ix = gpus if isinstance(gpus, GpuIndex) else GpuIndex(gpus)
    return resolve_requests(parse_requests(inspect, nvidia_runtime_names, default_runtime, read_node), ix)
