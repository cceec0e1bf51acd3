"""The exporter's core: a host's poll and doctor findings as Prometheus series (gpudock.fleet.exporter)."""

from __future__ import annotations

import argparse
import socket
import threading

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gpudock.commands.exporter import bind_error, listen_address
from gpudock.doctor.finding import Finding
from gpudock.fleet import metrics as m
from gpudock.fleet.exporter import HostCollector
from gpudock.host.docker import DockerStatus
from gpudock.host.holders import build_holders
from gpudock.host.procmap import ContainerPid
from gpudock.model import Claim, Container, Gpu, GpuProcess, HostSnapshot, MigDevice

CA, CB = "a" * 64, "b" * 64


def U(i):
    return f"GPU-{i:08x}-0000-4000-8000-000000000000"


def host_snapshot():
    gpus = (
        Gpu(0, U(0), "NVIDIA H100 80GB HBM3", "00000000:05:00.0", minor=3, memory_total_mib=81559,
            memory_used_mib=1000, utilization_gpu=88, utilization_memory=61, temperature_c=67, power_w=560.5,
            power_limit_w=700.0, processes=(GpuProcess(4001, 900, command="python train.py"),)),
        Gpu(1, U(1), "NVIDIA H100 80GB HBM3", "00000000:0A:00.0", minor=0, memory_total_mib=81559,
            utilization_gpu=None, temperature_c=40, power_w=None, mig_mode_current=True,
            mig_devices=(MigDevice(0, "MIG-x", "3g.40gb", 40192, 100, gpu_instance_id=1, compute_instance_id=0),)),
        Gpu(2, U(2), minor=1, error="GPU is lost"),
    )  # fmt: skip
    return HostSnapshot("535.129.03", "12.2", "12.535.129.03", gpus, source="sim:test")


def holders_for(snap):
    cs = [
        Container(CA, "train-a", "nvcr.io/nvidia/pytorch:24.01-py3", "running",
                  claims=(Claim("device", "/dev/nvidia3", U(0)), Claim("runtime-env", "0", U(0)))),
        Container(CB, "old", "busybox", "exited", claims=(Claim("device-request", "1", U(1)),)),
    ]  # fmt: skip
    pm = {4001: ContainerPid(4001, (CA,), (4001, 17), "docker")}
    return build_holders(snap, cs, pid_mapper=pm.get, docker_status=DockerStatus("ok", "unix:///run/docker.sock"))


def scrape(collector) -> dict[str, list]:
    """metric name -> [(labels, value)], parsed back with prometheus_client's own parser."""
    reg = CollectorRegistry()
    reg.register(collector)
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(generate_latest(reg).decode()):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def one(samples, **want):
    hits = [(lab, v) for lab, v in samples if all(lab.get(k) == w for k, w in want.items())]
    assert len(hits) == 1, hits
    return hits[0]


def test_gpu_series_carry_dcgm_exporters_labels_and_the_values():
    snap = host_snapshot()
    c = HostCollector(lambda: (snap, holders_for(snap)), hostname="gpu-07")
    assert c.refresh()
    got = scrape(c)
    lab, v = one(got[m.UTILIZATION], UUID=U(0))
    assert v == 88
    assert lab == {
        "hostname": "gpu-07",
        "gpu": "0",
        "UUID": U(0),
        "pci_bus_id": "00000000:05:00.0",
        "device": "nvidia3",  # /dev/nvidia<minor>, not the index
        "modelName": "NVIDIA H100 80GB HBM3",
    }
    assert one(got[m.MEMORY_TOTAL], UUID=U(0))[1] == 81559 * 1024 * 1024
    assert one(got[m.TEMPERATURE], UUID=U(1))[1] == 40
    assert one(got[m.POWER_LIMIT], UUID=U(0))[1] == 700
    # a value NVML does not give is no sample, never a zero
    assert [lab["UUID"] for lab, _ in got[m.UTILIZATION]] == [U(0)]
    assert [lab["UUID"] for lab, _ in got[m.POWER]] == [U(0)]
    assert one(got[m.GPU_ERROR], UUID=U(2))[0]["error"] == "GPU is lost"
    assert one(got[m.GPU_INFO], UUID=U(2))[0]["minor"] == "1"
    mig_lab, _ = one(got[m.MIG_INFO], mig_uuid="MIG-x")
    assert (mig_lab["UUID"], mig_lab["GPU_I_ID"], mig_lab["GPU_I_PROFILE"], mig_lab["gpu"]) == (
        U(1),
        "1",
        "3g.40gb",
        "1",
    )
    assert one(got[m.MIG_MEMORY_TOTAL], mig_uuid="MIG-x")[1] == 40192 * 1024 * 1024
    drv = one(got[m.DRIVER], hostname="gpu-07")[0]
    assert (drv["driver_version"], drv["cuda_driver_version"], drv["source"]) == ("535.129.03", "12.2", "sim:test")
    assert one(got[m.NVML_UP], hostname="gpu-07")[1] == 1


def test_one_holder_series_per_gpu_and_running_container_joinable_on_uuid():
    snap = host_snapshot()
    got = scrape(_refreshed(HostCollector(lambda: (snap, holders_for(snap)), hostname="gpu-07")))
    holders = got[m.HOLDER]
    assert len(holders) == 1  # the exited container holds nothing now
    lab, v = holders[0]
    assert v == 1
    assert lab == {
        "hostname": "gpu-07",
        "gpu": "0",
        "UUID": U(0),
        "pci_bus_id": "00000000:05:00.0",
        "device": "nvidia3",
        "minor": "3",
        "container": "train-a",
        "container_id": CA,
        "image": "nvcr.io/nvidia/pytorch:24.01-py3",
        "mechanism": "device,runtime-env",
        "mig_uuids": "",
    }
    proc, mem = one(got[m.PROCESS_MEMORY], pid="4001")
    assert mem == 900 * 1024 * 1024
    assert (proc["container"], proc["container_id"], proc["container_pid"], proc["UUID"]) == ("train-a", CA, "17", U(0))
    assert one(got[m.DOCKER_UP], hostname="gpu-07")[1] == 1


def test_without_an_engine_processes_still_have_their_memory_and_no_holders():
    snap = host_snapshot()
    got = scrape(_refreshed(HostCollector(lambda: (snap, None), hostname="h")))
    assert m.HOLDER not in got and m.DOCKER_UP not in got
    assert one(got[m.PROCESS_MEMORY], pid="4001")[0]["container"] == ""


def test_nvml_failure_is_a_series_with_what_to_do():
    from gpudock.model import NvmlFailure

    snap = HostSnapshot(None, None, None, (), NvmlFailure(18, "Driver/library version mismatch", "reboot"))
    got = scrape(_refreshed(HostCollector(lambda: (snap, None), hostname="h")))
    assert one(got[m.NVML_UP], hostname="h")[1] == 0
    lab, _ = one(got[m.NVML_ERROR], hostname="h")
    assert (lab["error"], lab["message"]) == ("Driver/library version mismatch", "reboot")


def test_a_failed_poll_keeps_the_last_good_series_and_counts_the_failure():
    snap = host_snapshot()
    answers = [(snap, None)]

    def poll():
        if not answers:
            raise OSError("NVML hung")
        return answers.pop()

    times = iter([1000.0, 1010.0])
    c = HostCollector(poll, hostname="h", clock=lambda: next(times))
    assert c.refresh()
    assert not c.refresh()
    got = scrape(c)
    assert one(got[m.UTILIZATION], UUID=U(0))[1] == 88
    assert one(got[m.LAST_POLL], hostname="h")[1] == 1000.0  # ages: the fleet view marks the host stale
    assert one(got[m.POLL_ERRORS + "_total"], hostname="h")[1] == 1
    assert "NVML hung" in c.last_error


def test_doctor_findings_one_series_each_and_cached_between_runs():
    snap = host_snapshot()
    runs = []

    def findings():
        runs.append(1)
        return [
            Finding("device-nodes", "error", "Device nodes are missing or wrong", "…"),
            Finding("persistence", "warning", "Persistence mode off", "…"),
            Finding("nouveau", "ok", "nouveau is not loaded", "…"),
        ]

    c = HostCollector(lambda: (snap, None), findings, hostname="h", clock=lambda: 50.0)
    c.refresh()
    assert m.DOCTOR_FINDING not in scrape(c)  # the doctor has not run yet: no findings, rather than old ones
    c.refresh_findings()
    for _ in range(3):  # scrapes and polls do not run the doctor
        c.refresh()
        got = scrape(c)
    assert len(runs) == 1
    assert sorted((lab["id"], lab["severity"]) for lab, _ in got[m.DOCTOR_FINDING]) == [
        ("device-nodes", "error"),
        ("nouveau", "ok"),
        ("persistence", "warning"),
    ]
    assert one(got[m.DOCTOR_FINDING], id="device-nodes")[0]["title"] == "Device nodes are missing or wrong"
    assert one(got[m.DOCTOR_LAST_RUN], hostname="h")[1] == 50.0


def test_background_threads_poll_at_the_interval_and_run_the_doctor_first():
    snap = host_snapshot()
    polled, doctored = threading.Event(), threading.Event()
    count = []

    def poll():
        count.append(1)
        if len(count) >= 3:
            polled.set()
        return snap, None

    def findings():
        doctored.set()
        return []

    c = HostCollector(poll, findings, hostname="h", doctor_period=3600)
    c.start(interval=0.01)
    try:
        assert polled.wait(10) and doctored.wait(10)
    finally:
        c.stop()


def test_listeners_get_each_good_poll_and_their_faults_do_not_stop_it():
    snap = host_snapshot()
    seen = []

    def bad(s, h):
        raise RuntimeError("disk full")

    c = HostCollector(lambda: (snap, None), hostname="h", listeners=[bad, lambda s, h: seen.append(s)])
    assert c.refresh()
    assert seen == [snap]


def _refreshed(c):
    c.refresh()
    return c


# ---------------------------------------------------------------- --listen


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("127.0.0.1:10940", ("127.0.0.1", 10940)),
        ("0.0.0.0:9999", ("0.0.0.0", 9999)),
        ("[::1]:10940", ("::1", 10940)),
        ("10.1.2.3:0", ("10.1.2.3", 0)),  # 0: the system picks (the start line says which)
    ],
)
def test_listen_address(text, want):
    assert listen_address(text) == want


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("10940", "give ADDR:PORT"),
        (":10940", "give ADDR:PORT"),
        ("localhost:10940", "not an IP address"),
        ("127.0.0.1:http", "port must be a number"),
        ("127.0.0.1:70000", "port must be a number"),
        ("300.1.1.1:80", "not an IP address"),
    ],
)
def test_malformed_listen_is_refused_in_words(text, words):
    with pytest.raises(argparse.ArgumentTypeError, match=words):
        listen_address(text)


def test_port_in_use_message():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    try:
        port = s.getsockname()[1]
        s2 = socket.socket()
        with pytest.raises(OSError) as e:
            s2.bind(("127.0.0.1", port))
        s2.close()
        msg = bind_error("127.0.0.1", port, e.value)
    finally:
        s.close()
    assert msg == (
        f"cannot listen on 127.0.0.1:{port}: the port is already in use (another gpudock exporter?); "
        "stop it, or choose another port with --listen 127.0.0.1:PORT"
    )
