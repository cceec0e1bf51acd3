"""The real-GPU check (``scripts/device-check``): gpudock's answers against the driver's own tools.

On a machine with an NVIDIA GPU and driver it runs ``gpudock gpus/libs/doctor/holders --json``,
``nvidia-smi -q -x`` and ``ldconfig -p``, and prints one table row per fact that both sides state:
each GPU's UUID, PCI bus id, minor number (nvidia-smi's "Minor Number"), memory, BAR1 size and
PCIe link; the driver and CUDA versions; the loader's pick for ``libnvidia-ml.so.1`` and
``libcuda.so.1`` and those files' driver versions; and whether the doctor and the holders map ran.
Exit status: 0 every row agrees, 1 some row disagrees (marked ``DIFF``), 2 no GPU or driver here
(nothing to compare) or a tool could not run.

The comparison (:func:`compare`) takes the tools' outputs as text, so it is tested on recorded
``nvidia-smi -q -x`` output (the layout of NVIDIA's ``nvsmi_device_v12.dtd``); :func:`main` only
runs the commands, each under a time limit, so the whole check stays well under two minutes.
Plain Python, no Textual; nothing but the installed package and the driver's tools is needed.
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass

from gpudock.exitcode import ExitCode
from gpudock.model import nvml_bus_id

# 0: every reading agrees; 1: a disagreement (the table shows it); 2: no NVIDIA GPU or driver here
EXIT_OK, EXIT_DIFF, EXIT_NO_GPU = ExitCode.OK, ExitCode.FINDINGS, ExitCode.FAILED
TIMEOUT_S = 25  # each command; five of them stay under two minutes together
WATCHED_SONAMES = ("libnvidia-ml.so.1", "libcuda.so.1")


@dataclass(frozen=True)
class Row:
    what: str
    gpudock: str
    reference: str  # what nvidia-smi or ldconfig says
    source: str  # which tool the reference comes from
    ok: bool


@dataclass(frozen=True)
class SmiGpu:
    """One <gpu> of ``nvidia-smi -q -x``, in its order (NVML's index order)."""

    index: int
    uuid: str | None
    pci_bus_id: str | None
    minor: int | None
    memory_total_mib: int | None
    bar1_total_mib: int | None
    pcie_gen_max: int | None
    pcie_width_max: int | None
    product_name: str | None


@dataclass(frozen=True)
class SmiLog:
    driver_version: str | None
    cuda_version: str | None
    gpus: tuple[SmiGpu, ...]


class CheckError(Exception):
    """A tool's output cannot be read; the message says which and why."""


def _text(node, path: str) -> str | None:
    el = node.find(path)
    if el is None or el.text is None:
        return None
    v = el.text.strip()
    return None if v in ("", "N/A", "Unknown Error", "[N/A]") else v


def _number(text: str | None) -> int | None:
    """ "81559 MiB" -> 81559, "16x" -> 16, "3" -> 3; None for N/A."""
    if text is None:
        return None
    m = re.match(r"\s*(\d+)", text)
    return int(m.group(1)) if m else None


def parse_smi_xml(text: str) -> SmiLog:
    """``nvidia-smi -q -x`` (nvsmi_device_v11/v12 layout) -> the facts the check compares."""
    # The DOCTYPE names a DTD file that is not shipped everywhere; ElementTree does not fetch it.
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise CheckError(f"nvidia-smi -q -x: not XML ({e})") from None
    if root.tag != "nvidia_smi_log":
        raise CheckError(f"nvidia-smi -q -x: expected <nvidia_smi_log>, got <{root.tag}>")
    gpus = []
    for i, g in enumerate(root.findall("gpu")):
        bus = _text(g, "pci/pci_bus_id") or g.get("id")
        gpus.append(
            SmiGpu(
                index=i,
                uuid=_text(g, "uuid"),
                pci_bus_id=nvml_bus_id(bus) if bus else None,
                minor=_number(_text(g, "minor_number")),
                memory_total_mib=_number(_text(g, "fb_memory_usage/total")),
                bar1_total_mib=_number(_text(g, "bar1_memory_usage/total")),
                pcie_gen_max=_number(_text(g, "pci/pci_gpu_link_info/pcie_gen/max_link_gen")),
                pcie_width_max=_number(_text(g, "pci/pci_gpu_link_info/link_widths/max_link_width")),
                product_name=_text(g, "product_name"),
            )
        )
    return SmiLog(_text(root, "driver_version"), _text(root, "cuda_version"), tuple(gpus))


_LDCONFIG_LINE = re.compile(r"^\s+(?P<soname>\S+)\s+\((?P<flags>[^)]*)\)\s+=>\s+(?P<path>\S+)\s*$")


def ldconfig_picks(text: str, arch: str = "x86-64") -> dict[str, str]:
    """``ldconfig -p`` -> {soname: the path ld.so takes}: the first entry for the soname whose flags
    name this machine's architecture (the cache is searched in that order)."""
    picks: dict[str, str] = {}
    for line in text.splitlines():
        m = _LDCONFIG_LINE.match(line)
        if not m:
            continue
        flags = [f.strip() for f in m.group("flags").split(",")]
        if m.group("soname") in picks or "hwcap:" in m.group("flags"):
            continue
        if (arch and arch in flags) or (not arch and len(flags) == 1):
            picks[m.group("soname")] = m.group("path")
    return picks


def _arch_flag() -> str:
    return {"x86_64": "x86-64", "aarch64": "AArch64", "ppc64le": "64bit"}.get(platform.machine(), "x86-64")


def _fmt(v) -> str:
    return "N/A" if v is None else str(v)


def compare(
    gpus_json: str,
    libs_json: str,
    doctor_json: str | None,
    holders_json: str | None,
    smi_xml: str,
    ldconfig_p: str,
    arch: str = "x86-64",
) -> list[Row]:
    """Every fact both sides state, as table rows. Raises CheckError when an output is unreadable."""
    try:
        gpus = json.loads(gpus_json)
        libs = json.loads(libs_json)
    except json.JSONDecodeError as e:
        raise CheckError(f"gpudock gpus/libs --json: not JSON ({e})") from None
    smi = parse_smi_xml(smi_xml)
    rows: list[Row] = []

    def add(what: str, ours, theirs, source: str = "nvidia-smi -q -x", same: Callable | None = None) -> None:
        ok = same(ours, theirs) if same else ours == theirs
        rows.append(Row(what, _fmt(ours), _fmt(theirs), source, bool(ok)))

    add("driver version", gpus.get("driver_version"), smi.driver_version)
    add("CUDA version (driver's)", gpus.get("cuda_driver_version"), smi.cuda_version)
    ours_gpus = gpus.get("gpus") or []
    add("GPUs", len(ours_gpus), len(smi.gpus))
    by_uuid = {g.uuid: g for g in smi.gpus if g.uuid}
    for g in ours_gpus:
        i = g.get("index")
        ref = smi.gpus[i] if isinstance(i, int) and i < len(smi.gpus) else None
        add(f"GPU {i} UUID", g.get("uuid"), ref.uuid if ref else None)
        # The rest is matched by UUID, so one misordered card does not make every row differ.
        ref = by_uuid.get(g.get("uuid")) or ref
        bus = g.get("pci_bus_id")
        add(f"GPU {i} bus id", nvml_bus_id(bus) if bus else None, ref.pci_bus_id if ref else None)
        add(f"GPU {i} minor (/dev/nvidiaN)", g.get("minor"), ref.minor if ref else None)
        add(f"GPU {i} memory MiB", g.get("memory_total_mib"), ref.memory_total_mib if ref else None)
        bar1 = (g.get("bar1") or {}).get("total_mib")
        if bar1 is not None or (ref and ref.bar1_total_mib is not None):
            add(f"GPU {i} BAR1 MiB", bar1, ref.bar1_total_mib if ref else None)
        pcie = g.get("pcie") or {}
        if pcie.get("gen_max") is not None or (ref and ref.pcie_gen_max is not None):
            add(
                f"GPU {i} PCIe max gen x width",
                f"{_fmt(pcie.get('gen_max'))} x{_fmt(pcie.get('width_max'))}",
                f"{_fmt(ref.pcie_gen_max)} x{_fmt(ref.pcie_width_max)}" if ref else None,
            )
    picks = ldconfig_picks(ldconfig_p, arch)
    entries = libs.get("libraries") or []
    for soname in WATCHED_SONAMES:
        ours = next(
            (
                e
                for e in entries
                if e.get("soname") == soname and e.get("loader_pick") and arch in (e.get("flag_text") or "")
            ),
            None,
        )
        add(f"{soname}: the loader's pick", ours.get("path") if ours else None, picks.get(soname), "ldconfig -p")
        add(
            f"{soname}: its driver version",
            ours.get("version") if ours else None,
            smi.driver_version,
            "nvidia-smi -q -x",
        )
    if doctor_json is not None:
        rows.append(_doctor_row(doctor_json, smi))
    if holders_json is not None:
        rows.append(_holders_row(holders_json, smi))
    return rows


def _doctor_row(doctor_json: str, smi: SmiLog) -> Row:
    try:
        doc = json.loads(doctor_json)
    except json.JSONDecodeError:
        return Row("doctor: driver vs libraries", "no JSON", _fmt(smi.driver_version), "nvidia-smi -q -x", False)
    f = next((f for f in doc.get("findings", []) if f.get("id") == "driver-library-mismatch"), None)
    if f is None:
        return Row("doctor: driver vs libraries", "no finding", _fmt(smi.driver_version), "nvidia-smi -q -x", False)
    return Row(
        "doctor: driver vs libraries",
        f"{f.get('severity')}: {f.get('title')}",
        _fmt(smi.driver_version),
        "nvidia-smi -q -x",
        f.get("severity") in ("ok", "info"),
    )


def _holders_row(holders_json: str, smi: SmiLog) -> Row:
    try:
        h = json.loads(holders_json)
    except json.JSONDecodeError:
        return Row("holders: GPUs mapped", "no JSON", str(len(smi.gpus)), "nvidia-smi -q -x", False)
    n = len(h.get("gpus") or [])
    return Row("holders: GPUs mapped", str(n), str(len(smi.gpus)), "nvidia-smi -q -x", n == len(smi.gpus))


def render(rows: list[Row]) -> str:
    w_what = max([4, *(len(r.what) for r in rows)])
    w_ours = max([7, *(len(r.gpudock) for r in rows)])
    w_ref = max([9, *(len(r.reference) for r in rows)])
    lines = [f"{'':4}  {'WHAT':<{w_what}}  {'GPUDOCK':<{w_ours}}  {'REFERENCE':<{w_ref}}  FROM"]
    for r in rows:
        mark = "ok" if r.ok else "DIFF"
        lines.append(f"{mark:<4}  {r.what:<{w_what}}  {r.gpudock:<{w_ours}}  {r.reference:<{w_ref}}  {r.source}")
    bad = sum(not r.ok for r in rows)
    lines.append(f"{len(rows)} facts compared, {bad} disagree" if bad else f"{len(rows)} facts compared, all agree")
    return "\n".join(lines)


Runner = Callable[[list[str]], "subprocess.CompletedProcess[str]"]


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)


def main(argv: list[str] | None = None, runner: Runner = _run, which=shutil.which) -> int:
    out = sys.stdout
    if which("nvidia-smi") is None:
        print(
            "device-check: no NVIDIA driver on this machine (nvidia-smi is not on PATH): nothing to compare", file=out
        )
        return EXIT_NO_GPU
    try:
        smi = runner(["nvidia-smi", "-q", "-x"])
    except (OSError, subprocess.TimeoutExpired) as e:
        print(f"device-check: nvidia-smi -q -x did not run: {e}", file=out)
        return EXIT_NO_GPU
    if smi.returncode != 0:
        why = (smi.stdout + smi.stderr).strip().splitlines()
        print(
            f"device-check: nvidia-smi found no usable GPU here ({why[0] if why else f'exit {smi.returncode}'}): "
            "nothing to compare",
            file=out,
        )
        return EXIT_NO_GPU
    try:
        log = parse_smi_xml(smi.stdout)
    except CheckError as e:
        print(f"device-check: {e}", file=out)
        return EXIT_NO_GPU
    if not log.gpus:
        print("device-check: nvidia-smi lists no GPU on this machine: nothing to compare", file=out)
        return EXIT_NO_GPU
    gpudock = [sys.executable, "-m", "gpudock"]
    results = {}
    for name in ("gpus", "libs", "doctor", "holders"):
        try:
            results[name] = runner([*gpudock, name, "--json"])
        except (OSError, subprocess.TimeoutExpired) as e:
            print(f"device-check: gpudock {name} --json did not finish: {e}", file=out)
            return EXIT_NO_GPU
    try:
        ld = runner(["ldconfig", "-p"]).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        print(f"device-check: ldconfig -p did not run: {e}", file=out)
        return EXIT_NO_GPU
    try:
        rows = compare(
            results["gpus"].stdout,
            results["libs"].stdout,
            results["doctor"].stdout,
            results["holders"].stdout,
            smi.stdout,
            ld,
            _arch_flag(),
        )
    except CheckError as e:
        print(f"device-check: {e}", file=out)
        return EXIT_NO_GPU
    names = ", ".join(g.product_name or "?" for g in log.gpus)
    print(f"device-check: driver {log.driver_version}, {len(log.gpus)} GPU(s): {names}", file=out)
    print(render(rows), file=out)
    return EXIT_OK if all(r.ok for r in rows) else EXIT_DIFF


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
