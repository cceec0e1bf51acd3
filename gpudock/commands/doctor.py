"""``gpudock doctor [--json]``: every finding of the doctor, for scripts and for the operator.

Exit status: 1 when any finding is an error, else 0 (2 for usage errors, from the CLI). The host
(its root, its NVML session, its Docker engine) is the session's (:mod:`gpudock.session`): with
``--root DIR`` the libnvidia-ml.so.1 that DIR's own ld.so.cache resolves is loaded and the engine
is the socket under DIR, so a copy of a host is examined with its own library and engine;
``--docker-host URL`` names another engine; ``--no-docker`` skips it.
"""

from __future__ import annotations

import json
import sys
import textwrap

from gpudock.exitcode import ExitCode
from gpudock.session import SessionError

_MARK = {"ok": "OK", "info": "INFO", "warning": "WARN", "error": "ERROR"}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "doctor",
        help="diagnose the driver, libraries, devices and Docker wiring",
        description="Find driver/library mismatches and the other known GPU-container "
        "failures, with evidence and fixes. Exits 1 when any finding is an error.",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--no-docker", action="store_true", help="do not ask the Docker engine")
    p.add_argument(
        "--only",
        metavar="ID[,ID]",
        action="append",
        default=None,
        help="show only these finding ids (repeatable, or comma-separated); the exit status follows what is shown",
    )
    p.set_defaults(func=run)


def render_text(findings) -> str:
    out = []
    for f in findings:
        out.append(f"[{_MARK[f.severity]:>5}] {f.id}: {f.title}")
        for line in textwrap.wrap(f.summary, 96):
            out.append(f"        {line}")
        if f.severity != "ok":
            for e in f.evidence:
                out.append(f"        - {e}")
            if f.fix:
                wrapped = textwrap.wrap(f.fix, 90)
                out.append(f"        fix: {wrapped[0]}")
                out.extend(f"             {w}" for w in wrapped[1:])
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def selected_ids(only: list[str] | None) -> set[str] | None:
    """``--only`` values (repeated, or comma lists) as a set of finding ids; unknown ids are
    refused with the valid ones, so a typo cannot turn a health check green."""
    from gpudock.doctor import CHECK_IDS

    if not only:
        return None
    ids = {i.strip() for v in only for i in v.split(",") if i.strip()}
    unknown = sorted(ids - set(CHECK_IDS))
    if unknown or not ids:
        raise SessionError(
            f"--only {', '.join(unknown) or '(empty)'}: no such finding; the ids are: {', '.join(CHECK_IDS)}"
        )
    return ids


def run(args, host) -> int:
    from gpudock.doctor import report_json

    wanted = selected_ids(args.only)
    facts, findings = host.diagnose()
    if wanted is not None:
        findings = tuple(f for f in findings if f.id in wanted)
    if args.json:
        json.dump(report_json(facts, findings), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_text(findings))
    return ExitCode.FINDINGS if any(f.is_error for f in findings) else ExitCode.OK
