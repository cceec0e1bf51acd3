"""Everything the doctor's checks look at, gathered once per run: :class:`HostFacts`.

This module owns the I/O of a doctor run. :func:`gather` reads the host under a root prefix
(procfs, sysfs, /dev, /lib/modules, ld.so.cache through ``gpudock.host.driverlibs``, Docker and
toolkit config files), asks NVML for one snapshot when given a session, and asks the Docker engine
when given a client. The checks (``gpudock.doctor.checks``) are pure functions of the facts, so
tests can build facts from test roots and the screen can re-run checks without re-reading.

A probe that fails leaves its field None and records why in ``errors`` (keyed by the field's
name); it never raises out of :func:`gather`.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from dataclasses import dataclass, field
from typing import Any

from gpudock.host import procfs
from gpudock.host.root import HostRoot
from gpudock.model import HostSnapshot

log = logging.getLogger(__name__)

DAEMON_JSON = "/etc/docker/daemon.json"
TOOLKIT_CONFIG = "/etc/nvidia-container-runtime/config.toml"  # the default; see gpudock.toolkit.config.locate_config
CDI_DIRS = ("/etc/cdi", "/var/run/cdi")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOOK = "nvidia-container-runtime-hook"
MAX_IMAGES = 500  # inspecting every image is one API call each; a registry mirror can hold thousands
PERSISTENCED_SOCKET = "/run/nvidia-persistenced/socket"
PERSISTENCED_PIDFILE = "/run/nvidia-persistenced/nvidia-persistenced.pid"
PERSISTENCED = "nvidia-persistenced"
FABRICMANAGER = "nv-fabricmanager"
# Processes the checks look for by name, found in one pass over /proc.
PROCESS_NAMES = ("dockerd", PERSISTENCED, FABRICMANAGER)
COMM_LEN = 15  # /proc/<pid>/comm holds at most TASK_COMM_LEN - 1 bytes of the name
# Where syslog daemons write kernel messages (Debian/Ubuntu: kern.log and syslog; RHEL: messages).
KERNEL_LOGS = ("/var/log/kern.log", "/var/log/messages", "/var/log/syslog")
KERNEL_LOG_TAIL = 2 << 20  # only the last 2 MiB of each: recent events, bounded time


@dataclass(frozen=True, slots=True)
class FileText:
    """A config file as read: host path, text (None when absent) and parse result or error."""

    path: str
    text: str | None
    parsed: Any = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Dockerd:
    """The running dockerd as /proc shows it (live root only, or a root with a copied /proc)."""

    pid: int
    path_env: str | None  # PATH from /proc/<pid>/environ; None when unreadable
    cmdline: tuple[str, ...]
    started: float | None  # epoch seconds, from /proc/<pid>/stat starttime and btime


@dataclass(frozen=True, slots=True)
class Process:
    """A process found by name under the root's /proc."""

    pid: int
    name: str  # the name looked for ("nvidia-persistenced"); comm holds only its first 15 bytes
    cmdline: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LogTail:
    """The end of a log file: ``text`` starts at a line boundary at byte ``offset`` (0: the whole
    file). ``text`` None: absent (``error`` None) or unreadable (``error`` says why)."""

    path: str
    text: str | None
    offset: int = 0
    size: int = 0
    mtime: float | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class SpecDir:
    """A directory the doctor reads CDI specs from, and who reads specs there (``named_by``:
    "docker info CDISpecDirs", "<daemon.json> cdi-spec-dirs", "<config.toml> spec-dirs", or
    "CDI default")."""

    path: str
    named_by: tuple[str, ...]


@dataclass
class HostFacts:
    root: HostRoot
    taken_at: float = 0.0
    # kernel side (gpudock.host.procfs)
    kernel_release: str | None = None
    driver: procfs.DriverVersion | None = None
    sys_module_version: str | None = None
    modules: dict | None = None
    majors: dict | None = None
    proc_gpus: tuple | None = None
    nodes: dict = field(default_factory=dict)
    pci: tuple | None = None
    on_disk: procfs.OnDiskModule | None = None
    boot_time: int | None = None
    cgroup_controllers: tuple | None = None
    reboot_required: tuple | None = None
    # user space (gpudock.host.driverlibs): the NVIDIA libraries in ld.so.cache
    libs: Any = None
    # NVML
    nvml: HostSnapshot | None = None
    nvml_checked: bool = False
    nvml_library: str | None = None  # which libnvidia-ml was loaded, when known
    # Docker and the toolkit
    daemon_json: FileText | None = None
    toolkit_config: FileText | None = None
    toolkit_config_source: str = "default"  # how locate_config found it (an env override, or the default)
    cdi_specs: tuple[FileText, ...] = ()
    cdi_spec_dirs: tuple[SpecDir, ...] = ()  # where cdi_specs were read (see cdi_spec_dirs())
    dockerd: tuple[Dockerd, ...] = ()
    hook_paths: tuple[str, ...] = ()  # hook binaries found on dockerd's PATH (host paths)
    docker_checked: bool = False
    docker_info: dict | None = None
    containers: tuple[dict, ...] = ()  # inspect dicts of running containers
    images: tuple[dict, ...] = ()  # inspect dicts of local images
    images_truncated: bool = False
    # daemons, /run files and the kernel log
    processes: dict[str, tuple[Process, ...]] | None = None  # by name; None: /proc not readable
    proc_count: int = 0  # processes visible under /proc (0: a copied root without /proc)
    persistenced_socket: str | None = None  # "socket", "not a socket", or None when absent
    persistenced_pidfile: str | None = None  # the pid file's text, None when absent
    kernel_logs: tuple[LogTail, ...] = ()
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def module_loaded(self) -> bool | None:
        if self.modules is None:
            return None
        return "nvidia" in self.modules

    @property
    def engine_cdi_dirs(self) -> tuple[str, ...] | None:
        """``CDISpecDirs`` of ``docker info``: where the engine reads CDI specs; ``()`` when CDI is
        off (Docker 25+ reports an empty list); None when the engine was not asked, did not
        answer, or predates CDI (Docker 24 and older have no such field)."""
        info = self.docker_info
        if not isinstance(info, dict) or not isinstance(info.get("CDISpecDirs"), list):
            return None
        return tuple(str(d) for d in info["CDISpecDirs"])

    @property
    def kernel_version(self) -> str | None:
        """The loaded module's version: /proc/driver/nvidia/version, else /sys/module/nvidia/version."""
        if self.driver:
            return self.driver.version
        return self.sys_module_version


def _try(facts: HostFacts, name: str, fn, *args, default=None):
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001 - a probe bug must become a finding, not a crash
        log.debug("probe %s failed", name, exc_info=True)
        facts.errors[name] = f"{type(e).__name__}: {e}"
        return default


def _read_parsed(root: HostRoot, path: str, parse, errors: type[Exception], kind: str) -> FileText:
    """A text file under the root, parsed; absent, unreadable or invalid is said, never raised."""
    try:
        text = root.read_text(path)
    except OSError as e:
        return FileText(path, None, None, f"unreadable: {e.strerror or e}")
    if text is None:
        return FileText(path, None)
    try:
        return FileText(path, text, parse(text))
    except errors as e:
        return FileText(path, text, None, f"invalid {kind}: {e}")


def read_json_file(root: HostRoot, path: str) -> FileText:
    # dockerd accepts an empty daemon.json
    return _read_parsed(root, path, lambda t: json.loads(t) if t.strip() else {}, json.JSONDecodeError, "JSON")


def read_toml_file(root: HostRoot, path: str) -> FileText:
    import tomllib

    return _read_parsed(root, path, tomllib.loads, tomllib.TOMLDecodeError, "TOML")


def cdi_spec_dirs(facts: HostFacts) -> tuple[SpecDir, ...]:
    """Every directory something on this host reads CDI specs from, in this order: the engine's
    (``docker info`` ``CDISpecDirs``), daemon.json's ``cdi-spec-dirs`` (the engine's after its next
    restart), the toolkit's ``[nvidia-container-runtime.modes.cdi] spec-dirs``, and CDI's defaults
    (``/etc/cdi``, ``/var/run/cdi``: podman, containerd, the toolkit's own default)."""
    named: dict[str, list[str]] = {}

    def add(dirs, who: str) -> None:
        if not isinstance(dirs, list | tuple):
            return
        for d in dirs:
            if isinstance(d, str) and d.startswith("/"):
                d = d.rstrip("/") or "/"
                if who not in named.setdefault(d, []):
                    named[d].append(who)

    add(facts.engine_cdi_dirs, "docker info CDISpecDirs")
    dj = facts.daemon_json
    if dj is not None and isinstance(dj.parsed, dict):
        add(dj.parsed.get("cdi-spec-dirs"), f"{dj.path} cdi-spec-dirs")
    tc = facts.toolkit_config
    if tc is not None and isinstance(tc.parsed, dict):
        cdi = ((tc.parsed.get("nvidia-container-runtime") or {}).get("modes") or {}).get("cdi") or {}
        if isinstance(cdi, dict):
            add(cdi.get("spec-dirs"), f"{tc.path} spec-dirs")
    add(CDI_DIRS, "CDI default")
    return tuple(SpecDir(d, tuple(who)) for d, who in named.items())


def read_cdi_specs(root: HostRoot, dirs: tuple[str, ...] = CDI_DIRS) -> tuple[FileText, ...]:
    import yaml

    out = []
    seen: set[str] = set()
    for d in dirs:
        for p in root.glob(f"{d}/*"):
            if not p.endswith((".yaml", ".yml", ".json")):
                continue
            try:
                real = root.real(p)
            except (OSError, ValueError):
                real = p
            if real in seen:
                continue  # one file reached through two names (/var/run/cdi and /run/cdi)
            seen.add(real)
            try:
                text = root.read_text(p)
            except OSError as e:
                out.append(FileText(p, None, None, f"unreadable: {e.strerror or e}"))
                continue
            if text is None:
                continue
            try:
                out.append(FileText(p, text, yaml.safe_load(text)))
            except yaml.YAMLError as e:
                out.append(FileText(p, text, None, f"invalid YAML: {e}"))
    return tuple(out)


def _cmdline(root: HostRoot, pid: int | str) -> tuple[str, ...]:
    data = root.read_bytes(f"/proc/{pid}/cmdline", 1 << 16) or b""
    return tuple(a.decode(errors="replace") for a in data.split(b"\0") if a)


def scan_processes(root: HostRoot, names=PROCESS_NAMES) -> tuple[int, dict[str, tuple[Process, ...]]]:
    """(number of processes under the root's /proc, {name: processes with that name}), in one pass.

    A name is matched on /proc/<pid>/comm, which keeps only the first 15 bytes
    ("nvidia-persistenced" shows as "nvidia-persiste"), and for truncated names confirmed on the
    basename of argv[0] when there is a command line."""
    by_comm = {n[:COMM_LEN]: n for n in names}
    found: dict[str, list[Process]] = {n: [] for n in names}
    count = 0
    for d in root.listdir("/proc"):
        if not d.isdigit():
            continue
        count += 1
        try:
            comm = (root.read_text(f"/proc/{d}/comm", 256) or "").strip()
        except OSError:
            continue
        name = by_comm.get(comm)
        if name is None:
            continue
        try:
            cmdline = _cmdline(root, d)
        except OSError:
            cmdline = ()
        argv0 = (cmdline[0].split() or [""])[0].rstrip(":") if cmdline else ""
        if len(name) > COMM_LEN and argv0 and os.path.basename(argv0) != name:
            continue  # another program whose name starts with the same 15 bytes
        found[name].append(Process(int(d), name, cmdline))
    return count, {n: tuple(v) for n, v in found.items()}


def find_dockerd(root: HostRoot, btime: int | None, pids=None) -> tuple[Dockerd, ...]:
    """dockerd processes under the root's /proc (comm "dockerd"); ``pids``: those already found
    by :func:`scan_processes` (None: look for them)."""
    out = []
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    if pids is None:
        pids = [p.pid for p in scan_processes(root, ("dockerd",))[1]["dockerd"]]
    for d in pids:
        path_env = None
        try:
            env = root.read_bytes(f"/proc/{d}/environ", 1 << 20)
            for item in (env or b"").split(b"\0"):
                if item.startswith(b"PATH="):
                    path_env = item[5:].decode(errors="replace")
        except OSError:
            pass
        cmdline: tuple[str, ...] = ()
        started = None
        try:
            cmdline = _cmdline(root, d)
            stat = root.read_text(f"/proc/{d}/stat", 4096) or ""
            fields = stat.rsplit(")", 1)[-1].split()
            if btime is not None and len(fields) > 19:
                started = btime + int(fields[19]) / ticks
        except (OSError, ValueError):
            pass
        out.append(Dockerd(int(d), path_env, cmdline, started))
    return tuple(out)


def socket_kind(root: HostRoot, path: str) -> str | None:
    """ "socket" or "not a socket" for what is at ``path`` (links followed inside the root); None when absent."""
    try:
        st = root.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return "socket" if stat.S_ISSOCK(st.st_mode) else "not a socket"


def read_tail(root: HostRoot, path: str, limit: int = KERNEL_LOG_TAIL) -> LogTail:
    """The last ``limit`` bytes of a log file, from the first whole line in them; never raises."""
    try:
        real = root.real(path, strict=True)
        # O_NONBLOCK: a FIFO in place of a log file must not block the doctor on open().
        with open(os.open(real, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)), "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                return LogTail(path, None, 0, 0, st.st_mtime, "not a regular file")
            offset = max(0, st.st_size - limit)
            fh.seek(offset)
            data = fh.read(limit)
    except (FileNotFoundError, NotADirectoryError):
        return LogTail(path, None)
    except OSError as e:
        return LogTail(path, None, error=f"unreadable: {e.strerror or e}")
    if offset:
        nl = data.find(b"\n")
        cut = nl + 1 if nl >= 0 else len(data)
        data, offset = data[cut:], offset + cut
    return LogTail(path, data.decode("utf-8", "replace"), offset, st.st_size, st.st_mtime)


def find_on_path(root: HostRoot, name: str, path_env: str | None) -> tuple[str, ...]:
    found = []
    for d in (path_env or DEFAULT_PATH).split(":"):
        if not d.startswith("/"):
            continue
        p = f"{d.rstrip('/')}/{name}"
        try:
            st = root.stat(p)
        except OSError:
            continue
        if st.st_mode & 0o111 and not os.path.isdir(root.real(p)):
            found.append(p)
    return tuple(dict.fromkeys(found))


def _daemon_json_path(dockerds: tuple[Dockerd, ...]) -> str:
    """The config file the running daemon uses: --config-file when given, else the default."""
    for d in dockerds:
        args = list(d.cmdline)
        for i, a in enumerate(args):
            if a.startswith("--config-file="):
                return a.split("=", 1)[1]
            if a == "--config-file" and i + 1 < len(args):
                return args[i + 1]
    return DAEMON_JSON


def gather_docker(facts: HostFacts, client, unreachable: str | None = None) -> None:
    """Engine info, running containers and local images (inspect dicts) from a docker client.
    ``unreachable``: why there is no client, in an operator's words (the session's)."""
    facts.docker_checked = True
    if client is None:
        facts.errors["docker"] = unreachable or "no Docker engine was given (none reachable)"
        return
    api = getattr(client, "api", client)
    try:
        facts.docker_info = api.info()
    except Exception as e:  # noqa: BLE001 - docker.errors.*, requests errors, socket errors
        facts.errors["docker"] = _engine_words(e, api)
        return
    containers = []
    try:
        for c in api.containers(filters={"status": "running"}):
            try:
                containers.append(api.inspect_container(c["Id"]))
            except Exception:  # noqa: BLE001 - gone between list and inspect
                continue
    except Exception as e:  # noqa: BLE001
        facts.errors["containers"] = f"could not list containers: {e}"
    facts.containers = tuple(containers)
    images = []
    try:
        summaries = api.images()
        facts.images_truncated = len(summaries) > MAX_IMAGES
        for s in summaries[:MAX_IMAGES]:
            try:
                images.append(api.inspect_image(s["Id"]))
            except Exception:  # noqa: BLE001 - removed meanwhile
                continue
    except Exception as e:  # noqa: BLE001
        facts.errors["images"] = f"could not list images: {e}"
    facts.images = tuple(images)


def _engine_words(exc: BaseException, api) -> str:
    """What an engine failure means, never docker-py's exception text: the engine's own
    explanation of a refusal, or why it cannot be reached and what to do."""
    import docker

    from gpudock.host.docker import explain_connect_error

    if isinstance(exc, docker.errors.APIError):
        return f"the Docker engine refused: {exc.explanation or exc}"
    adapter = getattr(api, "_custom_adapter", None)
    sock = getattr(adapter, "socket_path", None)
    url = f"unix://{sock}" if sock else getattr(api, "base_url", "the Docker engine")
    return explain_connect_error(exc, url)


def gather_libs(facts: HostFacts) -> None:
    from gpudock.doctor import libview

    facts.libs = _try(facts, "libs", libview.scan, facts.root)


def read_toolkit_config(root: HostRoot, environ=None) -> tuple[FileText, str]:
    """config.toml where the toolkit screen and CLI find it (one lookup:
    ``gpudock.toolkit.config.locate_config``, resolved inside the root): (file, how it was found)."""
    from gpudock.toolkit.config import locate_config

    loc = locate_config(root=root, environ=environ)
    return read_toml_file(root, loc.host_path), loc.source


def gather(
    root: HostRoot | str = "/",
    nvml_session=None,
    docker=None,
    *,
    use_docker: bool = True,
    nvml_library: str | None = None,
    environ=None,
    docker_unreachable: str | None = None,
) -> HostFacts:
    """Read every fact the checks need. ``nvml_session``: an NvmlSession (or None: NVML not
    asked); ``docker``: a docker client (or None: engine unreachable / not asked); ``environ``:
    where NVIDIA_CTK_CONFIG_FILE_PATH/XDG_CONFIG_HOME are read (default os.environ)."""
    root = root if isinstance(root, HostRoot) else HostRoot(root)
    f = HostFacts(root=root, taken_at=time.time())
    f.kernel_release = _try(f, "kernel_release", procfs.kernel_release, root)
    f.driver = _try(f, "driver", procfs.driver_version, root)
    f.sys_module_version = _try(f, "sys_module_version", procfs.sys_module_version, root)
    f.modules = _try(f, "modules", procfs.loaded_modules, root)
    f.majors = _try(f, "majors", procfs.char_majors, root)
    f.proc_gpus = _try(f, "proc_gpus", procfs.proc_gpus, root)
    f.nodes = _try(f, "nodes", procfs.device_nodes, root, default={})
    f.pci = _try(f, "pci", procfs.pci_devices, root)
    f.on_disk = _try(f, "on_disk", procfs.module_on_disk, root, f.kernel_release)
    f.boot_time = _try(f, "boot_time", procfs.boot_time, root)
    f.cgroup_controllers = _try(f, "cgroup_controllers", procfs.cgroup_controllers, root)
    f.reboot_required = _try(f, "reboot_required", procfs.reboot_required, root)
    gather_libs(f)
    if nvml_session is not None:
        f.nvml_checked = True
        f.nvml_library = nvml_library
        f.nvml = _try(f, "nvml", nvml_session.snapshot, False)
    scan = _try(f, "processes", scan_processes, root)
    if scan is not None:
        f.proc_count, f.processes = scan
    pids = [p.pid for p in f.processes["dockerd"]] if f.processes else None
    f.dockerd = _try(f, "dockerd", find_dockerd, root, f.boot_time, pids, default=())
    if use_docker and docker is not None:
        f.dockerd = _engine_first(f.dockerd, docker)
    f.daemon_json = _try(f, "daemon_json", read_json_file, root, _daemon_json_path(f.dockerd))
    tc = _try(f, "toolkit_config", read_toolkit_config, root, environ)
    if tc is not None:
        f.toolkit_config, f.toolkit_config_source = tc
    f.persistenced_socket = _try(f, "persistenced_socket", socket_kind, root, PERSISTENCED_SOCKET)
    f.persistenced_pidfile = _try(f, "persistenced_pidfile", root.read_text, PERSISTENCED_PIDFILE, 4096)
    f.kernel_logs = tuple(t for t in (_try(f, "kernel_logs", read_tail, root, p) for p in KERNEL_LOGS) if t)
    path_env = next((d.path_env for d in f.dockerd if d.path_env), None)
    f.hook_paths = _try(f, "hook_paths", find_on_path, root, HOOK, path_env, default=())
    if use_docker:
        gather_docker(f, docker, docker_unreachable)
    # after the engine: its CDISpecDirs name where it reads specs
    f.cdi_spec_dirs = _try(
        f, "cdi_spec_dirs", cdi_spec_dirs, f, default=tuple(SpecDir(d, ("CDI default",)) for d in CDI_DIRS)
    )
    f.cdi_specs = _try(f, "cdi_specs", read_cdi_specs, root, tuple(d.path for d in f.cdi_spec_dirs), default=())
    return f


def _engine_first(dockerds: tuple[Dockerd, ...], client) -> tuple[Dockerd, ...]:
    """Put the dockerd serving ``client`` first: a host can run several (rootless, tests), and the
    hook on *that* daemon's PATH is what decides --gpus."""
    api = getattr(client, "api", client)
    # docker-py keeps the unix socket path on its adapter; base_url is "http+docker://localhost".
    sock = str(getattr(getattr(api, "_custom_adapter", None), "socket_path", "") or "")
    if not sock or not dockerds:
        return dockerds
    mine = [d for d in dockerds if any(sock in a or (a.startswith("unix://") and a[7:] in sock) for a in d.cmdline)]
    return tuple(mine) + tuple(d for d in dockerds if d not in mine) if mine else dockerds
