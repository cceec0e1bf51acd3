"""The fleet on a real Prometheus: three simulated hosts' `gpudock exporter`s and a recorded
dcgm-exporter scraped by Debian's prometheus on loopback, read back with `gpudock fleet --json`.

Each host's fleet entry must say what that host's own `gpudock holders --json` says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import pytest

from helpers.prometheus import Exporter, Prometheus, StaticMetrics, child_env, listening

UA = ["GPU-a0000000-0000-4000-8000-00000000000" + str(i) for i in range(2)]
UB = ["GPU-b0000000-0000-4000-8000-00000000000" + str(i) for i in range(2)]
UC = ["GPU-c0000000-0000-4000-8000-000000000000"]
UL = ["GPU-d0000000-0000-4000-8000-00000000000" + str(i) for i in range(2)]
MIG_B = ["MIG-b1000000-0000-4000-8000-000000000000", "MIG-b1000000-0000-4000-8000-000000000001"]

DOCKER = """
[docker]
version = "24.0.7"
default_runtime = "runc"
runtimes = { runc = "runc", nvidia = "/usr/bin/nvidia-container-runtime" }
[[image]]
name = "nvcr.io/nvidia/pytorch:24.01-py3"
"""


def gpu(uuid, bus, minor, util, extra=""):
    return f"""
[[gpu]]
uuid = "{uuid}"
name = "NVIDIA H100 80GB HBM3"
pci_bus_id = "{bus}"
minor = {minor}
memory_total_mib = 81559
utilization_gpu = {util}
temperature_c = 50
power_w = 300
power_limit_w = 700
{extra}"""


HEAD = '\nfrozen = true\n[driver]\nversion = "535.129.03"\ncuda = "12.2"\n'

SCENARIOS = {
    # two GPUs: one held by a --gpus container, one shared by two containers (runtime env and a device node)
    "gpu-node-a": HEAD
    + gpu(
        UA[0],
        "0000:05:00.0",
        3,
        88,
        '  [[gpu.process]]\n  pid = 51001\n  used_memory_mib = 70000\n  command = "python train.py"',
    )
    + gpu(UA[1], "0000:0a:00.0", 0, 20)
    + DOCKER
    + f"""
[[container]]
name = "train-a"
image = "nvcr.io/nvidia/pytorch:24.01-py3"
device_requests = [{{ driver = "", count = 0, device_ids = ["0"], capabilities = [["gpu"]] }}]
pids = [[51001, 7]]
[[container]]
name = "shared-b"
image = "nvcr.io/nvidia/pytorch:24.01-py3"
runtime = "nvidia"
env = ["NVIDIA_VISIBLE_DEVICES={UA[1]}"]
[[container]]
name = "shared-c"
image = "nvcr.io/nvidia/pytorch:24.01-py3"
devices = ["/dev/nvidiactl", "/dev/nvidia0"]
[[container]]
name = "stopped"
image = "nvcr.io/nvidia/pytorch:24.01-py3"
state = "exited"
device_requests = [{{ driver = "", count = -1, capabilities = [["gpu"]] }}]
[host]
module = "535.104.05"  # upgraded without a reboot: the doctor's driver-library-mismatch
""",
    # a CDI holder, and a MIG-partitioned GPU with one instance held
    "gpu-node-b": HEAD
    + gpu(UB[0], "0000:18:00.0", 1, 60)
    + gpu(
        UB[1],
        "0000:1e:00.0",
        2,
        30,
        "mig_mode = true\n"
        + "".join(
            f'  [[gpu.mig]]\n  profile = "3g.40gb"\n  uuid = "{u}"\n  memory_total_mib = 40192\n'
            f"  memory_used_mib = 0\n  gpu_instance_id = {gi}\n"
            for u, gi in zip(MIG_B, (1, 2))
        ),
    )
    + DOCKER
    + f"""
[[container]]
name = "infer"
image = "nvcr.io/nvidia/pytorch:24.01-py3"
device_requests = [{{ driver = "cdi", device_ids = ["nvidia.com/gpu=0"], capabilities = [] }}]
[[container]]
name = "mig-serve"
image = "nvcr.io/nvidia/pytorch:24.01-py3"
runtime = "nvidia"
env = ["NVIDIA_VISIBLE_DEVICES={MIG_B[1]}"]
[host]
missing_nodes = ["/dev/nvidia2"]  # the doctor's device-nodes
""",
    # an engine with no containers: nothing holds its GPU
    "gpu-node-c": HEAD + gpu(UC[0], "0000:3b:00.0", 0, 5) + DOCKER,
}


DCGM_VALUES = {
    "DCGM_FI_DEV_GPU_UTIL": 42,
    "DCGM_FI_DEV_FB_USED": 1024,
    "DCGM_FI_DEV_FB_FREE": 80535,
    "DCGM_FI_DEV_GPU_TEMP": 61,
    "DCGM_FI_DEV_POWER_USAGE": 312.5,
    "DCGM_FI_DEV_XID_ERRORS": 0,
}


def dcgm_text() -> str:
    """A dcgm-exporter /metrics page, by its documented names and labels: host dgx-legacy with the
    old "Hostname" spelling, and gpu-node-b's GPUs (also gpudock's) with the new "hostname"; plus a
    series of another exporter that took a gpudock name."""
    out = []
    for name, help_, typ in (
        ("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", "gauge"),
        ("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", "gauge"),
        ("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", "gauge"),
        ("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", "gauge"),
        ("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", "gauge"),
        ("DCGM_FI_DEV_XID_ERRORS", "Value of the last XID error encountered.", "gauge"),
    ):
        out += [f"# HELP {name} {help_}", f"# TYPE {name} {typ}"]
        value = DCGM_VALUES[name]
        for i, u in enumerate(UL):
            v = 79 if (name == "DCGM_FI_DEV_XID_ERRORS" and i == 1) else value
            out.append(
                f'{name}{{gpu="{i}",UUID="{u}",pci_bus_id="00000000:{0x41 + i:02X}:00.0",device="nvidia{i}",'
                f'modelName="NVIDIA A100-SXM4-80GB",Hostname="dgx-legacy",DCGM_FI_DRIVER_VERSION="535.104.05"}} {v}'
            )
        u = UB[0]
        v = 13 if name == "DCGM_FI_DEV_XID_ERRORS" else value
        out.append(
            f'{name}{{gpu="0",UUID="{u}",pci_bus_id="00000000:18:00.0",device="nvidia0",'
            f'modelName="NVIDIA H100 80GB HBM3",hostname="gpu-node-b"}} {v}'
        )
    out += ["# TYPE gpudock_gpu_utilization_percent gauge", 'gpudock_gpu_utilization_percent{gpu="0"} 5']
    return "\n".join(out) + "\n"


def _doctor_runs(url: str) -> int:
    """How many exporters' doctor runs Prometheus has (each exporter runs it once at start)."""
    q = urllib.parse.urlencode({"query": "count(gpudock_doctor_last_run_timestamp_seconds)"})
    with urllib.request.urlopen(f"{url}/api/v1/query?{q}", timeout=10) as r:
        result = json.load(r)["data"]["result"]
    return int(float(result[0]["value"][1])) if result else 0


def gpudock_cli(*args: str) -> tuple[int, str, str]:
    p = subprocess.run(
        [sys.executable, "-m", "gpudock", *args], capture_output=True, text=True, timeout=120, env=child_env()
    )
    return p.returncode, p.stdout, p.stderr


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    run_dir = os.environ.get("GPUDOCK_TEST_RUN_DIR")
    d = tempfile.mkdtemp(prefix="fleet-", dir=run_dir) if run_dir else str(tmp_path_factory.mktemp("fleet"))
    files = {}
    for name, text in SCENARIOS.items():
        files[name] = os.path.join(d, f"{name}.toml")
        with open(files[name], "w") as f:
            f.write(f'name = "{name}"\n' + text)
    hpc = os.path.join(d, "hpc-jobs")
    os.mkdir(hpc)
    started = []
    try:
        exporters = {}
        for name, path in files.items():
            extra = ["--dcgm-hpc-job-dir", hpc] if name == "gpu-node-b" else []
            exporters[name] = Exporter("--sim", path, "--interval", "0.5", *extra, log=os.path.join(d, f"{name}.log"))
            started.append(exporters[name].start())
        # a fourth host from gpu-node-c's file under a name of its own: the one the stale test stops
        gone = Exporter("--sim", files["gpu-node-c"], "--hostname", "gpu-node-gone", "--interval", "0.5",
                        log=os.path.join(d, "gone.log"))  # fmt: skip
        started.append(gone.start())
        dcgm = StaticMetrics(dcgm_text())
        prom = Prometheus(d, {"gpudock": [e.target for e in started], "dcgm": [dcgm.target]})
        prom.start()
        fixture = {"dir": d, "files": files, "exporters": exporters, "gone": gone, "prom": prom, "hpc": hpc}
        want = {"gpu-node-a", "gpu-node-b", "gpu-node-c", "gpu-node-gone", "dgx-legacy"}
        deadline = time.monotonic() + 90
        view = None
        while time.monotonic() < deadline:
            rc, out, _ = gpudock_cli("fleet", "--prometheus", prom.url, "--json")
            view = json.loads(out)
            hosts = {h["hostname"]: h for h in view["hosts"]}
            if (
                set(hosts) >= want
                and all(h["gpus"] and not h["stale"] for h in hosts.values())
                and _doctor_runs(prom.url) == len(started)
                and any("holders" in g and g["holders"] for g in hosts["gpu-node-a"]["gpus"])
                and any("dcgm-exporter" in g["sources"] for g in hosts["gpu-node-b"]["gpus"])
            ):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"the fleet never showed every host: {json.dumps(view, indent=1)[:3000]}")
        yield fixture
    finally:
        if "prom" in locals():
            prom.stop()
        if "dcgm" in locals():
            dcgm.stop()
        for e in started:
            e.stop()


def fleet_json(fleet) -> dict:
    rc, out, err = gpudock_cli("fleet", "--prometheus", fleet["prom"].url, "--json")
    assert rc == 0, err
    return json.loads(out)


def test_every_host_with_its_gpus_and_holders_as_its_own_holders_json_says(fleet):
    view = fleet_json(fleet)
    assert view["ok"] and view["queries"] == 2  # sent together, whatever the number of hosts
    hosts = {h["hostname"]: h for h in view["hosts"]}
    assert set(hosts) == {"gpu-node-a", "gpu-node-b", "gpu-node-c", "gpu-node-gone", "dgx-legacy"}
    for name, path in fleet["files"].items():
        rc, out, err = gpudock_cli("holders", "--sim", path, "--json")
        own = json.loads(out)
        h = hosts[name]
        assert (h["source"], h["driver_version"], h["stale"]) == (f"sim:{name}", "535.129.03", False)
        assert [g["uuid"] for g in h["gpus"]] == [g["uuid"] for g in own["gpus"]]
        for fg, og in zip(h["gpus"], own["gpus"]):
            assert (fg["index"], fg["device"]) == (og["index"], f"nvidia{og['minor']}")
            assert fg["pci_bus_id"] == og["pci_bus_id"]
            running = sorted(x["name"] for x in og["holders"] if x["status"] == "running")
            assert sorted(x["container"] for x in fg["holders"]) == running, (name, og["index"])
            ids = {x["container_id"] for x in og["holders"]}
            assert {x["container_id"] for x in fg["holders"]} <= ids
    a = hosts["gpu-node-a"]["gpus"]
    assert [sorted(x["container"] for x in g["holders"]) for g in a] == [["train-a"], ["shared-b", "shared-c"]]
    assert a[0]["utilization_gpu"] == 88 and a[0]["memory_total_mib"] == 81559
    assert {x["mechanism"] for x in hosts["gpu-node-a"]["gpus"][1]["holders"]} == {"runtime-env", "device"}
    b = hosts["gpu-node-b"]["gpus"]
    assert [[x["container"] for x in g["holders"]] for g in b] == [["infer"], ["mig-serve"]]
    assert hosts["gpu-node-c"]["gpus"][0]["holders"] == [] and hosts["gpu-node-c"]["docker_up"] is True


def test_dcgm_exporter_series_both_host_spellings_joined_on_uuid(fleet):
    hosts = {h["hostname"]: h for h in fleet_json(fleet)["hosts"]}
    legacy = hosts["dgx-legacy"]  # the old "Hostname" spelling, dcgm-exporter alone
    assert legacy["sources"] == ["dcgm-exporter"] and not legacy["stale"]
    assert [(g["uuid"], g["index"], g["name"], g["utilization_gpu"], g["memory_total_mib"], g["xid"])
            for g in legacy["gpus"]] == [
        (UL[0], 0, "NVIDIA A100-SXM4-80GB", 42, 81559, 0),
        (UL[1], 1, "NVIDIA A100-SXM4-80GB", 42, 81559, 79),
    ]  # fmt: skip
    b0 = hosts["gpu-node-b"]["gpus"][0]  # "hostname": the same GPU as gpudock's, one GPU with both
    assert b0["sources"] == ["gpudock", "dcgm-exporter"]
    assert b0["utilization_gpu"] == 60 and b0["xid"] == 13  # gpudock's number; dcgm-exporter's Xid
    assert [x["container"] for x in b0["holders"]] == ["infer"]


def test_doctor_errors_per_host_as_its_own_doctor_says(fleet):
    hosts = {h["hostname"]: h for h in fleet_json(fleet)["hosts"]}
    for name, path in fleet["files"].items():
        rc, out, err = gpudock_cli("doctor", "--sim", path, "--json")
        own = json.loads(out)
        errors = sorted((f["id"], f["title"]) for f in own["findings"] if f["severity"] == "error")
        assert sorted((e["id"], e["title"]) for e in hosts[name]["doctor"]["errors"]) == errors, name
    assert "driver-library-mismatch" in {e["id"] for e in hosts["gpu-node-a"]["doctor"]["errors"]}
    assert "device-nodes" in {e["id"] for e in hosts["gpu-node-b"]["doctor"]["errors"]}


def test_the_host_lists_summary_read_agrees_with_the_per_gpu_read(fleet):
    from gpudock.fleet.reader import FleetReader

    r = FleetReader(fleet["prom"].url)
    summary, detail = r.read(detailed=False), r.read(detailed=True)
    assert summary.ok and detail.ok and summary.queries == 2
    assert [h.hostname for h in summary.hosts] == [h.hostname for h in detail.hosts]
    fields = ("gpu_count", "held", "utilization", "memory_used_mib", "memory_total_mib", "temperature_c", "power_w",
              "holder_names", "images", "models", "gpu_errors", "xid_gpus", "sources", "stale", "doctor_errors",
              "doctor_warnings", "driver_version", "docker_up")  # fmt: skip
    for s, d in zip(summary.hosts, detail.hosts):
        assert not s.gpus and d.gpus
        for f in fields:
            assert getattr(s, f) == pytest.approx(getattr(d, f), abs=0.11), (s.hostname, f)
    one = r.read(detailed=True, only="gpu-node-b")
    assert [h.hostname for h in one.hosts] == ["gpu-node-b"] and one.hosts[0].gpus == detail.host("gpu-node-b").gpus


def test_another_exporters_series_under_a_gpudock_name_is_said_and_left_out(fleet):
    view = fleet_json(fleet)
    assert (
        "1 series of gpudock_gpu_utilization_percent have no hostname label (another exporter's, with the same "
        "name?): left out"
    ) in view["problems"]


def test_the_exporter_writes_dcgm_exporters_hpc_job_files(fleet):
    names = [n for n in sorted(os.listdir(fleet["hpc"])) if not n.startswith(".")]  # not the writers' lock files
    files = {n: open(os.path.join(fleet["hpc"], n)).read() for n in names}
    assert files == {"0": "infer\n", "1.2": "mig-serve\n"}  # GPU 1's instance 2 is MIG_B[1]


def test_exporters_listen_on_the_address_given_and_nowhere_else(fleet):
    for e in [*fleet["exporters"].values(), fleet["gone"]]:
        assert listening(e.proc.pid) == [("127.0.0.1", e.port)]


def test_a_port_in_use_is_a_clear_error(fleet):
    e = fleet["exporters"]["gpu-node-c"]
    p = subprocess.run(
        [sys.executable, "-m", "gpudock", "exporter", "--sim", fleet["files"]["gpu-node-c"], "--listen", e.target],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
    )
    assert p.returncode == 2
    assert p.stderr.strip() == (
        f"gpudock exporter: cannot listen on {e.target}: the port is already in use (another gpudock exporter?); "
        "stop it, or choose another port with --listen 127.0.0.1:PORT"
    )


def test_a_stopped_exporter_leaves_its_host_stale_with_its_last_values(fleet):
    fleet["gone"].stop()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        hosts = {h["hostname"]: h for h in fleet_json(fleet)["hosts"]}
        if hosts["gpu-node-gone"]["stale"]:
            break
        time.sleep(0.5)
    gone = hosts["gpu-node-gone"]
    assert gone["stale"] and "no current series" in gone["stale_reason"]
    assert fleet_json(fleet)["queries"] == 3  # one more, for the stale host's last values
    assert [g["uuid"] for g in gone["gpus"]] == UC and gone["gpus"][0]["utilization_gpu"] == 5
    assert not hosts["gpu-node-c"]["stale"]
