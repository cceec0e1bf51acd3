"""The fleet reader (gpudock.fleet.reader): the one query, the join, freshness, and Prometheus faults
in an operator's words. Prometheus itself is played here by a small HTTP server; the real one is
in tests/integration/test_fleet_prometheus.py."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gpudock.fleet.reader import (
    PART,
    AuthError,
    FleetReader,
    assemble,
    auth_from,
    check_url,
    filter_hosts,
    sort_hosts,
)

NOW = 1_800_000_000.0
UA, UB, UC = (f"GPU-{c * 8}-0000-4000-8000-000000000000" for c in "abc")


def s(part, value=1, **labels):
    return {"metric": {PART: part, **labels}, "value": [NOW, str(value)]}


def gpudock_host(name, uuid, util=50, poll=NOW - 1, holders=(), instance=None, index="0"):
    out = [
        s("fresh", hostname=name),
        s("poll", poll, hostname=name, instance=instance or f"{name}:10940"),
        s("driver", hostname=name, driver_version="535.129.03", source="nvml"),
        s("info", hostname=name, UUID=uuid, gpu=index, pci_bus_id="00000000:05:00.0", device="nvidia3",
          modelName="NVIDIA H100 80GB HBM3"),
        s("util", util, hostname=name, gpu=index),
        s("used", 1024 * 1024 * 1024, hostname=name, gpu=index),
        s("total", 80 * 1024 * 1024 * 1024, hostname=name, gpu=index),
        s("temp", 60, hostname=name, gpu=index),
        s("power", 300.5, hostname=name, gpu=index),
        s("limit", 700, hostname=name, gpu=index),
        s("docker", 1, hostname=name),
    ]  # fmt: skip
    for c in holders:
        out.append(
            s("holder", hostname=name, gpu=index, container=c, container_id=c * 3, image="img", mechanism="device")
        )
    return out


def test_a_read_is_two_queries_naming_both_dcgm_host_spellings_whatever_the_hosts():
    r = FleetReader("http://prometheus:9090", window="10m")
    for detailed in (True, False):
        qs = r.queries_for(detailed)
        assert len(qs) == 2
        q = " ".join(qs)
        assert "hostname, Hostname, instance" in q
        for name in ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_GPU_TEMP",
                     "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_XID_ERRORS", "gpudock_gpu_holder_info"):  # fmt: skip
            assert name in q
        assert "last_over_time(gpudock_exporter_last_poll_timestamp_seconds[10m])" in q
    one = " ".join(r.queries_for(True, only="gpu-a.example"))
    assert 'gpudock_gpu_info{hostname=~"gpu-a\\\\.example"}' in one  # a regex in a PromQL string
    with pytest.raises(ValueError, match="Prometheus duration"):
        FleetReader("http://prometheus:9090", window="ten minutes")


def test_gpudock_hosts_with_holders_and_doctor_errors():
    result = gpudock_host("gpu-a", UA, holders=("train-b", "train-a"))
    result.append(s("doctor", hostname="gpu-a", id="device-nodes", severity="error", title="Device nodes are wrong"))
    result.append(s("doctor", hostname="gpu-a", id="persistence", severity="warning", title="Persistence off"))
    hosts, problems = assemble(result, NOW)
    assert problems == ()
    (h,) = hosts
    assert (h.hostname, h.stale, h.driver_version, h.docker_up, h.sources) == ("gpu-a", False, "535.129.03", True,
                                                                                ("gpudock",))  # fmt: skip
    (g,) = h.gpus
    assert (g.index, g.uuid, g.device, g.utilization_gpu, g.memory_used_mib, g.memory_total_mib) == (
        0, UA, "nvidia3", 50, 1024, 80 * 1024)  # fmt: skip
    assert g.holder_names == ("train-a", "train-b")
    assert [e.id for e in h.doctor_errors] == ["device-nodes"] and h.doctor_warnings == 1
    assert h.errors == 1
    assert h.ssh_command == "ssh -t gpu-a gpudock"


def test_dcgm_exporter_gpus_join_gpudocks_on_uuid_and_both_host_spellings_are_hosts():
    result = gpudock_host("gpu-a", UA, util=50, holders=("train-a",))
    dcgm = {"gpu": "0", "pci_bus_id": "00000000:05:00.0", "device": "nvidia0", "modelName": "NVIDIA H100 80GB HBM3"}
    # the same GPU from a dcgm-exporter in a container with a hostname of its own: joined on UUID
    result += [
        s("dcgm_util", 97, Hostname="d41f0c2", UUID=UA, instance="10.0.0.1:9400", **dcgm),
        s("dcgm_xid", 79, Hostname="d41f0c2", UUID=UA, instance="10.0.0.1:9400"),
        s("dcgm_fresh", Hostname="d41f0c2", instance="10.0.0.1:9400"),
    ]
    # dcgm-exporter alone, old spelling and new spelling
    for host, label, uuid in (("dgx-old", "Hostname", UB), ("dgx-new", "hostname", UC)):
        result += [
            s("dcgm_util", 12, UUID=uuid, instance=f"{host}:9400", **{label: host}, **dcgm),
            s("dcgm_used", 2048, UUID=uuid, instance=f"{host}:9400", **{label: host}),
            s("dcgm_free", 79872, UUID=uuid, instance=f"{host}:9400", **{label: host}),
            s("dcgm_temp", 41, UUID=uuid, instance=f"{host}:9400", **{label: host}),
            s("dcgm_power", 88.25, UUID=uuid, instance=f"{host}:9400", **{label: host}),
            s("dcgm_xid", 0, UUID=uuid, instance=f"{host}:9400", **{label: host}),
            s("dcgm_fresh", instance=f"{host}:9400", **{label: host}),
        ]
    hosts, problems = assemble(result, NOW)
    assert problems == ()
    by = {h.hostname: h for h in hosts}
    assert sorted(by) == ["dgx-new", "dgx-old", "gpu-a"]
    a = by["gpu-a"].gpus[0]
    assert a.sources == ("gpudock", "dcgm-exporter")
    assert a.utilization_gpu == 50  # gpudock's number where both have one
    assert a.xid == 79 and by["gpu-a"].errors == 1  # dcgm-exporter's Xid, on gpudock's host
    assert a.holder_names == ("train-a",)
    for name in ("dgx-old", "dgx-new"):
        h = by[name]
        assert (h.stale, h.sources) == (False, ("dcgm-exporter",))
        (g,) = h.gpus
        assert (g.utilization_gpu, g.memory_used_mib, g.memory_total_mib, g.temperature_c, g.power_w, g.xid) == (
            12, 2048, 81920, 41, 88.25, 0)  # fmt: skip
        assert (g.index, g.name, g.holders) == (0, "NVIDIA H100 80GB HBM3", ())


def test_a_dcgm_exporter_without_a_host_label_is_named_by_its_target():
    hosts, _ = assemble([s("dcgm_util", 5, UUID=UA, gpu="0", instance="10.0.0.9:9400")], NOW)
    assert [h.hostname for h in hosts] == ["10.0.0.9"]
    assert hosts[0].stale  # no "dcgm_fresh": Prometheus has no current series of it


def test_stale_hosts_keep_their_last_values_and_say_why():
    gone = [x for x in gpudock_host("gpu-gone", UA) if x["metric"][PART] != "fresh"]
    hung = gpudock_host("gpu-hung", UB, poll=NOW - 300)
    hosts, _ = assemble(gone + hung, NOW, stale_after=60)
    by = {h.hostname: h for h in hosts}
    assert by["gpu-gone"].stale and "no current series" in by["gpu-gone"].stale_reason
    assert by["gpu-gone"].gpus[0].utilization_gpu == 50
    assert (
        by["gpu-hung"].stale
        and by["gpu-hung"].stale_reason == "its exporter has not read the GPUs for 300 s (NVML hung?)"
    )


def test_clashing_series_are_said_in_words_and_left_out():
    result = gpudock_host("gpu-a", UA, instance="10.0.0.1:10940")
    result += gpudock_host("gpu-a", UB, instance="10.0.0.2:10940", index="1")  # two exporters, one --hostname
    result += gpudock_host("gpu-b", UA)  # a cloned VM: the same GPU UUID on another host
    result.append(s("util", 50, gpu="0"))  # another exporter's series under gpudock's name, no hostname
    result.append(s("dcgm_util", 50, gpu="0", Hostname="x", instance="x:9400"))  # no UUID
    result.append(s("dcgm_util", 50, gpu="1", UUID=UC, Hostname="x", hostname="y", instance="x:9400"))
    result.append(s("util", float("nan"), hostname="gpu-b", gpu="0"))
    hosts, problems = assemble(result, NOW)
    assert set(problems) == {
        "host gpu-a is reported by 2 scrape targets (10.0.0.1:10940, 10.0.0.2:10940): give each exporter its own "
        "--hostname",
        f"GPU {UA} is reported by two gpudock hosts: gpu-a and gpu-b",
        "1 series of gpudock_gpu_utilization_percent have no hostname label (another exporter's, with the same "
        "name?): left out",
        "1 series of DCGM_FI_DEV_GPU_UTIL have no UUID label (another exporter's, with the same name?): left out",
        "dcgm-exporter series carry hostname='y' and Hostname='x': shown under 'y'",
    }
    assert [len(h.gpus) for h in hosts] == [2, 1, 1]  # gpu-a, gpu-b, y


# ---------------------------------------------------------------- against an HTTP server


class FakePrometheus:
    """Answers POST /api/v1/query with what ``self.answer`` says: (status, body, delay)."""

    def __init__(self):
        outer = self
        self.requests: list[dict] = []
        self.answer = (200, {"status": "success", "data": {"resultType": "vector", "result": []}}, 0.0)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                form = urllib.parse.parse_qs(self.rfile.read(n).decode())
                outer.requests.append({"path": self.path, "form": form, "auth": self.headers.get("Authorization")})
                status, body, delay = outer.answer
                time.sleep(delay)
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def prom():
    p = FakePrometheus()
    yield p
    p.close()


def ok(result):
    return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}, 0.0


def test_one_post_per_read_and_a_failed_read_keeps_the_last_good_hosts_stale(prom):
    prom.answer = ok(gpudock_host("gpu-a", UA))
    r = FleetReader(prom.url, timeout=2)
    v1 = r.read()
    assert v1.ok and [h.hostname for h in v1.hosts] == ["gpu-a"] and not v1.hosts[0].stale
    assert len(prom.requests) == 2  # the parts of one read, sent together
    assert {r["path"] for r in prom.requests} == {"/api/v1/query"}
    assert sorted(q for r in prom.requests for q in r["form"]["query"]) == sorted(r.queries_for())
    prom.answer = (503, b"Service Unavailable", 0.0)
    v2 = r.read()
    assert not v2.ok and v2.stale
    assert (
        v2.error == f"Prometheus at {prom.url} is not ready (HTTP 503: starting, or shutting down): try again shortly"
    )
    assert [h.hostname for h in v2.hosts] == ["gpu-a"]
    assert v2.hosts[0].stale and v2.hosts[0].gpus == v1.hosts[0].gpus


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        ((200, b"", 1.5), "did not answer within 0.5 s (overloaded, or a slow link?): try again, or give it longer"),
        ((401, b"Unauthorized", 0.0), "(HTTP 401) with no credentials: set GPUDOCK_PROMETHEUS_TOKEN"),
        ((400, {"status": "error", "errorType": "bad_data", "error": "parse error"}, 0.0),
         "Prometheus could not run the fleet query: parse error"),
        ((422, {"status": "error", "errorType": "execution",
                "error": "found duplicate series for the match group"}, 0.0),
         "series of another exporter clash with gpudock's or dcgm-exporter's names and labels"),
        ((200, b"<html>Grafana</html>", 0.0), "answered, but not as the Prometheus HTTP API does"),
        ((404, b"404 page not found", 0.0), "has no /api/v1/query (HTTP 404): give Prometheus's base URL"),
        ((502, b"Bad Gateway", 0.0), "the proxy in front of Prometheus"),
    ],
)  # fmt: skip
def test_prometheus_faults_in_words(prom, answer, words):
    prom.answer = answer
    v = FleetReader(prom.url, timeout=0.5).read()
    assert not v.ok and v.stale and v.hosts == ()
    assert words in v.error


def test_unreachable_prometheus(prom):
    url = prom.url
    prom.close()
    v = FleetReader(url, timeout=2).read()
    assert v.error == (
        f"Prometheus at {url} does not answer (connection refused): is it running, and is this its address and port?"
    )


def test_credentials_are_sent_from_the_environment_or_files(prom, tmp_path):
    FleetReader(prom.url, auth=auth_from({"GPUDOCK_PROMETHEUS_TOKEN": "t0k3n"})).read()
    tok = tmp_path / "token"
    tok.write_text("from-file\n")
    FleetReader(prom.url, auth=auth_from({}, token_file=str(tok))).read()
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    FleetReader(prom.url, auth=auth_from({"GPUDOCK_PROMETHEUS_USER": "ops"}, password_file=str(pw))).read()
    FleetReader(prom.url, auth=auth_from({"GPUDOCK_PROMETHEUS_PASSWORD": "p"}, user="ops")).read()
    assert [r["auth"] for r in prom.requests][::2] == [  # each read: two queries, the same credentials
        "Bearer t0k3n",
        "Bearer from-file",
        "Basic " + base64.b64encode(b"ops:s3cret").decode(),
        "Basic " + base64.b64encode(b"ops:p").decode(),
    ]


def test_credentials_refused_where_they_would_leak_or_are_incomplete(tmp_path):
    with pytest.raises(ValueError, match="a password in the URL shows in ps"):
        check_url("http://ops:s3cret@prometheus:9090")
    with pytest.raises(AuthError, match="no user: set GPUDOCK_PROMETHEUS_USER"):
        auth_from({"GPUDOCK_PROMETHEUS_PASSWORD": "p"})
    with pytest.raises(AuthError, match="no password: set GPUDOCK_PROMETHEUS_PASSWORD"):
        auth_from({}, user="ops")
    with pytest.raises(AuthError, match="cannot read the bearer token file"):
        auth_from({}, token_file=str(tmp_path / "missing"))
    with pytest.raises(AuthError, match="both a bearer token and basic auth"):
        auth_from({"GPUDOCK_PROMETHEUS_TOKEN": "t", "GPUDOCK_PROMETHEUS_USER": "u", "GPUDOCK_PROMETHEUS_PASSWORD": "p"})


def test_the_cli_takes_no_secret_as_an_option_value():
    from gpudock.cli import build_parser

    fleet = build_parser()._subparsers._group_actions[0].choices["fleet"]
    opts = {o for a in fleet._actions for o in a.option_strings}
    assert not {o for o in opts if any(w in o for w in ("token", "password")) and not o.endswith("-file")}


# ---------------------------------------------------------------- sort and filter


def test_sort_and_filter():
    result = []
    result += gpudock_host("gpu-a", UA, util=10, holders=("train-a",))
    result += gpudock_host("gpu-b", UB, util=90)
    result += [x for x in gpudock_host("gpu-c", UC, util=50, holders=("triton",)) if x["metric"][PART] != "fresh"]
    hosts, _ = assemble(result, NOW)
    assert [h.hostname for h in sort_hosts(hosts, "util")] == ["gpu-b", "gpu-c", "gpu-a"]
    assert [h.hostname for h in sort_hosts(hosts, "util", reverse=True)] == ["gpu-a", "gpu-c", "gpu-b"]
    assert [h.hostname for h in sort_hosts(hosts, "host", reverse=True)] == ["gpu-c", "gpu-b", "gpu-a"]
    assert [h.hostname for h in sort_hosts(hosts, "stale")] == ["gpu-c", "gpu-a", "gpu-b"]
    assert [h.hostname for h in filter_hosts(hosts, "train")] == ["gpu-a"]
    assert [h.hostname for h in filter_hosts(hosts, "is:held")] == ["gpu-a", "gpu-c"]
    assert [h.hostname for h in filter_hosts(hosts, "is:held is:stale")] == ["gpu-c"]
    assert [h.hostname for h in filter_hosts(hosts, "is:free")] == ["gpu-b"]
    assert [h.hostname for h in filter_hosts(hosts, "H100 gpu-b")] == ["gpu-b"]
    with pytest.raises(ValueError, match="sort by one of"):
        sort_hosts(hosts, "name")


def test_a_summary_read_gives_each_host_its_figures_without_its_gpus():
    g = {"hostname": "gpu-a"}
    result = [
        s("fresh", **g),
        s("poll", NOW - 1, instance="gpu-a:10940", **g),
        s("s_models", 6, modelName="NVIDIA H100 80GB HBM3", **g),
        s("s_models", 2, modelName="NVIDIA A100-SXM4-80GB", **g),
        s("s_util", 42.5, **g),
        s("s_used", 10 * 1024**3, **g),
        s("s_total", 640 * 1024**3, **g),
        s("s_temp", 71, **g),
        s("s_power", 2400, **g),
        s("s_held", 3, **g),
        s("s_holders", container="train-a", image="pytorch:24.01", **g),
        s("s_holders", container="triton", image="tritonserver:23.10", **g),
        s("s_xid", 1, xid="1", **g),  # of its GPUs dcgm-exporter also reports, 1 with an Xid, 7 without
        s("s_xid", 7, xid="0", **g),
        # dcgm-exporter on gpu-a, in a container with a hostname of its own: every GPU is gpudock's too
        s("dcgm_fresh", Hostname="d41f0c2", instance="10.0.0.1:9400"),
        s("s_dmodels", 8, Hostname="d41f0c2", instance="10.0.0.1:9400", modelName="NVIDIA H100 80GB HBM3"),
        s("s_dcovered", 8, Hostname="d41f0c2", instance="10.0.0.1:9400"),
        # dcgm-exporter alone
        s("dcgm_fresh", hostname="dgx-old", instance="dgx-old:9400"),
        s("s_dmodels", 2, hostname="dgx-old", instance="dgx-old:9400", modelName="NVIDIA A100-SXM4-80GB"),
        s("s_dutil", 12, hostname="dgx-old", instance="dgx-old:9400"),
        s("s_dused", 2048, hostname="dgx-old", instance="dgx-old:9400"),
        s("s_dfree", 161792, hostname="dgx-old", instance="dgx-old:9400"),
        s("s_dxid", 1, hostname="dgx-old", instance="dgx-old:9400"),
    ]
    hosts, problems = assemble(result, NOW, detailed=False)
    assert problems == ()
    old, a = hosts
    assert (a.hostname, a.detailed, a.gpus, a.gpu_count, a.held, a.utilization) == ("gpu-a", False, (), 8, 3, 42.5)
    assert (a.memory_used_mib, a.memory_total_mib, a.temperature_c, a.power_w) == (10240, 655360, 71, 2400)
    assert a.holder_names == ("train-a", "triton") and a.images == ("pytorch:24.01", "tritonserver:23.10")
    assert a.models == ("NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3")
    assert a.sources == ("gpudock", "dcgm-exporter") and a.xid_gpus == 1 and a.errors == 1
    assert (old.hostname, old.gpu_count, old.held, old.memory_total_mib, old.xid_gpus) == (
        "dgx-old",
        2,
        None,
        163840,
        1,
    )
    assert "gpus" not in a.to_json() and a.to_json()["summary"]["holders"] == ["train-a", "triton"]
    assert [h.hostname for h in filter_hosts(hosts, "triton")] == ["gpu-a"]
    assert [h.hostname for h in filter_hosts(hosts, "a100")] == ["dgx-old", "gpu-a"]


def test_the_fleet_core_and_its_commands_never_import_textual():
    import subprocess
    import sys

    code = (
        "import sys, gpudock.fleet.exporter, gpudock.fleet.hpc, gpudock.fleet.reader, gpudock.fleet.promql, "
        "gpudock.fleet.view, gpudock.commands.exporter, gpudock.commands.fleet; print('textual' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
