"""`gpudock serve`: the nvidia-docker-plugin REST paths, answered over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from gpudock.host.root import HostRoot
from gpudock.launch.plugin_server import PluginServer, tabwrite
from gpudock.launch.spec import LaunchError
from gpudock.model import GpuProcess, HostSnapshot, NvmlFailure
from helpers.gpus import UUIDS, plugin_host, shuffled_host


def fake_root(tmp_path: Path, uvm_tools: bool = True, numa: dict[str, str] | None = None) -> HostRoot:
    (tmp_path / "dev").mkdir(exist_ok=True)
    if uvm_tools:
        (tmp_path / "dev/nvidia-uvm-tools").write_text("")
    for bus, node in (numa or {}).items():
        d = tmp_path / "sys/bus/pci/devices" / bus
        d.mkdir(parents=True)
        (d / "numa_node").write_text(node + "\n")
    return HostRoot(tmp_path)


@pytest.fixture
def serve():
    servers = []

    def start(snap: HostSnapshot, root: HostRoot):
        srv = PluginServer(lambda: snap, port=0, root=root)
        srv.start_background()
        servers.append(srv)
        return srv

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def get(srv, path: str, method: str = "GET"):
    req = urllib.request.Request(f"http://127.0.0.1:{srv.port}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.headers.get("Content-Type"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


PLUGIN_LINE = (
    b"--volume-driver=nvidia-docker --volume=nvidia_driver_387.26:/usr/local/nvidia:ro "
    b"--device=/dev/nvidiactl --device=/dev/nvidia-uvm --device=/dev/nvidia-uvm-tools "
    b"--device=/dev/nvidia0 --device=/dev/nvidia2"
)


@pytest.mark.parametrize(
    "path",
    [
        "/v1.0/docker/cli?dev=0+2&vol=nvidia_driver",
        "/docker/cli?dev=0+2",
        "/docker/cli?vol=*&dev=0%202",
        f"/v1.0/docker/cli?dev=0+{UUIDS[2][:12]}",
    ],
)
def test_docker_cli_is_the_plugins_line_byte_for_byte(serve, tmp_path, path):
    srv = serve(plugin_host(), fake_root(tmp_path))
    status, ctype, body = get(srv, path)
    assert (status, ctype, body) == (200, "text/plain; charset=utf-8", PLUGIN_LINE)


def test_docker_cli_json_is_gos_encoder_output(serve, tmp_path):
    srv = serve(plugin_host(), fake_root(tmp_path, uvm_tools=False))
    status, ctype, body = get(srv, "/v1.0/docker/cli/json?dev=2&vol=nvidia_driver")
    assert (status, ctype) == (200, "application/json")
    assert body == (
        b'{"VolumeDriver":"nvidia-docker","Volumes":["nvidia_driver_387.26:/usr/local/nvidia:ro"],'
        b'"Devices":["/dev/nvidiactl","/dev/nvidia-uvm","/dev/nvidia2"]}\n'
    )
    assert get(srv, "/docker/cli/json")[2] == get(srv, "/v1.0/docker/cli/json?dev=*")[2]


def test_devices_by_minor_in_the_order_asked(serve, tmp_path):
    srv = serve(shuffled_host(), fake_root(tmp_path, uvm_tools=False))
    body = get(srv, "/v1.0/docker/cli?dev=2+0")[2].decode()
    assert body.endswith("--device=/dev/nvidia-uvm --device=/dev/nvidia1 --device=/dev/nvidia3")
    everything = get(srv, "/v1.0/docker/cli")[2].decode()
    assert everything.endswith(
        "--device=/dev/nvidia3 --device=/dev/nvidia0 --device=/dev/nvidia1 --device=/dev/nvidia2"
    )


@pytest.mark.parametrize(
    "query, text",
    [
        ("dev=0,2", b"invalid device: 0,2\n"),
        ("dev=9", b"invalid device: 9\n"),
        ("dev=GPU-zzz", b"invalid device: GPU-zzz\n"),
        ("dev=0&vol=nvidia_driver+cuda", b"invalid volume: cuda\n"),
    ],
)
def test_bad_parameters_are_400_with_the_plugins_text(serve, tmp_path, query, text):
    srv = serve(plugin_host(), fake_root(tmp_path))
    for prefix in ("/v1.0", ""):
        for p in ("/docker/cli", "/docker/cli/json"):
            assert get(srv, f"{prefix}{p}?{query}")[::2] == (400, text)


def test_vol_repeated_and_vol_empty(serve, tmp_path):
    srv = serve(plugin_host(), fake_root(tmp_path))
    body = json.loads(get(srv, "/docker/cli/json?dev=0&vol=nvidia_driver+nvidia_driver")[2])
    assert body["Volumes"] == ["nvidia_driver_387.26:/usr/local/nvidia:ro"] * 2


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_get_only_other_methods_404(serve, tmp_path, method):
    srv = serve(plugin_host(), fake_root(tmp_path))
    assert get(srv, "/v1.0/docker/cli", method)[::2] == (404, b"404 page not found\n")


@pytest.mark.parametrize("path", ["/", "/v1.0", "/v2.0/docker/cli", "/v1.0/docker/cli/", "/docker"])
def test_unknown_paths_404(serve, tmp_path, path):
    srv = serve(plugin_host(), fake_root(tmp_path))
    assert get(srv, path)[0] == 404


def test_gpu_info_json(serve, tmp_path):
    root = fake_root(tmp_path, numa={"0000:0a:00.0": "1", "0000:18:00.0": "-1"})
    srv = serve(shuffled_host(), root)
    status, ctype, body = get(srv, "/v1.0/gpu/info/json")
    assert (status, ctype) == (200, "application/json") and body.endswith(b"}\n")
    info = json.loads(body)
    assert info["Version"] == {"Driver": "535.129.03", "CUDA": "12.2"}
    d0, d1, d2 = info["Devices"][:3]
    assert list(d0) == [
        "UUID",
        "Path",
        "Model",
        "Power",
        "CPUAffinity",
        "PCI",
        "Clocks",
        "Topology",
        "Family",
        "Arch",
        "Cores",
        "Memory",
    ]
    assert (d0["UUID"], d0["Path"], d0["Power"], d0["PCI"]["BusID"]) == (
        UUIDS[0],
        "/dev/nvidia3",
        400,
        "00000000:05:00.0",
    )
    # the plugin lowercased the 8-digit NVML id and fell back to node 0; we normalise to sysfs' form
    assert [d0["CPUAffinity"], d1["CPUAffinity"], d2["CPUAffinity"]] == [0, 1, 0]
    assert d0["Memory"]["Global"] == 81920 and d0["Topology"] is None
    assert get(srv, "/gpu/info/json")[2] == body


def test_gpu_status_json_processes_null_when_none(serve, tmp_path):
    snap = shuffled_host()
    busy = snap.gpus[1].__class__(
        **{
            **{f: getattr(snap.gpus[1], f) for f in snap.gpus[1].__slots__},
            "processes": (GpuProcess(4242, 512, "compute", "python train.py"), GpuProcess(7, 9, "graphics", "Xorg")),
        }
    )
    snap = HostSnapshot(snap.driver_version, snap.cuda_driver_version, None, (snap.gpus[0], busy))
    srv = serve(snap, fake_root(tmp_path))
    devs = json.loads(get(srv, "/v1.0/gpu/status/json")[2])["Devices"]
    assert devs[0]["Processes"] is None
    assert devs[1]["Processes"] == [{"PID": 4242, "Name": "python", "MemoryUsed": 512}]
    assert devs[1]["Power"] == 101 and devs[1]["Memory"]["GlobalUsed"] == 1000
    assert list(devs[0]) == ["Power", "Temperature", "Utilization", "Memory", "Clocks", "PCI", "Processes"]


def test_gpu_info_and_status_text_layout(serve, tmp_path):
    srv = serve(shuffled_host(), fake_root(tmp_path))
    status, ctype, body = get(srv, "/v1.0/gpu/info")
    assert (status, ctype) == (200, "text/plain; charset=utf-8")
    text = body.decode()
    assert text.startswith(
        "\nDriver version:          535.129.03\nSupported CUDA version:  12.2\n\nDevice #0\n"
        "  Model:         NVIDIA A100-SXM4-80GB\n"
        f"  UUID:          {UUIDS[0]}\n"
        "  Path:          /dev/nvidia3\n"
        "  Family:        N/A\n"
    )
    assert "  CPU Affinity:  NUMA node0\n  PCI\n    Bus ID:     00000000:05:00.0\n" in text
    assert "  P2P Available:  None\n\nDevice #1\n" in text
    status_text = get(srv, "/gpu/status")[2].decode()
    assert (
        "\nDevice #2\n  Power:        102 / 400 W\n  Temperature:  42 °C\n  Utilization\n    GPU:      20 %\n"
        in status_text
    )
    assert "    Global:  2000 / 81920 MiB\n" in status_text
    assert "  Processes:  None\n" in status_text


def test_nvml_failure_is_a_500(serve, tmp_path):
    snap = HostSnapshot(None, None, None, (), NvmlFailure(9, "Driver Not Loaded", "load the nvidia module"))
    srv = serve(snap, fake_root(tmp_path))
    status, _, body = get(srv, "/v1.0/docker/cli")
    assert status == 500 and b"Driver Not Loaded" in body


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", ""])
def test_listens_on_loopback_only(host):
    with pytest.raises(LaunchError, match="listens on 127.0.0.1 only"):
        PluginServer(lambda: plugin_host(), port=0, host=host)


def test_default_port_is_the_plugins():
    import inspect

    assert inspect.signature(PluginServer).parameters["port"].default == 3476


# -- Go's tabwriter ------------------------------------------------------------------------------


def test_tabwriter_aligns_runs_of_lines_with_cells():
    assert tabwrite("a:  \t1\nlonger:  \t2\n") == "a:       1\nlonger:  2\n"
    # a line without a tab ends the column block; the next block aligns on its own
    assert tabwrite("a:\t1\nheading\nbbbb:\t2\nc:\t3") == "a:1\nheading\nbbbb:2\nc:   3"
    # leading empty cells (the template's indentation tab) vanish with padding 0
    assert tabwrite("\tx:  \t1\n\tyy:  \t2\n") == "x:   1\nyy:  2\n"


def test_info_and_status_carry_what_nvidia_docker_1_filled_from_nvml(serve, tmp_path):
    """BAR1, PCIe bandwidth and throughput, P2P topology, ECC and encoder/decoder, from the demo's
    simulated NVML (the plugin's answers left them null before)."""
    import pynvml

    from helpers.sim import frozen_demo, session

    try:
        with session(frozen_demo()) as s:
            snap = s.snapshot()
    finally:
        pynvml.nvmlLib = None
        pynvml._nvmlGetFunctionPointer_cache.clear()
    srv = serve(snap, fake_root(tmp_path))
    info = json.loads(get(srv, "/v1.0/gpu/info/json")[2])["Devices"]
    d0, d4 = info[0], info[4]
    assert d0["PCI"] == {"BusID": "00000000:05:00.0", "BAR1": 131072, "Bandwidth": 3938 * 16}
    assert (d0["Memory"]["ECC"], d0["Arch"], d4["CPUAffinity"]) == (True, "9.0", 1)
    peers = {p["BusID"]: p["Link"] for p in d0["Topology"]}
    assert len(peers) == 7 and "00000000:05:00.0" not in peers
    assert peers["00000000:0A:00.0"] == 5  # the same PCIe switch: "Single PCI switch"
    assert peers["00000000:85:00.0"] == 1  # the other NUMA node: "Cross CPU socket"
    status = json.loads(get(srv, "/v1.0/gpu/status/json")[2])["Devices"]
    g2 = snap.gpus[2]
    s2 = status[2]
    assert s2["PCI"]["BAR1Used"] == g2.bar1_used_mib
    assert s2["PCI"]["Throughput"] == {"RX": g2.pcie_rx_kib_s // 1000, "TX": g2.pcie_tx_kib_s // 1000}
    assert s2["Utilization"]["Decoder"] == g2.decoder_utilization and s2["Utilization"]["Encoder"] == 0
    assert s2["Memory"]["ECCErrors"] == {"L1Cache": None, "L2Cache": None, "Global": 0}
    text = get(srv, "/gpu/info")[2].decode()
    assert "  P2P Available\n    00000000:0A:00.0 - Single PCI switch\n" in text
    assert "    BAR1:       131072 MiB\n    Bandwidth:  63008 MB/s\n" in text
    status_text = get(srv, "/gpu/status")[2].decode()
    assert f"    BAR1:  {g2.bar1_used_mib} / 131072 MiB\n" in status_text
    assert f"      RX:  {g2.pcie_rx_kib_s // 1000} MB/s\n" in status_text


def test_dev_dir_maps_the_nodes_where_they_are(tmp_path):
    devs = tmp_path / "devs"
    devs.mkdir()
    srv = PluginServer(lambda: plugin_host(), port=0, root=fake_root(tmp_path, uvm_tools=False), dev_dir=str(devs))
    srv.start_background()
    try:
        status, _, body = get(srv, "/docker/cli?dev=2")
    finally:
        srv.shutdown()
        srv.server_close()
    d = str(devs)
    assert status == 200 and body.decode() == (
        "--volume-driver=nvidia-docker --volume=nvidia_driver_387.26:/usr/local/nvidia:ro "
        f"--device={d}/nvidiactl:/dev/nvidiactl --device={d}/nvidia-uvm:/dev/nvidia-uvm "
        f"--device={d}/nvidia2:/dev/nvidia2"
    )  # no nvidia-uvm-tools in DIR: not offered, as the plugin checked /dev
