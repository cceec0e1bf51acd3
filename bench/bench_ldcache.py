"""Benchmark: our ld.so.cache reader against ``ldconfig -C FILE -p`` on the same files.

Two caches: this host's /etc/ld.so.cache and a synthetic one with ~2000 entries written by the
real ldconfig. For each, in the same run and as medians of several runs:

* ``ours_parse_ms``  -- ``ldcache.read()``: open + read + parse + full validation (every offset,
  every string terminated); entry objects are built lazily, so this is what a probe that asks
  ``lookup()`` for a handful of sonames pays before its first lookup;
* ``ours_lookup_ms`` -- the same plus one ``lookup("libc.so.6")`` (which builds the soname index,
  i.e. decodes every entry);
* ``ours_full_ms``   -- read + parse + every entry materialised as a Python object (the
  like-for-like comparison with ``ldconfig -p``, which decodes and prints every entry);
* ``ldconfig_ms``    -- ``ldconfig -C FILE -p`` with output captured (what a tool shelling out pays).

``speedup_*`` = ldconfig_ms / ours_*_ms. The target is 10x.

Usage: ``python bench/bench_ldcache.py`` (prints the dict as JSON); ``bench_ldcache()`` returns it.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpudock.host import ldcache  # noqa: E402
from gpudock.host.root import HostRoot  # noqa: E402

TARGET_SPEEDUP = 10.0


def _build_big_cache(tmp: Path, n: int = 2000) -> Path:
    """A root whose cache lists ``n`` libraries: one real library without a soname, hard-linked
    ``n`` times (ldconfig then uses each file name as the soname), cache by ``ldconfig -r``."""
    src = tmp / "empty.c"
    src.write_text("int bench_symbol = 1;\n")
    lib = tmp / "nosoname.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True, capture_output=True)
    root = tmp / "root"
    d = root / "usr/lib/bench"
    d.mkdir(parents=True)
    for i in range(n):
        os.link(lib, d / f"libbench{i:05d}.so.1")
    (root / "etc").mkdir()
    (root / "etc/ld.so.conf").write_text("/usr/lib/bench\n")
    (root / "var/cache/ldconfig").mkdir(parents=True)
    subprocess.run(["ldconfig", "-r", str(root), "-X"], check=True, capture_output=True)
    return root


def _timed_ms(fn, inner: int) -> float:
    t = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t) / inner * 1e3


def _bench_one(root: HostRoot, path: str, runs: int) -> dict:
    real = root.real(path)
    c = ldcache.read(root, path)

    def parse_only():
        ldcache.read(root, path)

    def with_lookup():
        ldcache.read(root, path).lookup("libc.so.6")

    def full():
        _ = ldcache.read(root, path).entries

    def run_ldconfig():
        subprocess.run(["ldconfig", "-C", real, "-p"], capture_output=True, check=True)

    # (name, function, calls per sample). Each run takes one sample of every contender back to
    # back, so a busy machine slows them alike and the ratios stay meaningful.
    contenders = [
        ("parse", parse_only, 20),
        ("lookup", with_lookup, 3),
        ("full", full, 3),
        ("ldconfig", run_ldconfig, 3),
    ]
    for _, fn, _ in contenders:
        fn()  # warm up: imports, page cache
    samples: dict[str, list[float]] = {name: [] for name, _, _ in contenders}
    for _ in range(runs):
        for name, fn, inner in contenders:
            samples[name].append(_timed_ms(fn, inner))
    med = {name: statistics.median(v) for name, v in samples.items()}
    ours_parse, ours_lookup, ours_full, ldc = med["parse"], med["lookup"], med["full"], med["ldconfig"]
    return {
        "file": real,
        "entries": len(c),
        "bytes": c.size,
        "format": c.format,
        "ours_parse_ms": round(ours_parse, 4),
        "ours_lookup_ms": round(ours_lookup, 4),
        "ours_full_ms": round(ours_full, 4),
        "ldconfig_ms": round(ldc, 4),
        "speedup_parse": round(ldc / ours_parse, 1),
        "speedup_lookup": round(ldc / ours_lookup, 1),
        "speedup_full": round(ldc / ours_full, 1),
    }


def bench_ldcache(runs: int = 15, big_entries: int = 2000) -> dict:
    """Run the benchmark; returns a JSON-able dict (see the module docstring)."""
    results: dict = {"target_speedup": TARGET_SPEEDUP, "runs": runs, "python": sys.version.split()[0]}
    results["host"] = _bench_one(HostRoot("/"), "/etc/ld.so.cache", runs)
    tmp = Path(tempfile.mkdtemp(prefix="gpudock-bench-ldcache-"))
    try:
        root = _build_big_cache(tmp, big_entries)
        results["big"] = _bench_one(HostRoot(root), "/etc/ld.so.cache", runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["meets_target_parse"] = all(results[k]["speedup_parse"] >= TARGET_SPEEDUP for k in ("host", "big"))
    results["meets_target_full"] = all(results[k]["speedup_full"] >= TARGET_SPEEDUP for k in ("host", "big"))
    return results


if __name__ == "__main__":
    print(json.dumps(bench_ldcache(), indent=2))
