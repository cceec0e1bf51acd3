"""``gpudock scenarios [--json]``: the built-in simulated hosts, for ``--sim NAME``."""

from __future__ import annotations

import json

from gpudock.exitcode import ExitCode


def register(sub) -> None:
    p = sub.add_parser("scenarios", help="list the built-in simulated hosts (gpudock --sim NAME)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run, needs_host=False)


def run(args) -> int:
    from gpudock.session import builtin_scenarios

    items = builtin_scenarios()
    if args.json:
        print(json.dumps([{"name": n, "description": d} for n, d in items], indent=2))
        return ExitCode.OK
    w = max(len(n) for n, _ in items)
    for name, description in items:
        print(f"{name:<{w}}  {description}")
    print("\nOpen one with: gpudock --sim NAME (the dashboard), or gpudock doctor --sim NAME (and every other command)")
    return ExitCode.OK
