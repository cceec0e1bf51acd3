"""Benchmark of the dashboard's hot paths on the built-in 8-GPU demo host.

Each figure comes with a reference measured in the same run, so the ratio means something on a
busy 2-core machine as on a fast workstation:

* refresh: CPU time of one ``NvmlSession.snapshot()`` of the 8-GPU demo host at its default
  cadence (every NVML read through the real pynvml bindings into the simulated library), against
  the bare pynvml calls for the same fast fields with no model built (the reference: what the
  bindings alone cost). Target: under 5 ms of CPU. (gpudock against nvitop reading the same
  fields: bench/bench_nvitop.py.)
* first frame: wall time from ``python -c`` to the first painted frame with the first snapshot
  in it (headless), against a minimal Textual app's first frame (reference).
  Target: under 1 s.
* idle: CPU use of the running dashboard over IDLE_SECONDS at the default 1 s refresh, started
  as ``gpudock --demo`` starts it (simulated NVML and Docker engine in the process, holders
  joined on every refresh), as a percentage of one core, against a minimal Textual app idling
  as long (reference; it idles at about 0 %, so the ratio that means something is the next one)
  and against a minimal Textual app that changes one line of text every second (the least a
  1 Hz dashboard does).
  Target: under 2 %.
* terminal output: bytes per second ``gpudock`` (its command line, Textual's real driver) writes
  to an 80x24 pty after start-up at its default 1 s refresh, against nvitop's monitor
  (``nvitop --monitor auto --interval 1``, unchanged, on gpudock's simulated NVML library:
  bench/nvitop_sim.py) on the same simulated host: what crosses a slow SSH link each second. The
  host is the demo with its MIG card whole (nvitop cannot show a MIG device without BAR1, which
  the simulated library lacks); both must show the same GPUs, or the benchmark fails. The CPU
  both use on the pty over the same window is recorded beside it, and the bytes per screen line
  (where they go). Also recorded: ``gpudock --demo`` against the 1 Hz ticker app (the figure
  of earlier runs). Target: at most 2x nvitop's bytes.

Usage: ``python bench/bench_dashboard.py [--idle-seconds N] [--only refresh,first_frame,output,idle]``;
``bench_dashboard()`` returns a dict. Needs the ``bench`` extra (nvitop): ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # helpers.tty, helpers.vt
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # nvitop_sim

import pynvml  # noqa: E402
from nvitop_sim import write_no_mig_scenario  # noqa: E402

from gpudock.host.nvml import NvmlSession  # noqa: E402
from gpudock.sim.libnvml import sim_library_loader  # noqa: E402
from gpudock.sim.scenario import builtin_scenario  # noqa: E402

TARGETS = {"refresh_cpu_ms": 5.0, "first_frame_s": 1.0, "idle_cpu_percent": 2.0, "tty_ratio_vs_nvitop": 2.0}


def _bare_pynvml_refresh(count: int) -> None:
    """The reference: the same NVML reads as a refresh, straight through pynvml, no model."""
    for i in range(count):
        h = pynvml.nvmlDeviceGetHandleByIndex(i)
        pynvml.nvmlDeviceGetMemoryInfo(h)
        pynvml.nvmlDeviceGetUtilizationRates(h)
        pynvml.nvmlDeviceGetPowerUsage(h)
        pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)
        pynvml.nvmlDeviceGetPersistenceMode(h)
        pynvml.nvmlDeviceGetComputeMode(h)
        pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM)
        pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM)
        try:
            pynvml.nvmlDeviceGetMigMode(h)
        except pynvml.NVMLError:
            pass
        procs = pynvml.nvmlDeviceGetComputeRunningProcesses(h)
        pynvml.nvmlDeviceGetGraphicsRunningProcesses(h)
        # the readings every refresh has had since the details pane shows what nvitop shows
        pynvml.nvmlDeviceGetFanSpeed(h)
        pynvml.nvmlDeviceGetPerformanceState(h)
        pynvml.nvmlDeviceGetCurrentClocksEventReasons(h)
        pynvml.nvmlDeviceGetBAR1MemoryInfo(h)
        pynvml.nvmlDeviceGetEncoderUtilization(h)
        pynvml.nvmlDeviceGetDecoderUtilization(h)
        if procs:
            try:
                pynvml.nvmlDeviceGetProcessUtilization(h, time.time_ns() // 1000 - 1_000_000)
            except pynvml.NVMLError:
                pass


def bench_refresh(rounds: int = 7, per_round: int = 200) -> dict:
    session = NvmlSession(sim_library_loader(builtin_scenario("demo")), source="sim:demo")
    session.snapshot()  # first refresh reads the static fields; steady state is what repeats
    ours, ref = [], []
    n = pynvml.nvmlDeviceGetCount()
    for _ in range(rounds):
        t = time.process_time()
        for _ in range(per_round):
            session.snapshot()
        ours.append((time.process_time() - t) / per_round * 1000)
        t = time.process_time()
        for _ in range(per_round):
            _bare_pynvml_refresh(n)
        ref.append((time.process_time() - t) / per_round * 1000)
    session.shutdown()
    o, r = statistics.median(ours), statistics.median(ref)
    return {
        "refresh_cpu_ms": round(o, 3),
        "refresh_reference_bare_pynvml_ms": round(r, 3),
        "refresh_ratio_vs_bare_pynvml": round(o / r, 2),
        "gpus": n,
    }


_FIRST_FRAME_GPUDOCK = r"""
import time, sys
t0 = time.perf_counter()
from gpudock.ui.app import GpudockApp, SnapshotReady
from gpudock.session import Options, open_session
class A(GpudockApp):
    def _schedule_next(self):  # called once a snapshot has been handed to the screens
        self.call_after_refresh(lambda: self.exit(time.perf_counter() - t0))
app = A(open_session(Options(demo=True)))
print(app.run(headless=True, size=(80, 24)))
"""

_FIRST_FRAME_MINIMAL = r"""
import time
t0 = time.perf_counter()
from textual.app import App
from textual.widgets import DataTable, Footer, Static
class A(App):
    def compose(self):
        yield Static("hello"); yield DataTable(); yield Footer()
    def on_mount(self):
        self.call_after_refresh(lambda: self.exit(time.perf_counter() - t0))
print(A().run(headless=True, size=(80, 24)))
"""

_IDLE = r"""
import sys
from textual.app import App
from textual.widgets import Static
secs = float(sys.argv[1])
if sys.argv[2] == "gpudock":
    # The dashboard exactly as `gpudock --demo` starts it: the simulated NVML library, the
    # simulated Docker engine with its containers, the holders join, at the default refresh.
    from gpudock.session import Options, open_session
    from gpudock.ui.app import GpudockApp
    app = GpudockApp(open_session(Options(demo=True), fallback_to_demo=True))
elif sys.argv[2] == "ticker":
    # The least a 1 Hz dashboard can do: one line of text that changes every second.
    import time
    class A(App):
        def compose(self):
            yield Static("", id="t")
        def on_mount(self):
            self.set_interval(1.0, lambda: self.query_one("#t", Static).update(time.strftime("%H:%M:%S")))
    app = A()
else:
    class A(App):
        def compose(self):
            yield Static("idle")
    app = A()
import threading
def stop():
    app.call_from_thread(app.exit)
threading.Timer(secs + 2.0, stop).start()
if len(sys.argv) > 3 and sys.argv[3] == "tty":
    app.run()  # on the terminal it was given (a pty: see bench_output)
else:
    app.run(headless=True, size=(80, 24))
if sys.argv[2] == "gpudock" and host.sim_host is not None:
    host.sim_host.close()
"""


def _run_first_frame(code: str) -> float:
    # Wall time of the whole process up to the first painted frame, interpreter start included.
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return wall


def bench_first_frame(rounds: int = 5) -> dict:
    ours = [_run_first_frame(_FIRST_FRAME_GPUDOCK) for _ in range(rounds)]
    ref = [_run_first_frame(_FIRST_FRAME_MINIMAL) for _ in range(rounds)]
    o, r = statistics.median(ours), statistics.median(ref)
    return {
        "first_frame_s": round(o, 3),
        "first_frame_reference_minimal_textual_s": round(r, 3),
        "first_frame_ratio_vs_minimal_textual": round(o / r, 2),
    }


def _idle_cpu(which: str, seconds: float) -> float:
    """CPU % of one core used by the app between 2 s after start (start-up excluded) and the end."""
    p = subprocess.Popen(
        [sys.executable, "-c", _IDLE, str(seconds), which], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    proc = psutil.Process(p.pid)
    time.sleep(2.0)
    c0 = proc.cpu_times()
    t0 = time.monotonic()
    time.sleep(seconds)
    c1 = proc.cpu_times()
    elapsed = time.monotonic() - t0
    p.wait(timeout=30)
    used = (c1.user + c1.system) - (c0.user + c0.system)
    return used / elapsed * 100


def bench_idle(seconds: float = 60.0) -> dict:
    ours = _idle_cpu("gpudock", seconds)
    ref = _idle_cpu("minimal", seconds)
    ticker = _idle_cpu("ticker", seconds)
    return {
        "idle_seconds": seconds,
        "idle_cpu_percent": round(ours, 2),
        "idle_reference_minimal_textual_percent": round(ref, 2),
        "idle_ratio_vs_minimal_textual": round(ours / ref, 2) if ref > 0 else None,
        "idle_reference_1hz_ticker_percent": round(ticker, 2),
        "idle_ratio_vs_1hz_ticker": round(ours / ticker, 2) if ticker > 0 else None,
    }


def _tty_env() -> dict[str, str]:
    """The same terminal for every program: xterm with 256 colours, UTF-8, no truecolor hint, and
    no Docker engine named (gpudock then serves its scenario's simulated engine)."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLORTERM", "NO_COLOR", "DOCKER_HOST", "LC_ALL")}
    env.update(TERM="xterm-256color", LANG="C.UTF-8")
    return {k: v for k, v in env.items() if not k.startswith("TEXTUAL")}


def _on_tty(argv: list[str], seconds: float) -> dict:
    """Run ``argv`` on an 80x24 pty (the program's real terminal driver) and measure, once it has
    started (4 s, its first full paint included, not counted): the bytes per second it writes,
    which is what crosses the operator's SSH link, and its CPU use; with the bytes per screen line
    and the screen it leaves (tests/helpers/vt.py reads the stream as a terminal would)."""
    from helpers import tty, vt

    pid, fd = tty.spawn(argv, _tty_env())
    screen = vt.Screen(80, 24)
    try:
        screen.feed(tty.read(fd, 4.0).decode(errors="replace"))
        proc = psutil.Process(pid)
        c0 = _cpu(proc)
        t0 = time.monotonic()
        data = tty.read(fd, seconds)
        elapsed = time.monotonic() - t0
        c1 = _cpu(proc)
    finally:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:  # it died: its screen says why (see bench_output)
            pass
        tty.read(fd, 2.0)
        os.close(fd)
        os.waitpid(pid, 0)
    screen.written.clear()
    screen.feed(data.decode(errors="replace"))
    return {
        "bytes_per_s": len(data) / elapsed,
        "cpu_percent": (c1 - c0) / elapsed * 100,
        "by_line": {y + 1: round(n / elapsed, 1) for y, n in sorted(screen.written.items())},
        "screen": screen.lines(),
    }


def _cpu(proc: psutil.Process) -> float:
    procs = [proc, *proc.children(recursive=True)]
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def _gpus_shown(lines: list[str], row: str) -> list[int]:
    return sorted({int(m.group(1)) for line in lines if (m := re.match(row, line))})


GPUDOCK_ROW = r"\s*(\d+)\s+[0-9a-fA-F]{2,}:[0-9a-fA-F]{2}\.\d\s"  # " 3  1E:00.0  nvidia2 ..." (NVML's capitals)
NVITOP_ROW = r"│\s+(\d+)\s"  # "│   3 N/A  31C ..."


def bench_output(seconds: float = 30.0) -> dict:
    """Bytes per second written to an 80x24 terminal at a 1 s refresh: gpudock against nvitop's
    monitor on the same simulated host (the demo with its MIG card whole: bench/nvitop_sim.py), and
    gpudock on the demo itself and the 1 Hz ticker app as before."""
    try:
        import nvitop
    except ImportError:
        raise SystemExit("bench: nvitop (the reference) is not installed: pip install -e '.[bench]'") from None

    here = Path(__file__).resolve().parent
    work = Path(tempfile.mkdtemp(prefix="gpudock-bench-tty-"))
    try:
        scenario = write_no_mig_scenario(work / "demo-no-mig.toml")
        gpudock = _on_tty([sys.executable, "-m", "gpudock", "--sim", str(scenario)], seconds)
        ref = _on_tty(
            [sys.executable, str(here / "nvitop_sim.py"), str(scenario), str(work / "nvitop.log"), "--monitor", "auto"]
            + ["--interval", "1"],
            seconds,
        )
        demo = _on_tty([sys.executable, "-m", "gpudock", "--demo"], seconds)
        ticker = _on_tty([sys.executable, "-c", _IDLE, str(seconds + 60), "ticker", "tty"], seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ours, theirs = _gpus_shown(gpudock["screen"], GPUDOCK_ROW), _gpus_shown(ref["screen"], NVITOP_ROW)
    if not ours or ours != theirs:
        raise RuntimeError(
            f"gpudock shows GPUs {ours}, nvitop {theirs}: not the same host\n"
            + "\n".join(gpudock["screen"] + ["-" * 80] + ref["screen"])
        )
    return {
        "tty_seconds": seconds,
        "tty_scenario": "demo-no-mig",
        "tty_gpus_shown": ours,
        "tty_bytes_per_s": round(gpudock["bytes_per_s"]),
        "tty_reference_nvitop_bytes_per_s": round(ref["bytes_per_s"]),
        "tty_ratio_vs_nvitop": round(gpudock["bytes_per_s"] / ref["bytes_per_s"], 2),
        "tty_cpu_percent": round(gpudock["cpu_percent"], 2),
        "tty_reference_nvitop_cpu_percent": round(ref["cpu_percent"], 2),
        "tty_cpu_ratio_vs_nvitop": round(gpudock["cpu_percent"] / ref["cpu_percent"], 2)
        if ref["cpu_percent"] > 0
        else None,
        "tty_demo_bytes_per_s": round(demo["bytes_per_s"]),
        "tty_reference_1hz_ticker_bytes_per_s": round(ticker["bytes_per_s"]),
        "tty_demo_ratio_vs_1hz_ticker": round(demo["bytes_per_s"] / ticker["bytes_per_s"], 2)
        if ticker["bytes_per_s"] > 0
        else None,
        "tty_bytes_per_s_by_line": {"gpudock": gpudock["by_line"], "nvitop": ref["by_line"], "demo": demo["by_line"]},
        "nvitop_version": nvitop.__version__,
    }


def bench_dashboard(idle_seconds: float = 60.0, only: set[str] | None = None) -> dict:
    parts = {
        "refresh": bench_refresh,
        "first_frame": bench_first_frame,
        "output": lambda: bench_output(min(30.0, idle_seconds)),
        "idle": lambda: bench_idle(idle_seconds),
    }
    out = {}
    for name, part in parts.items():
        if only is None or name in only:
            out.update(part())
    out["targets"] = TARGETS
    out["meets_targets"] = {k: out[k] <= v for k, v in TARGETS.items() if k in out}
    return out


if __name__ == "__main__":
    secs = 60.0
    if "--idle-seconds" in sys.argv:
        secs = float(sys.argv[sys.argv.index("--idle-seconds") + 1])
    only = set(sys.argv[sys.argv.index("--only") + 1].split(",")) if "--only" in sys.argv else None
    print(json.dumps(bench_dashboard(secs, only), indent=2))
