"""What the NVIDIA Container Toolkit writes to its debug logs when a GPU container starts on the
simulated engine.

On a real host, with ``[nvidia-container-cli] debug = "<path>"`` set in config.toml, the hook
(``nvidia-container-runtime-hook`` -> ``nvidia-container-cli``) appends its decisions to that file
for every container that asks for GPUs through the legacy path (``--gpus``, or the nvidia runtime
with ``NVIDIA_VISIBLE_DEVICES`` in mode ``auto``/``legacy``); with ``[nvidia-container-runtime]
debug`` set, the runtime logs every container it creates. The simulated engine calls
:meth:`ToolkitLog.container_started` on start, so the toolkit screen's log view shows on the demo
what it shows on a real host. It reads the simulated host's own config.toml, through the same
lookup and parser as the toolkit screen, and writes only inside that host's root.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from gpudock.host.root import HostRoot

log = logging.getLogger(__name__)

__all__ = ["ToolkitLog"]


def _env(env: list[str], key: str) -> str | None:
    for item in reversed(env):
        k, sep, v = item.partition("=")
        if sep and k == key:
            return v
    return None


class ToolkitLog:
    def __init__(self, root: HostRoot, toolkit_version: str = "1.17.3") -> None:
        self.root = root
        self.version = toolkit_version

    def _debug_paths(self) -> tuple[str | None, str | None, str]:
        """(hook log, runtime log, mode) as config.toml on the simulated host sets them."""
        from gpudock.toolkit.config import ConfigError, load_config, locate_config

        loc = locate_config(root=self.root, environ={})
        if not loc.exists:
            return None, None, "auto"
        try:
            st = load_config(loc.path).status()
        except (ConfigError, OSError) as e:
            log.info("simulated toolkit: config.toml unreadable (%s): no debug log", e)
            return None, None, "auto"
        mode = st.settings["mode"].value
        return st.debug["hook"].log_path, st.debug["runtime"].log_path, mode if isinstance(mode, str) else "auto"

    def container_started(self, container: Any) -> None:
        """``container``: the simulated engine's record (id, env, runtime, host_config, pid)."""
        env = list(container.env)
        hc: Mapping = container.host_config or {}
        visible = _env(env, "NVIDIA_VISIBLE_DEVICES")
        requests = [r for r in hc.get("DeviceRequests") or () if (r.get("Driver") or "") in ("", "nvidia")]
        runtime_nvidia = container.runtime == "nvidia"
        if not requests and not (runtime_nvidia and visible not in (None, "", "void")):
            return  # not a GPU container: the toolkit is not involved
        hook_log, runtime_log, mode = self._debug_paths()
        now = time.time()
        if runtime_log and runtime_nvidia:
            self._append(runtime_log, self._runtime_lines(container, mode, now))
        if hook_log and (requests or mode in ("auto", "legacy")):
            if requests:  # dockerd's nvidia driver sets the variable from --gpus, over the image's
                ids = [i for r in requests for i in (r.get("DeviceIDs") or ())]
                count = max((r.get("Count") or 0 for r in requests), default=0)
                visible = ",".join(ids) if ids else ("all" if count == -1 else ",".join(map(str, range(count))))
            caps = _env(env, "NVIDIA_DRIVER_CAPABILITIES") or "utility"
            self._append(hook_log, self._hook_lines(container, visible or "", caps, now))

    def _hook_lines(self, c: Any, visible: str, caps: str, now: float) -> list[str]:
        stamp = time.strftime("%m%d %H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}"
        pid = 40000 + (c.pid % 20000)

        def line(src: str, text: str) -> str:
            return f"I{stamp} {pid} {src}] {text}"

        rootfs = f"/var/lib/docker/overlay2/{c.id[:24]}/merged"
        return [
            "",
            "-- WARNING, the following logs are for debugging purposes only --",
            "",
            line("nvc.c:396", f"initializing library context (version={self.version}, build=gpudock-simulated)"),
            line("nvc.c:397", "using root /"),
            line("nvc.c:398", "using ldcache /etc/ld.so.cache"),
            line("nvc.c:399", "using unprivileged user 65534:65534"),
            line("nvc_container.c:240", f"configuring container with '{caps} supervised'"),
            line("nvc_container.c:262", f"setting pid to {c.pid}"),
            line("nvc_container.c:263", f"setting rootfs to {rootfs}"),
            line("nvc_info.c:800", f"requesting device(s) {visible or 'none'}"),
            line("nvc_mount.c:345", f"mounting /usr/bin/nvidia-smi at {rootfs}/usr/bin/nvidia-smi"),
            line("nvc_ldcache.c:372", f"executing /sbin/ldconfig from host at {rootfs}"),
            line("nvc.c:452", "shutting down library context"),
        ]

    def _runtime_lines(self, c: Any, mode: str, now: float) -> list[str]:
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))

        def entry(level: str, msg: str) -> str:
            return json.dumps({"level": level, "msg": msg, "time": at})

        resolved = "legacy" if mode == "auto" else mode
        return [
            entry("info", f'Running with config:\n{{"nvidia-container-runtime": {{"mode": "{mode}"}}}}'),
            entry("debug", "Command line arguments: [runc --root /var/run/docker/runtime-runc/moby create]"),
            entry("info", f"Auto-detected mode as '{resolved}'" if mode == "auto" else f"Using mode '{mode}'"),
            entry("debug", f"Creating container {c.id[:12]} with the NVIDIA Container Runtime Hook"),
            entry("info", "Running with runc"),
        ]

    def _append(self, host_path: str, lines: list[str]) -> None:
        if not host_path.startswith("/"):
            return  # the toolkit would write it relative to its working directory: not ours to guess
        try:
            real = self.root.real(host_path)
            with open(real, "a", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
        except OSError as e:
            log.info("simulated toolkit: cannot append to %s: %s", host_path, e)
