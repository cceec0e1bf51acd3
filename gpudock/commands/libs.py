"""``gpudock libs [--json]``: the NVIDIA driver libraries in the host's ld.so.cache.

For each entry: soname, the path the cache lists, the file it resolves to (inside --root), that
file's driver version, the architecture flags, and whether it is the entry the loader picks.
Exit status 2 when the cache cannot be read.
"""

from __future__ import annotations

import json
import sys

from gpudock.exitcode import ExitCode

CACHE = "/etc/ld.so.cache"


def register(subparsers) -> None:
    p = subparsers.add_parser("libs", help="the NVIDIA driver libraries in ld.so.cache and the loader's pick")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--cache", metavar="PATH", default=CACHE, help="host path of the cache (default %(default)s)")
    p.set_defaults(func=run)


def run(args, host) -> int:
    from gpudock.host import driverlibs, ldcache

    root = host.root
    try:
        cache = ldcache.read(root, args.cache)
    except ldcache.LdCacheError as e:
        if args.json:
            json.dump({"root": root.root, "cache": args.cache, "error": str(e), "libraries": []}, sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            print(f"gpudock: cannot read the loader's cache: {e}", file=sys.stderr)
        return ExitCode.FAILED
    libs = driverlibs.driver_libraries(cache, root)
    versions = sorted(driverlibs.driver_versions(libs))
    by_dir = driverlibs.driver_versions_by_dir(libs)
    if args.json:
        json.dump(
            {
                "root": root.root,
                "cache": args.cache,
                "format": cache.format,
                "versions": versions,
                "versions_by_directory": {d: sorted(v) for d, v in by_dir.items()},
                "libraries": [lib.to_json() for lib in libs],
            },
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
        return ExitCode.OK
    print(
        f"{args.cache} ({cache.format} format): {len(libs)} NVIDIA library entries; driver version(s): "
        f"{', '.join(versions) or 'none'}"
    )
    if not libs:
        return ExitCode.OK
    w_so = max(len(x.soname) for x in libs)
    w_path = max(len(x.path) for x in libs)
    print(f"  {'SONAME':<{w_so}}  {'ARCH':<14}  {'PATH':<{w_path}}  {'VERSION':<11}  RESOLVES TO")
    for x in libs:
        mark = "*" if x.loader_pick else " "
        target = x.resolved or "?"
        if x.dangling:
            target += "  (DANGLING)" if not x.error else f"  ({x.error})"
        print(f"{mark} {x.soname:<{w_so}}  {x.flag_text:<14}  {x.path:<{w_path}}  {x.version or '-':<11}  {target}")
    print("* = the entry the loader picks for that soname and architecture")
    if len(by_dir) > 1 or len(versions) > 1:
        for d, vs in by_dir.items():
            print(f"  {d}: {', '.join(sorted(vs))}")
    return ExitCode.OK
