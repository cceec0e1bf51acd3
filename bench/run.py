"""Run every benchmark and record the figures in bench/results.json (run by hand, not by CI).

    python bench/run.py [--quick] [--only dashboard,nvitop,ldcache,holders,fleet,serve]

Needs the bench extra (nvitop, the reference for terminal output): pip install -e '.[bench]'.
--quick idles the dashboard for 15 s instead of 60 s. The holders benchmark starts its own private
Docker engine (as the tests do) and needs root and Debian's docker.io; the fleet benchmark needs
Debian's prometheus (prometheus and promtool); each benchmark's figures
are ratios against a reference measured in the same run (see each bench_*.py's docstring).
Results of earlier runs are kept under "history" in bench/results.json.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))

RESULTS = HERE / "results.json"


def _holders() -> dict:
    from bench_holders import bench_holders

    from helpers.engine import Engine

    work = tempfile.mkdtemp(prefix="gpb-", dir="/tmp")
    eng = Engine.start(work)
    try:
        return bench_holders(eng.base_url, dev_dir=str(eng.dev_dir))
    finally:
        eng.close()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    only = None
    if "--only" in argv:
        only = set(argv[argv.index("--only") + 1].split(","))
    from bench_dashboard import bench_dashboard
    from bench_fleet import bench_fleet
    from bench_ldcache import bench_ldcache
    from bench_nvitop import bench_nvitop
    from bench_serve import bench_serve

    benches = {
        "dashboard": lambda: bench_dashboard(15.0 if quick else 60.0),
        "nvitop": bench_nvitop,
        "ldcache": bench_ldcache,
        "holders": _holders,
        "fleet": bench_fleet,
        "serve": bench_serve,
    }
    run = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}",
        "load_average_at_start": os.getloadavg(),
        "commit": subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
    }
    for name, fn in benches.items():
        if only and name not in only:
            continue
        print(f"== {name}", file=sys.stderr)
        run[name] = fn()
        print(json.dumps(run[name], indent=2))
    history = []
    if RESULTS.exists():
        prev = json.loads(RESULTS.read_text())
        history = prev.get("history", [])
        if "latest" in prev:
            history.insert(0, prev["latest"])
    RESULTS.write_text(json.dumps({"latest": run, "history": history[:20]}, indent=2) + "\n")
    print(f"recorded in {RESULTS.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
