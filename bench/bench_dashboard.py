"""Benchmark of the dashboard's hot paths on the built-in 8-GPU demo host.

Each figure comes with a reference measured in the same run, so the ratio means something on a
busy 2-core machine as on a fast workstation:

* refresh: CPU time of one ``NvmlSession.snapshot()`` of the 8-GPU demo host (every NVML read
  through the real pynvml bindings into the simulated library), against the bare pynvml calls for
  the same fields with no model built (the reference: what the bindings alone cost).
  Target: under 5 ms of CPU.
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
* terminal output: bytes per second the running dashboard writes to an 80x24 pty (Textual's real
  driver) after start-up, against the 1 Hz ticker app on a pty (reference): what crosses a slow
  SSH link each second. No target; recorded so a change that repaints too much shows.

Usage: ``python bench/bench_dashboard.py [--idle-seconds N]``; ``bench_dashboard()`` returns a dict.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # helpers.tty

import pynvml  # noqa: E402

from gpudock.host.nvml import NvmlSession  # noqa: E402
from gpudock.sim.libnvml import sim_library_loader  # noqa: E402
from gpudock.sim.scenario import builtin_scenario  # noqa: E402

TARGETS = {"refresh_cpu_ms": 5.0, "first_frame_s": 1.0, "idle_cpu_percent": 2.0}


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
        pynvml.nvmlDeviceGetComputeRunningProcesses(h)
        pynvml.nvmlDeviceGetGraphicsRunningProcesses(h)


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


def _tty_bytes(which: str, seconds: float) -> float:
    """Bytes per second the app writes to an 80x24 terminal (a real pty, Textual's real driver)
    once started: what crosses the operator's SSH link while the dashboard just runs."""
    import os
    import signal

    from helpers import tty

    env = dict(os.environ, TERM="xterm-256color")
    env.pop("DOCKER_HOST", None)
    pid, fd = tty.spawn([sys.executable, "-c", _IDLE, str(seconds + 60), which, "tty"], env)
    try:
        tty.read(fd, 4.0)  # start-up and the first full paint are not counted
        t0 = time.monotonic()
        n = len(tty.read(fd, seconds))
        elapsed = time.monotonic() - t0
    finally:
        os.kill(pid, signal.SIGTERM)
        tty.read(fd, 2.0)
        os.close(fd)
        os.waitpid(pid, 0)
    return n / elapsed


def bench_output(seconds: float = 30.0) -> dict:
    ours = _tty_bytes("gpudock", seconds)
    ticker = _tty_bytes("ticker", seconds)
    return {
        "tty_seconds": seconds,
        "tty_bytes_per_s": round(ours),
        "tty_reference_1hz_ticker_bytes_per_s": round(ticker),
        "tty_ratio_vs_1hz_ticker": round(ours / ticker, 2) if ticker > 0 else None,
    }


def bench_dashboard(idle_seconds: float = 60.0) -> dict:
    out = {}
    out.update(bench_refresh())
    out.update(bench_first_frame())
    out.update(bench_output(min(30.0, idle_seconds)))
    out.update(bench_idle(idle_seconds))
    out["targets"] = TARGETS
    out["meets_targets"] = {k: out[k] < v for k, v in TARGETS.items()}
    return out


if __name__ == "__main__":
    secs = 60.0
    if "--idle-seconds" in sys.argv:
        secs = float(sys.argv[sys.argv.index("--idle-seconds") + 1])
    print(json.dumps(bench_dashboard(secs), indent=2))
