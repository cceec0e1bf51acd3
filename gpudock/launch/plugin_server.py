"""``gpudock serve``: nvidia-docker-plugin's REST API, for scripts that still curl it.

This module owns the HTTP side of the compatibility layer: the paths, parameters, status codes,
content types and text layouts of nvidia-docker-plugin 1.0's REST API (reference notes §1), on
``127.0.0.1`` only (the plugin's default was ``localhost:3476``; gpudock never listens on another
address). Every answer is built from the current :class:`~gpudock.model.HostSnapshot` and, for
``/docker/cli``, from the same generator as ``gpudock args --mode legacy`` (:mod:`.spec`), so
``docker run $(curl -s localhost:3476/v1.0/docker/cli?dev=0+2&vol=nvidia_driver) image`` keeps
working. One deliberate difference: the GPUs come out in the order asked (the plugin lost it).

BAR1, PCIe bandwidth and throughput, the P2P topology, ECC mode and counters, encoder/decoder use
and the CUDA architecture come from the snapshot as the plugin filled them from NVML. What only
CUDA gave the plugin (family, core counts, shared/constant memory, L2 size, memory bandwidth), and
any value NVML does not support on a card, are JSON ``null`` and ``N/A`` in text, as the plugin
printed them when unavailable. Two differences, because there is no CUDA here: ``Topology`` lists
every other GPU whose PCIe path NVML knows (the plugin listed the peers CUDA could reach), and the
ECC counters give the volatile uncorrected count as ``Global`` with the caches' own counts null.

The HTTP layer is :mod:`.httpserve` (shared with the volume plugin's socket,
:mod:`.volume_plugin`); the answer builders here are plain functions of a snapshot.

Plain Python; no Textual.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import zlib
from collections.abc import Callable
from urllib.parse import parse_qs

from gpudock.host.root import HostRoot
from gpudock.model import Gpu, HostSnapshot

from .httpserve import DEFAULT_TIMEOUT, HttpServer, Request, Response, claim_unix_socket, error_response
from .selection import SelectionError, parse_plugin_devices
from .spec import DRIVER_VOLUME, LaunchError, build_spec, plugin_line

__all__ = ["DEFAULT_PORT", "PluginServer", "gpu_info_json", "gpu_status_json", "rest_answer", "tabwrite"]

DEFAULT_PORT = 3476
LOOPBACK = "127.0.0.1"
_ROUTES = (
    "/gpu/info",
    "/gpu/info/json",
    "/gpu/status",
    "/gpu/status/json",
    "/docker/cli",
    "/docker/cli/json",
    "/mesos/cli",
)


# -- Go's text/tabwriter (minwidth 0, tabwidth 4, padding 0, pad char ' ', no flags) -------------


def tabwrite(text: str, minwidth: int = 0, padding: int = 0, padchar: str = " ") -> str:
    """Align ``text`` the way Go's ``tabwriter.NewWriter(w, minwidth, 4, padding, padchar, 0)``
    does: tab-terminated cells form columns over runs of consecutive lines that have them."""
    out: list[str] = []
    lines: list[list[str]] = [[]]
    cell = ""

    def write_lines(widths: list[int], line0: int, line1: int) -> None:
        for i in range(line0, line1):
            for j, c in enumerate(lines[i]):
                out.append(c)
                if j < len(widths):
                    out.append(padchar * (widths[j] - len(c)))
            if i + 1 != len(lines):
                out.append("\n")

    def fmt(widths: list[int], line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            write_lines(widths, line0, this)
            line0 = this
            width = minwidth
            while this < line1 and column < len(lines[this]) - 1:
                width = max(width, len(lines[this][column]) + padding)
                this += 1
            widths.append(width)
            fmt(widths, line0, this)
            widths.pop()
            line0 = this
            this += 1  # Go's for-loop post statement
        write_lines(widths, line0, line1)

    def flush() -> None:
        fmt([], 0, len(lines))

    for ch in text:
        if ch in "\t\n":
            lines[-1].append(cell)
            cell = ""
            if ch == "\n":
                single = len(lines[-1]) == 1
                lines.append([])
                if single:
                    flush()
                    lines[:] = [[]]
        else:
            cell += ch
    if cell:
        lines[-1].append(cell)
    flush()
    return "".join(out)


# -- bodies -------------------------------------------------------------------------------------


def _go_json(obj) -> bytes:
    """Go's json.Encoder: compact, HTML-escaped, newline-terminated."""
    s = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    for a, b in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        s = s.replace(a, b)
    return (s + "\n").encode()


def _int(v) -> int | None:
    return None if v is None else int(v)


def _numa_node(g: Gpu, root: HostRoot) -> int:
    # The plugin read sysfs with the NVML id lowercased, missed it on 8-digit domains, and said 0;
    # we normalise the id first, then take NVML's NUMA node, and still say 0 when neither has one
    # (or -1, no NUMA).
    node = None
    if g.sysfs_bus_id:
        try:
            text = root.read_text(f"/sys/bus/pci/devices/{g.sysfs_bus_id}/numa_node")
            node = int(text.strip()) if text else None
        except (OSError, ValueError):
            node = None
    if node is None:
        node = g.numa_node
    return max(node or 0, 0)


# MB/s per lane by PCIe generation: the plugin's table (gen 1-4), and gens 5 and 6 at the same rule.
PCIE_LANE_MB_S = {1: 250, 2: 500, 3: 985, 4: 1969, 5: 3938, 6: 7877}

# NVML's common-ancestor level -> the plugin's P2PLinkType code, and its words in /gpu/info.
P2P_LINK = {50: 1, 40: 2, 30: 3, 20: 4, 10: 5, 0: 6}
P2P_WORDS = {
    0: "N/A",
    1: "Cross CPU socket",
    2: "Same CPU socket",
    3: "Host PCI bridge",
    4: "Multiple PCI switches",
    5: "Single PCI switch",
    6: "Same board",
}


def _bandwidth(g: Gpu) -> int | None:
    lane = PCIE_LANE_MB_S.get(g.pcie_gen_max)
    return lane * g.pcie_width_max if lane and g.pcie_width_max else None


def _topology(snap: HostSnapshot, g: Gpu) -> list[dict] | None:
    topo = snap.topology
    if topo is None or g.index >= len(topo.gpus):
        return None
    peers = [
        {"BusID": peer.pci_bus_id, "Link": P2P_LINK.get(topo.pcie[g.index][j], 0)}
        for j, peer in enumerate(topo.gpus)
        if j != g.index and topo.pcie[g.index][j] is not None
    ]
    return peers or None


def _device_info(snap: HostSnapshot, g: Gpu, root: HostRoot) -> dict:
    return {
        "UUID": g.uuid,
        "Path": g.device,
        "Model": g.name,
        "Power": _int(g.power_limit_w),
        "CPUAffinity": _numa_node(g, root),
        "PCI": {"BusID": g.pci_bus_id, "BAR1": g.bar1_total_mib, "Bandwidth": _bandwidth(g)},
        "Clocks": {"Cores": g.clock_sm_max_mhz, "Memory": g.clock_mem_max_mhz},
        "Topology": _topology(snap, g),
        "Family": None,
        "Arch": g.compute_capability,
        "Cores": None,
        "Memory": {
            "ECC": g.ecc_mode_current,
            "Global": g.memory_total_mib,
            "Shared": None,
            "Constant": None,
            "L2Cache": None,
            "Bandwidth": None,
        },
    }


def gpu_info_json(snap: HostSnapshot, root: HostRoot) -> dict:
    return {
        "Version": {"Driver": snap.driver_version or "", "CUDA": snap.cuda_driver_version or ""},
        "Devices": [_device_info(snap, g, root) for g in snap.gpus],
    }


def _status(g: Gpu) -> dict:
    procs = [
        {"PID": p.pid, "Name": (p.command or "").split(" ")[0], "MemoryUsed": p.used_memory_mib or 0}
        for p in g.processes
        if p.kind == "compute"
    ]
    ecc = g.ecc_errors.volatile_uncorrected if g.ecc_errors else None
    return {
        "Power": _int(g.power_w),
        "Temperature": g.temperature_c,
        "Utilization": {
            "GPU": g.utilization_gpu,
            "Memory": g.utilization_memory,
            "Encoder": g.encoder_utilization,
            "Decoder": g.decoder_utilization,
        },
        "Memory": {"GlobalUsed": g.memory_used_mib, "ECCErrors": {"L1Cache": None, "L2Cache": None, "Global": ecc}},
        "Clocks": {"Cores": g.clock_sm_mhz, "Memory": g.clock_mem_mhz},
        "PCI": {
            "BAR1Used": g.bar1_used_mib,
            "Throughput": {"RX": _mb_s(g.pcie_rx_kib_s), "TX": _mb_s(g.pcie_tx_kib_s)},
        },
        "Processes": procs or None,
    }


def _mb_s(kb_s: int | None) -> int | None:
    return None if kb_s is None else kb_s // 1000  # the plugin's MB/s: NVML's KB/s / 1000


def gpu_status_json(snap: HostSnapshot) -> dict:
    return {"Devices": [_status(g) for g in snap.gpus]}


def _na(v, unit: str = "") -> str:
    return "N/A" if v is None else f"{v}{unit}"


def gpu_info_text(snap: HostSnapshot, root: HostRoot) -> str:
    info = gpu_info_json(snap, root)
    t = [
        "\n\tDriver version:  \t",
        info["Version"]["Driver"],
        "\n\tSupported CUDA version:  \t",
        info["Version"]["CUDA"],
        "\n\t",
    ]
    for i, d in enumerate(info["Devices"]):
        pci, mem, clk = d["PCI"], d["Memory"], d["Clocks"]
        t += [
            f"\n\tDevice #{i}\n",
            f"\t  Model:  \t{_na(d['Model'])}\n",
            f"\t  UUID:  \t{d['UUID'] or ''}\n",
            f"\t  Path:  \t{d['Path'] or ''}\n",
            f"\t  Family: \t{_na(d['Family'])}\n",
            f"\t  Arch:  \t{_na(d['Arch'])}\n",
            f"\t  Cores:  \t{_na(d['Cores'])}\n",
            f"\t  Power:  \t{_na(d['Power'], ' W')}\n",
            f"\t  CPU Affinity:  \tNUMA node{d['CPUAffinity']}\n",
            "\t  PCI\n",
            f"\t    Bus ID:  \t{pci['BusID'] or ''}\n",
            f"\t    BAR1:  \t{_na(pci['BAR1'], ' MiB')}\n",
            f"\t    Bandwidth:  \t{_na(pci['Bandwidth'], ' MB/s')}\n",
            "\t  Memory\n",
            f"\t    ECC:  \t{_na(mem['ECC'])}\n",
            f"\t    Global:  \t{_na(mem['Global'], ' MiB')}\n",
            f"\t    Constant:  \t{_na(mem['Constant'], ' KiB')}\n",
            f"\t    Shared:  \t{_na(mem['Shared'], ' KiB')}\n",
            f"\t    L2 Cache:  \t{_na(mem['L2Cache'], ' KiB')}\n",
            f"\t    Bandwidth:  \t{_na(mem['Bandwidth'], ' MB/s')}\n",
            "\t  Clocks\n",
            f"\t    Cores:  \t{_na(clk['Cores'], ' MHz')}\n",
            f"\t    Memory:  \t{_na(clk['Memory'], ' MHz')}\n",
        ]
        if not d["Topology"]:
            t.append("\t  P2P Available:  \tNone\n\t")
        else:
            t.append("\t  P2P Available\n")
            t += [f"\t    {p['BusID']} - {P2P_WORDS.get(p['Link'], 'N/A')}\n" for p in d["Topology"]]
            t.append("\t")
    t.append("\n\t")
    return tabwrite("".join(t))


def gpu_status_text(snap: HostSnapshot) -> str:
    t: list[str] = []
    for i, g in enumerate(snap.gpus):
        s = _status(g)
        u, m, clk = s["Utilization"], s["Memory"], s["Clocks"]
        limit = _int(g.power_limit_w)
        power = f"{s['Power']} / {limit} W" if s["Power"] is not None and limit is not None else "N/A"
        glob = (
            f"{m['GlobalUsed']} / {g.memory_total_mib} MiB"
            if m["GlobalUsed"] is not None and g.memory_total_mib is not None
            else "N/A"
        )
        pci, ecc = s["PCI"], m["ECCErrors"]
        bar1 = (
            f"{pci['BAR1Used']} / {g.bar1_total_mib} MiB"
            if pci["BAR1Used"] is not None and g.bar1_total_mib is not None
            else "N/A"
        )
        t += [
            f"\n\tDevice #{i}\n",
            f"\t  Power:  \t{power}\n",
            f"\t  Temperature:  \t{_na(s['Temperature'], ' °C')}\n",
            "\t  Utilization\n",
            f"\t    GPU:  \t{_na(u['GPU'], ' %')}\n",
            f"\t    Memory:  \t{_na(u['Memory'], ' %')}\n",
            f"\t    Encoder:  \t{_na(u['Encoder'], ' %')}\n",
            f"\t    Decoder:  \t{_na(u['Decoder'], ' %')}\n",
            "\t  Memory\n",
            f"\t    Global:  \t{glob}\n",
            "\t    ECC Errors\n",
            f"\t      L1 Cache:  \t{_na(ecc['L1Cache'])}\n",
            f"\t      L2 Cache:  \t{_na(ecc['L2Cache'])}\n",
            f"\t      Global:  \t{_na(ecc['Global'])}\n",
            "\t  PCI\n",
            f"\t    BAR1:  \t{bar1}\n",
            "\t    Throughput\n",
            f"\t      RX:  \t{_na(pci['Throughput']['RX'], ' MB/s')}\n",
            f"\t      TX:  \t{_na(pci['Throughput']['TX'], ' MB/s')}\n",
            "\t  Clocks\n",
            f"\t    Cores:  \t{_na(clk['Cores'], ' MHz')}\n",
            f"\t    Memory:  \t{_na(clk['Memory'], ' MHz')}\n",
        ]
        if not s["Processes"]:
            t.append("\t  Processes:  \tNone")
        else:
            t.append("\t  Processes")
            for p in s["Processes"]:
                t += [
                    f"\n\t    - PID:  \t{p['PID']}",
                    f"\n\t      Name:  \t{p['Name']}",
                    f"\n\t      Memory:  \t{p['MemoryUsed']} MiB",
                ]
        t.append("\n\t")
    t.append("\n\t")
    return tabwrite("".join(t))


def mesos_cli(snap: HostSnapshot, root: HostRoot) -> str:
    raw = zlib.compress(_go_json(gpu_info_json(snap, root)))
    attr = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return f"--attributes=gpus:{attr} --resources=gpus:{{{','.join(g.uuid or '' for g in snap.gpus)}}}"


# -- HTTP ---------------------------------------------------------------------------------------


def _not_found() -> Response:
    return error_response(404, "404 page not found")


def rest_answer(
    req: Request, snapshot_fn: Callable[[], HostSnapshot], root: HostRoot, dev_dir: str = "/dev"
) -> Response:
    """The REST API's answer to one request (GET only, with or without the ``/v1.0`` prefix)."""
    path = req.path
    if path.startswith("/v1.0/"):
        path = path[len("/v1.0") :]
    if req.method != "GET" or path not in _ROUTES:
        return _not_found()
    query = parse_qs(req.query, keep_blank_values=True)
    try:
        snap = snapshot_fn()
    except Exception as e:  # noqa: BLE001 - the plugin answered 500 on any panic
        return error_response(500, f"internal error: {e}")
    if snap.nvml_failure:
        return error_response(500, f"internal error: NVML: {snap.nvml_failure.nvml_text}")
    if path == "/gpu/info":
        return Response(200, gpu_info_text(snap, root).encode())
    if path == "/gpu/info/json":
        return Response(200, _go_json(gpu_info_json(snap, root)), "application/json")
    if path == "/gpu/status":
        return Response(200, gpu_status_text(snap).encode())
    if path == "/gpu/status/json":
        return Response(200, _go_json(gpu_status_json(snap)), "application/json")
    if path == "/mesos/cli":
        return Response(200, mesos_cli(snap, root).encode())
    dev = query.get("dev", [""])[0]
    vols = query.get("vol", [""])[0].split(" ")
    if len(vols) == 1 and vols[0] in ("", "*"):
        vols = [DRIVER_VOLUME]  # every known volume; there is only the one
    bad = next((v for v in vols if v != DRIVER_VOLUME), None)
    try:
        sel = parse_plugin_devices(dev, snap)
        if bad is not None:  # the plugin checked devices first, then volumes
            return error_response(400, f"invalid volume: {bad}")
        if dev_dir == "/dev":
            uvm_tools = root.exists("/dev/nvidia-uvm-tools")
        else:
            uvm_tools = os.path.exists(os.path.join(dev_dir, "nvidia-uvm-tools"))
        spec = build_spec(snap, sel, "legacy", uvm_tools=uvm_tools, dev_dir=dev_dir)
    except SelectionError as e:
        return error_response(400, str(e))
    except LaunchError as e:
        return error_response(500, f"internal error: {e}")
    args = spec.plugin_args(volumes=len(vols))
    if path == "/docker/cli":
        return Response(200, plugin_line(args).encode())
    return Response(200, _go_json(args), "application/json")


class PluginServer:
    """``gpudock serve``: the REST API on ``127.0.0.1:port`` and, when ``volume_plugin`` is given,
    Docker's volume plugin protocol on the UNIX socket ``plugin_socket``, both on one
    :class:`~gpudock.launch.httpserve.HttpServer` (timeouts, backlog, one write per response,
    the Host check on TCP). ``snapshot_fn`` is called per request (status must be current).
    ``dev_dir`` is where this host has the ``/dev/nvidia*`` nodes (``/docker/cli`` then maps
    ``DIR/nvidiaN:/dev/nvidiaN``; the default ``/dev`` gives the plugin's line byte for byte)."""

    def __init__(
        self,
        snapshot_fn: Callable[[], HostSnapshot],
        port: int = DEFAULT_PORT,
        host: str = LOOPBACK,
        root: HostRoot | None = None,
        log: Callable[[str], None] | None = None,
        *,
        dev_dir: str = "/dev",
        volume_plugin=None,
        plugin_socket: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if host not in (LOOPBACK, "localhost"):
            raise LaunchError(
                f"gpudock serve listens on {LOOPBACK} only, not {host!r}: the plugin API has no "
                "authentication, and its answers open GPUs to whoever runs docker with them"
            )
        if not 0 <= port <= 65535:
            raise LaunchError(f"port {port} is not a TCP port (1-65535)")
        self.snapshot_fn = snapshot_fn
        self.root = root or HostRoot("/")
        self.log = log
        self.dev_dir = dev_dir
        self.volume_plugin = volume_plugin
        self.plugin_socket = plugin_socket
        self.http = HttpServer(timeout=timeout, log=log, name="gpudock-serve")
        try:
            try:
                self.port = self.http.listen_tcp(LOOPBACK, port, self._rest)
            except OSError as e:
                raise LaunchError(f"cannot listen on {LOOPBACK}:{port}: {e.strerror or e}") from None
            if volume_plugin is not None:
                if not plugin_socket:
                    raise LaunchError("a volume plugin needs its socket path")
                try:
                    claim_unix_socket(plugin_socket)
                    self.http.listen_unix(plugin_socket, volume_plugin.http_answer)
                except OSError as e:
                    hint = (
                        " (dockerd looks for plugins in /run/docker/plugins, which only root may write: run as "
                        "root, or give --no-plugin for the REST API alone)"
                        if isinstance(e, PermissionError)
                        else ""
                    )
                    raise LaunchError(f"cannot listen on {plugin_socket}: {e.strerror or e}{hint}") from None
        except BaseException:
            self.http.close()
            raise

    def _rest(self, req: Request) -> Response:
        return rest_answer(req, self.snapshot_fn, self.root, self.dev_dir)

    def start_background(self, poll_interval: float | None = None) -> threading.Thread:
        """Serve from a daemon thread (tests, the TUI); :meth:`shutdown` stops it."""
        return self.http.start_background()

    def serve_forever(self) -> None:
        """Serve until Ctrl-C, SIGTERM or :meth:`shutdown`."""
        self.http.serve_forever()

    def shutdown(self) -> None:
        self.http.shutdown()

    def server_close(self) -> None:
        """Close the sockets (the plugin socket file goes) and undo the plugin's mounts."""
        self.http.close()
        if self.volume_plugin is not None:
            self.volume_plugin.close()

    def __enter__(self) -> PluginServer:
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()
