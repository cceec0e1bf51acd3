"""Xid events: the pure parser on real-looking kernel log lines (gpudock.doctor.xid), and the
"xid" finding on test roots with kern.log/syslog/messages files (bounded tail reads, GPUs named
through NVML or /proc/driver/nvidia/gpus, events before the last boot not counted)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from gpudock.doctor import gather, run_checks, xid
from gpudock.doctor.checks import health
from gpudock.doctor.facts import KERNEL_LOG_TAIL, read_tail
from gpudock.host.root import HostRoot
from gpudock.model import Gpu, HostSnapshot
from helpers import kernelroot as K

# Real shapes: driver 535 (pid/name fields), older drivers (no PCI: prefix, no pid), the
# message newer drivers print without an Xid, and the RFC 3339 prefix of rsyslog/journald exports.
L79 = (
    "Nov 20 03:14:07 gpu07 kernel: [812345.123456] NVRM: Xid (PCI:0000:86:00): 79, pid='<unknown>', "
    "name=<unknown>, GPU has fallen off the bus."
)
L79_OLD = "Jan  5 01:00:00 gpu02 kernel: [ 5034.2] NVRM: Xid (0000:03:00): 79, GPU has fallen off the bus."
L31 = (
    "2023-11-20T10:01:02.123456+00:00 gpu07 kernel: NVRM: Xid (PCI:0000:3b:00): 31, pid=48113, name=python3, "
    "Ch 00000008, intr 10000000. MMU Fault: ENGINE GRAPHICS GPCCLIENT_T1_0 faulted @ 0x7f3a_2e000000. "
    "Fault is of type FAULT_PDE ACCESS_TYPE_VIRT_READ"
)
L48 = "2023-11-21T08:00:00+00:00 gpu07 kernel: NVRM: Xid (PCI:0000:3b:00): 48, pid=2211, name=train, An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer at partition 6, subpartition 0."  # noqa: E501
LOFF = (
    "2023-11-22T09:30:00+00:00 gpu07 kernel: NVRM: The NVIDIA GPU 0000:86:00.0 (PCI ID: 10de:20b2) installed in "
    "this system has fallen off the bus and is not responding to commands."
)
L119 = (
    "2023-11-22T09:31:00+00:00 gpu07 kernel: NVRM: Xid (PCI:0000:3b:00): 119, pid=3310, name=nvidia-smi, "
    "Timeout after 6s of waiting for RPC response from GPU0 GSP! Expected function 76 (GSP_RM_CONTROL)."
)
NOISE = [
    "2023-11-20T10:00:00+00:00 gpu07 kernel: NVRM: loading NVIDIA UNIX x86_64 Kernel Module  535.129.03",
    "2023-11-20T10:00:01+00:00 gpu07 kernel: NVRM: GPU at PCI:0000:3b:00: GPU-0a1b2c3d-0000-1111-2222-333344445555",
    "2023-11-20T10:00:02+00:00 gpu07 systemd[1]: Started nvidia-persistenced.service.",
]


def test_parse_xid_79_with_pid_and_name():
    e = xid.parse_line(L79)
    assert (e.code, e.bus, e.pid, e.process) == (79, (0, 0x86, 0), "<unknown>", "<unknown>")
    assert e.bus_id == "0000:86:00.0" and e.severity == "error" and e.meaning == "GPU has fallen off the bus"
    assert e.message == "GPU has fallen off the bus." and e.line == L79


def test_parse_old_driver_form_and_app_fault():
    e = xid.parse_line(L79_OLD)
    assert (e.code, e.bus, e.pid) == (79, (0, 3, 0), None)
    e = xid.parse_line(L31)
    assert (e.code, e.bus, e.pid, e.process, e.severity) == (31, (0, 0x3B, 0), "48113", "python3", "info")
    assert e.message.startswith("Ch 00000008") and "usually an application fault" in e.meaning


def test_parse_fallen_off_without_xid():
    e = xid.parse_line(LOFF)
    assert (e.code, e.bus, e.severity) == (None, (0, 0x86, 0), "error")


def test_parse_ignores_other_nvrm_lines_and_counts_in_order():
    text = "\n".join([NOISE[0], L31, NOISE[1], L48, NOISE[2], LOFF, L119, ""])
    evs = xid.parse(text)
    assert [e.code for e in evs] == [31, 48, None, 119]
    assert xid.parse("") == [] and xid.parse("no driver here\n") == []
    assert xid.parse(L119) and xid.parse(L119 + "\r\n")[0].line == L119  # last line without newline; CRLF


@pytest.mark.parametrize(
    "code,sev",
    [
        (79, "error"),
        (48, "error"),
        (92, "warning"),
        (94, "warning"),
        (95, "error"),
        (119, "error"),
        (120, "error"),
        (13, "info"),
        (31, "info"),
        (43, "info"),
        (45, "info"),
        (61, "info"),
        (None, "error"),
    ],
)
def test_severity_table(code, sev):
    assert xid.severity(code) == sev


def test_bus_key_forms():
    k = (0, 0x3B, 0)
    for s in ("00000000:3B:00.0", "0000:3b:00.0", "0000:3b:00", "PCI:0000:3b:00", "3b:00.0"):
        assert xid.bus_key(s) == k, s
    assert xid.bus_key("0001:3b:00.0") == (1, 0x3B, 0)
    assert xid.bus_key("") is None and xid.bus_key("GPU-123") is None and xid.bus_key("zz:yy:xx") is None


def test_timestamps_iso_and_classic_year_from_mtime():
    assert xid.parse_line(L31).when == pytest.approx(1700474462.123456)
    # classic syslog has no year: an event after the file's mtime is from the year before
    ref = time.mktime((2024, 1, 10, 0, 0, 0, 0, 0, -1))
    assert time.localtime(xid.parse_line(L79, ref).when)[:6] == (2023, 11, 20, 3, 14, 7)
    assert time.localtime(xid.parse_line(L79_OLD, ref).when)[:3] == (2024, 1, 5)
    assert xid.parse_line("kernel: NVRM: Xid (PCI:0000:3b:00): 13, Graphics Exception").when is None


# -- the finding on test roots ------------------------------------------------------------------------


def _root(tmp_path: Path) -> Path:
    root = tmp_path / "host"
    K.kernel(root, "535.129.03")  # /proc/stat btime 1700000000 = 2023-11-14T22:13:20Z
    K.gpu(root, "0000:3b:00.0", 0)
    K.gpu(root, "0000:86:00.0", 1, uuid="GPU-ffffffff-0000-1111-2222-333344445555")
    return root


def _log(root, path, lines, mtime=1700900000):
    p = K.write(root, path, "".join(line + "\n" for line in lines))
    os.utime(p, (mtime, mtime))
    return p


def _xid(root, nvml=None):
    facts = gather(HostRoot(root), use_docker=False)
    if nvml is not None:
        facts.nvml, facts.nvml_checked = nvml, True
    return facts, {f.id: f for f in run_checks(facts)}["xid"]


def test_clean_log_is_ok(tmp_path):
    root = _root(tmp_path)
    _log(root, "/var/log/kern.log", NOISE)
    _, f = _xid(root)
    assert f.severity == "ok", f.summary
    assert [(e.source, e.value) for e in f.evidence] == [("/var/log/kern.log", "0")]


def test_xid_79_is_an_error_named_by_gpu(tmp_path):
    root = _root(tmp_path)
    # Debian writes kernel lines to kern.log and syslog both: each event counts once.
    _log(root, "/var/log/kern.log", NOISE + [L31, LOFF])
    _log(root, "/var/log/syslog", NOISE + [L31, LOFF])
    nvml = HostSnapshot(
        "535.129.03",
        "12.2",
        "12.535.129.03",
        gpus=(
            Gpu(0, "GPU-0a1b2c3d-0000-1111-2222-333344445555", pci_bus_id="00000000:3B:00.0"),
            Gpu(1, "GPU-ffffffff-0000-1111-2222-333344445555", pci_bus_id="00000000:86:00.0"),
        ),
    )
    _, f = _xid(root, nvml)
    assert f.severity == "error"
    assert "GPU 1 (00000000:86:00.0): fallen off the bus" in f.summary
    assert "GPU 0 (00000000:3B:00.0): Xid 31" in f.summary
    assert f.evidence[0] == health.Evidence("/var/log/kern.log", LOFF, "fallen off the bus")
    assert ("/var/log/kern.log", L31, "Xid 31") in [(e.source, e.line, e.value) for e in f.evidence]
    assert len(f.data["events"]) == 2 and {e["uuid"] for e in f.data["events"]} == {
        "GPU-0a1b2c3d-0000-1111-2222-333344445555",
        "GPU-ffffffff-0000-1111-2222-333344445555",
    }
    assert "reboot" in f.fix and "application faults" in f.fix


def test_without_nvml_gpus_are_named_from_proc(tmp_path):
    root = _root(tmp_path)
    _log(root, "/var/log/messages", [L48])
    _, f = _xid(root)
    assert f.severity == "error"
    assert "0000:3b:00.0 (/dev/nvidia0): Xid 48 (double-bit ECC error)" in f.summary
    assert "ROW_REMAPPER" in f.fix


def test_unknown_bus_is_named_by_its_id(tmp_path):
    root = _root(tmp_path)
    _log(root, "/var/log/kern.log", [L119.replace("PCI:0000:3b:00", "PCI:0000:c1:00")])
    _, f = _xid(root)
    assert "0000:c1:00.0 (not a GPU gpudock sees now): Xid 119" in f.summary
    assert f.data["events"][0]["bus_id"] == "0000:c1:00.0" and f.data["events"][0]["uuid"] is None


def test_only_application_faults_are_info(tmp_path):
    root = _root(tmp_path)
    _log(root, "/var/log/kern.log", [L31, L31.replace("10:01:02", "10:05:00")])
    _, f = _xid(root)
    assert f.severity == "info" and "x2" in f.summary and "application" in f.fix


def test_events_before_the_last_boot_do_not_count(tmp_path):
    root = _root(tmp_path)
    before = "2023-11-01T00:00:00+00:00 gpu07 kernel: NVRM: Xid (PCI:0000:86:00): 79, pid=1, name=x, GPU has fallen off the bus."  # noqa: E501
    _log(root, "/var/log/kern.log", [before])
    _, f = _xid(root)
    assert f.severity == "ok" and "(1 before it)" in f.summary and f.data["before_boot"] == 1
    _log(root, "/var/log/kern.log", [before, L119])
    _, f = _xid(root)
    assert f.severity == "error" and "1 older event(s) from before the boot not counted" in f.summary
    assert f.summary.startswith("Since the last boot: 0000:3b:00.0 (/dev/nvidia0): Xid 119 (GSP RPC timeout)")
    assert "GSP" in f.fix


def test_no_log_files_and_unreadable_logs_are_info(tmp_path):
    root = _root(tmp_path)
    _, f = _xid(root)
    assert f.severity == "info" and "journalctl -k" in f.fix
    assert [e.source for e in f.evidence] == ["/var/log/kern.log", "/var/log/messages", "/var/log/syslog"]
    (root / "var/log/kern.log").mkdir(parents=True)  # not a file: said, not raised
    _, f = _xid(root)
    assert f.severity == "info" and "/var/log/kern.log: unreadable: Is a directory" in f.summary
    assert "as root" not in f.fix and "journalctl -k" in f.fix
    os.rmdir(root / "var/log/kern.log")
    os.mkfifo(root / "var/log/kern.log")  # a FIFO must not block the doctor
    _, f = _xid(root)
    assert f.severity == "info" and "/var/log/kern.log: not a regular file" in f.summary


def test_tail_read_is_bounded_and_starts_at_a_line(tmp_path):
    root = _root(tmp_path)
    filler = "2023-11-20T00:00:00+00:00 gpu07 kernel: usb 1-1: new high-speed USB device number 2 using xhci_hcd\n"
    n = KERNEL_LOG_TAIL // len(filler) + 100
    p = root / "var/log/kern.log"
    p.parent.mkdir(parents=True)
    with open(p, "w") as fh:
        fh.write(L79.replace("Nov 20", "Nov 19") + "\n")  # beyond the last 2 MiB: not read
        fh.write(filler * n)
        fh.write(L119 + "\n")
    t = read_tail(HostRoot(root), "/var/log/kern.log")
    assert t.offset > 0 and len(t.text.encode()) <= KERNEL_LOG_TAIL
    assert t.text.startswith(filler) and t.text.endswith(L119 + "\n")
    _, f = _xid(root)
    assert [e["code"] for e in f.data["events"]] == [119]
    assert ("/var/log/kern.log", "last 2 MiB read") in [(e.source, e.line) for e in f.evidence]
