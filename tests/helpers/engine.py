"""A private Docker engine for gpudock's tests and benchmarks.

    from helpers.engine import Engine          # with tests/ on sys.path
    with Engine.start() as eng:                # or Engine.start(workdir)
        eng.client.containers.run(eng.image, ["echo", "hi"], remove=True)

`Engine.start` runs Debian's `dockerd` (20.10) with its own data root, exec root, socket,
pidfile and daemon.json, no networking set-up (`--bridge=none`, no iptables), and the runtime
`nvidia` registered (it is plain runc: `--add-runtime nvidia=<runc>`). Its PATH starts with
`tests/helpers/bin`, which holds a stand-in `nvidia-container-runtime-hook`; dockerd registers
its NVIDIA device driver only when that hook is in PATH, so `--gpus` (DeviceRequests) works and
runc really runs the stand-in as a prestart hook. The stand-in logs like the real hook when
`[nvidia-container-cli] debug` is set in the config.toml at `eng.hook_config` (dockerd's
environment carries `GPUDOCK_TEST_TOOLKIT_CONFIG=<eng.hook_config>`).

No registry is used: the test image `gpudock-test/busybox:latest` is built (engine's classic
builder, `FROM scratch` + `ADD rootfs.tar /`) from a rootfs made of the host's static busybox
(Debian package `busybox-static`) with a symlink per applet. Its stop signal is SIGKILL, so
`container.stop()` and engine shutdown do not wait 10 s for a PID-1 `sleep` that ignores SIGTERM.
`make_image(eng, "gpudock-test/cuda:12.2", env={...}, labels={...})` builds further images on it.

Device nodes: `make_nvidia_dev_nodes(dir)` creates `nvidiactl`, `nvidia0..7`, `nvidia-modeset`,
`nvidia-uvm`, `nvidia-uvm-tools` with mknod (char devices; see NVIDIA_DEV_NODES); map them into
containers as `devices=[f"{eng.dev_dir}/nvidia3:/dev/nvidia3:rwm"]`.

A second engine for CDI: `CdiEngine.start(dev_dir=..., cdi_dir=...)` runs Debian 13's dockerd
(Docker 26.1, the first Debian release with CDI; unpacked from its .deb by ./scripts/test into
.test-run/docker26, never installed; it runs on Debian 12's containerd and runc) with
`{"features": {"cdi": true}, "cdi-spec-dirs": [cdi_dir]}` in its daemon.json and otherwise the
same set-up (own roots and socket, runtime `nvidia` = runc, the stand-in hook on its PATH, the
busybox test image). `--device nvidia.com/gpu=...` (a DeviceRequest with Driver "cdi") then
injects what the specs in `eng.cdi_dir` say (tests/helpers/cdi.py writes NVIDIA-style specs).

Environment knobs: GPUDOCK_TEST_DOCKERD (the dockerd binary), GPUDOCK_TEST_DOCKERD26 (the CDI
engine's dockerd, 25 or newer; default .test-run/docker26/usr/sbin/dockerd),
GPUDOCK_TEST_STORAGE_DRIVER (force overlay2/vfs/...), GPUDOCK_TEST_RUN_DIR (parent of temporary
work dirs; scripts/test sets it so it can clean up after a crash), GPUDOCK_TEST_ENGINE_TIMEOUT
(seconds to wait for the socket, default 30).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import os
import re
import shutil
import signal
import stat
import struct
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import docker
import docker.errors

HELPERS_DIR = Path(__file__).resolve().parent
HOOK_BIN_DIR = HELPERS_DIR / "bin"
HOOK_NAME = "nvidia-container-runtime-hook"

IMAGE_REPO = "gpudock-test/busybox"
IMAGE = f"{IMAGE_REPO}:latest"
LABEL_KEY = "gpudock-test"  # every image made here carries LABEL gpudock-test=1

NVIDIA_MAJOR = 195
UVM_MAJOR = 511  # the real one is dynamic (e.g. 234, 508, 510, 511); any free major will do
# name -> (major, minor); all character devices.
NVIDIA_DEV_NODES: dict[str, tuple[int, int]] = {
    "nvidiactl": (NVIDIA_MAJOR, 255),
    "nvidia-modeset": (NVIDIA_MAJOR, 254),
    **{f"nvidia{i}": (NVIDIA_MAJOR, i) for i in range(8)},
    "nvidia-uvm": (UVM_MAJOR, 0),
    "nvidia-uvm-tools": (UVM_MAJOR, 1),
}

# Dockerfile lines of the base image after `FROM scratch` / `ADD rootfs.tar /`. The image is
# built with the engine's classic builder because `docker import --change` refuses STOPSIGNAL.
BASE_INSTRUCTIONS = [
    "ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin",
    f"LABEL {LABEL_KEY}=1",
    "STOPSIGNAL SIGKILL",
    'CMD ["sh"]',
]


def default_toolkit_config(hook_log: str, runtime_log: str) -> str:
    """The toolkit's 1.17 default config.toml (gpudock's own rendering of it), except that the
    commented debug paths point into the engine's work dir, so uncommenting the shipped hook line
    makes the stand-in hook write to Engine.hook_log."""
    from gpudock.toolkit.config import default_config_text

    text = default_config_text(ldconfig="@/sbin/ldconfig")
    for shipped, ours in (
        ("/var/log/nvidia-container-toolkit.log", hook_log),
        ("/var/log/nvidia-container-runtime.log", runtime_log),
    ):
        assert f'#debug = "{shipped}"' in text, shipped
        text = text.replace(f'#debug = "{shipped}"', f'#debug = "{ours}"')
    return text


class EngineError(RuntimeError):
    """The private Docker engine could not be set up; the message says why and what to do."""


def _find_binary(name: str, extra: Iterable[str] = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in extra:
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return None


def make_nvidia_dev_nodes(directory: str | os.PathLike) -> Path:
    """Create fake NVIDIA character device nodes (see NVIDIA_DEV_NODES) in `directory`."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    for name, (major, minor) in NVIDIA_DEV_NODES.items():
        p = d / name
        want = os.makedev(major, minor)
        with contextlib.suppress(FileNotFoundError):
            st = p.lstat()
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == want:
                continue
            p.unlink()
        try:
            os.mknod(p, 0o666 | 0o020000, want)  # S_IFCHR
        except PermissionError as e:
            raise EngineError(f"cannot mknod {p} (char {major}:{minor}): {e}; the tests must run as root") from e
    return d


# --------------------------------------------------------------------------- the test image


def _is_static_elf(path: str) -> bool:
    """True when `path` is an ELF file without a PT_INTERP program header (statically linked)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF":
            return False
        is64 = head[4] == 2
        endian = "<" if head[5] == 1 else ">"
        if is64:
            (phoff,) = struct.unpack_from(endian + "Q", head, 0x20)
            phentsize, phnum = struct.unpack_from(endian + "HH", head, 0x36)
        else:
            (phoff,) = struct.unpack_from(endian + "I", head, 0x1C)
            phentsize, phnum = struct.unpack_from(endian + "HH", head, 0x2A)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    for i in range(phnum):
        (p_type,) = struct.unpack_from(endian + "I", table, i * phentsize)
        if p_type == 3:  # PT_INTERP
            return False
    return True


def find_static_busybox() -> str:
    for cand in (os.environ.get("GPUDOCK_TEST_BUSYBOX"), "/bin/busybox", "/usr/bin/busybox", shutil.which("busybox")):
        if cand and os.path.isfile(cand) and _is_static_elf(cand):
            return cand
    raise EngineError(
        "no statically linked busybox found (/bin/busybox): install Debian's busybox-static "
        "(`apt-get install busybox-static`; ./scripts/test does this)"
    )


_ROOTFS_CACHE: dict[str, bytes] = {}


def busybox_rootfs_tar(busybox: str | None = None) -> bytes:
    """A tar of a minimal root filesystem: static busybox plus a symlink per applet."""
    busybox = busybox or find_static_busybox()
    if busybox in _ROOTFS_CACHE:
        return _ROOTFS_CACHE[busybox]
    applets = subprocess.run([busybox, "--list-full"], check=True, capture_output=True, text=True).stdout.split()
    buf = io.BytesIO()
    now = int(time.time())

    def info(name: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.size, ti.linkname, ti.mtime = kind, mode, size, link, now
        return ti

    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "dev", "proc", "sys", "root", "var", "run"):
            tar.addfile(info(d, tarfile.DIRTYPE, 0o755))
        tar.addfile(info("tmp", tarfile.DIRTYPE, 0o1777))
        with open(busybox, "rb") as f:
            data = f.read()
        tar.addfile(info("bin/busybox", tarfile.REGTYPE, 0o755, len(data)), io.BytesIO(data))
        seen = {"bin/busybox"}
        for path in applets:
            path = path.lstrip("/")
            if path in seen or "/" not in path:
                continue
            seen.add(path)
            tar.addfile(info(path, tarfile.SYMTYPE, 0o777, link="/bin/busybox"))
        for name, text in (
            ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"),
            ("etc/group", "root:x:0:\nvideo:x:44:\nnogroup:x:65534:\n"),
        ):
            raw = text.encode()
            tar.addfile(info(name, tarfile.REGTYPE, 0o644, len(raw)), io.BytesIO(raw))
    _ROOTFS_CACHE[busybox] = buf.getvalue()
    return _ROOTFS_CACHE[busybox]


def _dockerfile_quote(s: str) -> str:
    """A Dockerfile double-quoted word: no variable substitution, no escapes left to interpret."""
    s = str(s)
    if "\n" in s or "\r" in s:
        raise ValueError(f"newline in Dockerfile value {s!r}")
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def _dockerfile_lines(env: Mapping[str, str] | None, labels: Mapping[str, str] | None) -> list[str]:
    lines = []
    for k, v in (env or {}).items():
        if not k or any(c in k for c in " =\t\n\"'$\\"):
            raise ValueError(f"bad environment variable name {k!r}")
        lines.append(f"ENV {k}={_dockerfile_quote(v)}")
    for k, v in (labels or {}).items():
        lines.append(f"LABEL {_dockerfile_quote(k)}={_dockerfile_quote(v)}")
    return lines


def _build(client: docker.DockerClient, tag: str, dockerfile: str, files: Mapping[str, bytes] = {}) -> str:
    """Build with the engine's classic builder from an in-memory context (no registry involved)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in {"Dockerfile": dockerfile.encode(), **files}.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), 0o644
            tar.addfile(ti, io.BytesIO(data))
    buf.seek(0)
    try:
        image, _ = client.images.build(fileobj=buf, custom_context=True, tag=tag, rm=True, forcerm=True, pull=False)
    except docker.errors.BuildError as e:
        raise EngineError(f"building {tag} failed: {e}") from e
    return image.id


def build_base_image(client: docker.DockerClient, busybox: str | None = None, tag: str = IMAGE) -> str:
    """`tag` from scratch: the busybox rootfs, PATH, CMD sh, STOPSIGNAL SIGKILL, LABEL gpudock-test=1."""
    dockerfile = "FROM scratch\nADD rootfs.tar /\n" + "\n".join(BASE_INSTRUCTIONS) + "\n"
    return _build(client, tag, dockerfile, {"rootfs.tar": busybox_rootfs_tar(busybox)})


def make_image(
    engine: Engine | docker.DockerClient,
    tag: str,
    env: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    instructions: Iterable[str] = (),
    base: str = IMAGE,
) -> str:
    """Build `tag` ("repo:tag") from the busybox test image with extra Config.Env and labels.

    `instructions` are extra Dockerfile lines (e.g. 'CMD ["sleep", "1000"]', 'USER nobody').
    Env and labels of the base are inherited (PATH, gpudock-test=1). Returns the image id.
    """
    client = getattr(engine, "client", engine)  # an Engine (from either import path) or a DockerClient
    lines = [f"FROM {base}", *_dockerfile_lines(env, labels), *instructions]
    return _build(client, tag, "\n".join(lines) + "\n")


# --------------------------------------------------------------------------- the engine


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: dockerd goes down with the test process
    except Exception:
        pass


class Engine:
    """A private dockerd. Attributes:

    workdir, base_url ("unix://<socket>"), socket, client (docker.DockerClient), image,
    dev_dir (fake /dev/nvidia* nodes), hook_config (config.toml the stand-in hook reads),
    hook_log (its default debug log path), runtime_log, log (dockerd's log), data_root,
    exec_root, pidfile, storage_driver, pid.
    """

    image = IMAGE

    def __init__(self, workdir: str | os.PathLike | None = None, dev_dir: str | os.PathLike | None = None):
        self._own_workdir = workdir is None
        if workdir is None:
            parent = os.environ.get("GPUDOCK_TEST_RUN_DIR") or "/tmp"
            os.makedirs(parent, exist_ok=True)
            workdir = tempfile.mkdtemp(prefix="gpd-", dir=parent)
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        w = self.workdir
        self.data_root = w / "d"
        self.exec_root = w / "x"
        self.socket = str(w / "docker.sock")
        # containerd puts <exec_root>/containerd/containerd.sock.ttrpc; unix socket paths max out at 107 bytes.
        longest = len(str(self.exec_root / "containerd" / "containerd.sock.ttrpc"))
        if max(len(self.socket), longest) > 100:
            raise EngineError(f"work dir {w} is too long for unix socket paths (keep it under ~50 characters)")
        self.base_url = f"unix://{self.socket}"
        self.pidfile = w / "dockerd.pid"
        self.log = w / "dockerd.log"
        self.daemon_json = w / "daemon.json"
        self.toolkit_dir = w / "toolkit"
        self.hook_config = self.toolkit_dir / "config.toml"
        self.hook_log = self.toolkit_dir / "nvidia-container-toolkit.log"
        self.runtime_log = self.toolkit_dir / "nvidia-container-runtime.log"
        self.dev_dir = Path(dev_dir) if dev_dir is not None else w / "dev"
        self.storage_driver: str | None = None
        self.proc: subprocess.Popen | None = None
        self._client: docker.DockerClient | None = None
        self.start_seconds: float | None = None

    # ---- public API

    @classmethod
    def start(
        cls,
        workdir: str | os.PathLike | None = None,
        *,
        dev_dir: str | os.PathLike | None = None,
        storage_driver: str | None = None,
    ) -> Engine:
        """Start a fresh engine (dockerd running, test image imported). Raises EngineError."""
        eng = cls(workdir, dev_dir=dev_dir)
        try:
            eng._setup(storage_driver)
        except BaseException:
            eng.close()
            raise
        return eng

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = docker.DockerClient(base_url=self.base_url, timeout=60)
        return self._client

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def make_image(self, tag: str, env=None, labels=None, instructions=(), base: str = IMAGE) -> str:
        return make_image(self, tag, env, labels, instructions, base)

    def make_dev_nodes(self) -> Path:
        return make_nvidia_dev_nodes(self.dev_dir)

    def stop(self, timeout: float = 30) -> None:
        """Stop dockerd (SIGTERM, then SIGKILL after `timeout`); data root and socket path are kept.

        Running containers are stopped by dockerd (the test images stop with SIGKILL). The `client`
        object stays the same across stop/restart; calls fail while the engine is down."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self._kill_leftovers()

    def restart(self) -> None:
        """Stop (if running) and start again on the same socket, data root and storage driver."""
        self.stop()
        self._launch(self.storage_driver)

    def close(self) -> None:
        """Stop dockerd and remove the work dir if this object created it."""
        self.stop()
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None
        if self._own_workdir:
            self._unmount_under(self.workdir)
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no dockerd log)"

    # ---- internals

    def _locate_dockerd(self) -> str:
        forced_dockerd = os.environ.get("GPUDOCK_TEST_DOCKERD")
        dockerd = forced_dockerd if forced_dockerd and os.access(forced_dockerd, os.X_OK) else None
        if not forced_dockerd:
            dockerd = _find_binary("dockerd")
        if not dockerd:
            raise EngineError(
                f"dockerd not found{f' at GPUDOCK_TEST_DOCKERD={forced_dockerd}' if forced_dockerd else ''}: "
                "the tests need Debian's docker.io package (`apt-get install docker.io`; ./scripts/test installs it)"
            )
        return dockerd

    def _daemon_json_text(self) -> str:
        """dockerd's --config-file at start (subclasses turn features on here)."""
        return "{}\n"

    def _setup(self, storage_driver: str | None) -> None:
        self.dockerd = self._locate_dockerd()
        self.runc = _find_binary("runc")
        if not self.runc:
            raise EngineError("runc not found: install Debian's runc (a dependency of docker.io)")
        if not (HOOK_BIN_DIR / HOOK_NAME).is_file() or not os.access(HOOK_BIN_DIR / HOOK_NAME, os.X_OK):
            raise EngineError(f"stand-in hook {HOOK_BIN_DIR / HOOK_NAME} missing or not executable")
        busybox = find_static_busybox()
        for d in (self.data_root, self.exec_root, self.toolkit_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.daemon_json.write_text(self._daemon_json_text())
        if not self.hook_config.exists():
            self.hook_config.write_text(default_toolkit_config(self.hook_log, self.runtime_log))
        self.make_dev_nodes()

        t0 = time.monotonic()
        forced = storage_driver or os.environ.get("GPUDOCK_TEST_STORAGE_DRIVER")
        drivers = [forced] if forced else ["overlay2", "vfs"]
        failures = []
        for driver in drivers:
            try:
                self._launch(driver)
                self._import_base_image(busybox)
                # The probe: a container must really run on this storage driver.
                self.client.containers.run(self.image, ["true"], remove=True)
            except EngineError as e:
                failures.append(f"--- storage driver {driver}:\n{e}")
                self.stop()
                continue
            except docker.errors.DockerException as e:
                failures.append(f"--- storage driver {driver}: a test container did not run: {e}\n{self.log_tail()}")
                self.stop()
                continue
            self.storage_driver = driver
            self.start_seconds = time.monotonic() - t0
            return
        raise EngineError("the private Docker engine did not start:\n" + "\n".join(failures))

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        path = [str(HOOK_BIN_DIR)] + [p for p in env.get("PATH", "").split(os.pathsep) if p]
        for p in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"):
            if p not in path:
                path.append(p)
        env["PATH"] = os.pathsep.join(path)
        env["GPUDOCK_TEST_TOOLKIT_CONFIG"] = str(self.hook_config)
        env.pop("DOCKER_HOST", None)
        return env

    def _args(self, driver: str | None) -> list[str]:
        args = [
            self.dockerd,
            "--config-file",
            str(self.daemon_json),
            "--data-root",
            str(self.data_root),
            "--exec-root",
            str(self.exec_root),
            "-H",
            self.base_url,
            "--pidfile",
            str(self.pidfile),
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
            "--userland-proxy=false",
            "--add-runtime",
            f"nvidia={self.runc}",
        ]
        if driver:
            args += ["--storage-driver", driver]
        return args

    def _launch(self, driver: str | None) -> None:
        if self.running():
            return
        timeout = float(os.environ.get("GPUDOCK_TEST_ENGINE_TIMEOUT", "30"))
        # A stale socket or pidfile from a killed engine would confuse dockerd or the wait below.
        for stale in (self.socket, self.pidfile):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stale)
        with open(self.log, "ab") as log:
            log.write(f"\n===== {time.strftime('%H:%M:%S')} starting dockerd (storage driver {driver})\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self._args(driver),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env(),
                cwd=str(self.workdir),
                start_new_session=True,
                # Only from the main thread: the death signal fires when the *thread* that started
                # dockerd exits, and a worker thread (asyncio.to_thread) may end long before the tests.
                preexec_fn=_set_pdeathsig if threading.current_thread() is threading.main_thread() else None,
            )
        deadline = time.monotonic() + timeout
        # A fixed, old API version: DockerClient() would ask the (not yet listening) server for its version.
        probe = docker.APIClient(base_url=self.base_url, version="1.24", timeout=2)
        last_err: Exception | None = None
        try:
            while True:
                if self.proc.poll() is not None:
                    rc = self.proc.returncode
                    self.proc = None
                    raise EngineError(f"dockerd exited with status {rc} while starting; its log:\n{self.log_tail()}")
                if os.path.exists(self.socket):
                    try:
                        if probe.ping():
                            return
                    except Exception as e:  # not answering yet
                        last_err = e
                if time.monotonic() > deadline:
                    self.stop()
                    raise EngineError(
                        f"dockerd did not answer on {self.socket} within {timeout:.0f} s "
                        f"(last error: {last_err}); its log:\n{self.log_tail()}"
                    )
                time.sleep(0.05)
        finally:
            probe.close()

    def _import_base_image(self, busybox: str) -> None:
        try:
            self.client.images.get(self.image)
            return
        except docker.errors.ImageNotFound:
            pass
        build_base_image(self.client, busybox, self.image)

    def _kill_leftovers(self) -> None:
        """After dockerd is gone: end processes (containerd, shims) still naming our exec root."""
        marker = str(self.exec_root).encode()
        deadline = time.monotonic() + 5
        sig = signal.SIGTERM
        while True:
            pids = []
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry}/cmdline", "rb") as f:
                        if marker in f.read():
                            pids.append(int(entry))
                except OSError:
                    continue
            pids = [p for p in pids if p != os.getpid()]
            if not pids:
                return
            for p in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, sig)
            if time.monotonic() > deadline:
                if sig == signal.SIGKILL:
                    return
                sig = signal.SIGKILL
                deadline = time.monotonic() + 5
            time.sleep(0.1)

    @staticmethod
    def _unmount_under(path: Path) -> None:
        prefix = str(path) + "/"
        try:
            with open("/proc/self/mounts") as f:
                mounts = [line.split()[1] for line in f]
        except OSError:
            return
        for m in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)


# --------------------------------------------------------------------------- the CDI engine

DOCKERD26_ENV = "GPUDOCK_TEST_DOCKERD26"
DOCKERD26_DEFAULT = HELPERS_DIR.parents[1] / ".test-run" / "docker26" / "usr" / "sbin" / "dockerd"
CDI_MIN_VERSION = (25, 0)  # Docker 25 added CDI (DeviceRequests with Driver "cdi", "features": {"cdi": true})


def find_dockerd26() -> str:
    """The CDI engine's dockerd: $GPUDOCK_TEST_DOCKERD26, else the one ./scripts/test unpacked."""
    forced = os.environ.get(DOCKERD26_ENV)
    path = Path(forced) if forced else DOCKERD26_DEFAULT
    if not (path.is_file() and os.access(path, os.X_OK)):
        where = f"{DOCKERD26_ENV}={forced}" if forced else str(path)
        raise EngineError(
            f"Docker 26's dockerd not found at {where}: run the tests with ./scripts/test, which downloads "
            "Debian 13's docker.io .deb (apt-get download, with a sources list of its own) and unpacks it with "
            f"dpkg -x into .test-run/docker26 (nothing is installed); or set {DOCKERD26_ENV} to a dockerd 25 or newer"
        )
    return str(path)


def _version_tuple(v: str) -> tuple[int, int]:
    parts = v.split(".")
    try:
        return int(parts[0]), int(parts[1].split("+")[0].split("-")[0])
    except (IndexError, ValueError):
        return 0, 0


class CdiEngine(Engine):
    """A private Docker 26 engine with CDI on. As :class:`Engine`, plus ``cdi_dir`` (its one
    ``cdi-spec-dirs`` entry; the engine re-reads specs written there while it runs) and
    ``server_version``."""

    def __init__(
        self,
        workdir: str | os.PathLike | None = None,
        dev_dir: str | os.PathLike | None = None,
        cdi_dir: str | os.PathLike | None = None,
    ):
        super().__init__(workdir, dev_dir=dev_dir)
        self.cdi_dir = Path(cdi_dir) if cdi_dir is not None else self.workdir / "cdi"
        self.server_version: str | None = None

    @classmethod
    def start(
        cls,
        workdir: str | os.PathLike | None = None,
        *,
        dev_dir: str | os.PathLike | None = None,
        cdi_dir: str | os.PathLike | None = None,
        storage_driver: str | None = None,
    ) -> CdiEngine:
        eng = cls(workdir, dev_dir=dev_dir, cdi_dir=cdi_dir)
        try:
            eng._setup(storage_driver)
        except BaseException:
            eng.close()
            raise
        return eng

    def daemon_config(self) -> dict:
        """What the engine's daemon.json holds at start: CDI on, specs read from ``cdi_dir``."""
        return {"features": {"cdi": True}, "cdi-spec-dirs": [str(self.cdi_dir)]}

    def _locate_dockerd(self) -> str:
        dockerd = find_dockerd26()
        try:
            said = subprocess.run([dockerd, "--version"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError) as e:
            raise EngineError(f"{dockerd} --version failed: {e}") from e
        m = re.search(r"version (\S+?),", said)
        if not m or _version_tuple(m.group(1)) < CDI_MIN_VERSION:
            raise EngineError(
                f"{dockerd} is {said.strip() or 'of an unknown version'}; the CDI engine needs Docker 25 or newer "
                f"(point {DOCKERD26_ENV} at one, or remove .test-run/docker26 and rerun ./scripts/test)"
            )
        return dockerd

    def _daemon_json_text(self) -> str:
        return json.dumps(self.daemon_config(), indent=2) + "\n"

    def _setup(self, storage_driver: str | None) -> None:
        self.cdi_dir.mkdir(parents=True, exist_ok=True)
        super()._setup(storage_driver)
        info = self.client.info()
        self.server_version = str(info.get("ServerVersion") or "")
        if _version_tuple(self.server_version) < CDI_MIN_VERSION:
            raise EngineError(
                f"{self.dockerd} is Docker {self.server_version or '(unknown)'}; CDI needs Docker 25 or newer "
                f"(point {DOCKERD26_ENV} at a newer dockerd, or remove .test-run/docker26 and rerun ./scripts/test)"
            )
        if info.get("CDISpecDirs") != [str(self.cdi_dir)]:
            raise EngineError(
                f"Docker {self.server_version} did not turn CDI on: docker info shows CDISpecDirs "
                f"{info.get('CDISpecDirs')!r}, expected [{str(self.cdi_dir)!r}]; its log:\n{self.log_tail()}"
            )
