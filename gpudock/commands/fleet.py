"""``gpudock fleet --prometheus URL [--json]``: every GPU host Prometheus knows, from anywhere.

This module owns the command: its options, the credentials (from the environment or files, never
an option's value: :func:`gpudock.fleet.reader.auth_from`), and either one read printed as JSON
(the shape of :meth:`gpudock.fleet.reader.FleetView.to_json`, documented in the README) or the
fleet screen (:mod:`gpudock.ui.screens.fleet`). The host options (--demo, --sim, --root) do not
apply: the fleet is read from Prometheus, not from this machine. The screen's host list reads a
per-host summary; a host's screen and ``--json`` read per GPU.

Exit status with ``--json``: 0 read; 2 Prometheus could not be read (``error`` says why) or the
options are wrong.
"""

from __future__ import annotations

import json
import os
import sys

from gpudock.exitcode import ExitCode
from gpudock.fleet.view import SORT_KEYS


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "fleet",
        help="every GPU host from Prometheus: GPUs, holders, doctor errors",
        description="Hosts x GPUs with utilization, memory, temperature, power, holding containers and doctor "
        "errors, read from Prometheus (gpudock exporter and dcgm-exporter series, joined on the GPU UUID) "
        "in a few queries, whatever the number of hosts. Credentials: GPUDOCK_PROMETHEUS_TOKEN (bearer) or "
        "GPUDOCK_PROMETHEUS_USER and "
        "GPUDOCK_PROMETHEUS_PASSWORD (basic), or the files named below.",
    )
    p.add_argument(
        "--prometheus",
        metavar="URL",
        default=os.environ.get("GPUDOCK_PROMETHEUS_URL"),
        help="Prometheus's address, e.g. http://prometheus:9090 (default: $GPUDOCK_PROMETHEUS_URL)",
    )
    p.add_argument("--json", action="store_true", help="read once and print the fleet as JSON")
    p.add_argument("--sort", choices=SORT_KEYS, default="host", help="with --json: order the hosts (default host)")
    p.add_argument("--filter", metavar="TEXT", default="", help="with --json: only hosts matching TEXT (see README)")
    p.add_argument(
        "--window",
        metavar="DURATION",
        default="10m",
        help="how long a host whose series went stale stays listed, marked stale (default 10m)",
    )
    p.add_argument(
        "--stale-after",
        metavar="SECONDS",
        type=float,
        default=60.0,
        help="a gpudock host whose exporter has not read its GPUs for this long is stale (default 60)",
    )
    p.add_argument("--timeout", metavar="SECONDS", type=float, default=10.0, help="per read (default 10)")
    p.add_argument("--interval", metavar="SECONDS", type=float, default=10.0, help="screen: read every SECONDS")
    p.add_argument("--token-file", metavar="FILE", default=None, help="a file holding the bearer token")
    p.add_argument("--user", metavar="NAME", default=None, help="basic auth user (password from the environment)")
    p.add_argument("--password-file", metavar="FILE", default=None, help="a file holding the basic auth password")
    p.set_defaults(func=run, needs_host=False)


def open_reader(args):
    """The reader the options ask for, or None after saying what is wrong (on stderr)."""
    from gpudock.fleet.reader import AuthError, FleetReader, auth_from

    if not args.prometheus:
        print(
            "gpudock fleet: which Prometheus? give --prometheus http://HOST:9090 (or set GPUDOCK_PROMETHEUS_URL)",
            file=sys.stderr,
        )
        return None
    try:
        auth = auth_from(token_file=args.token_file, user=args.user, password_file=args.password_file)
        return FleetReader(
            args.prometheus, auth=auth, timeout=args.timeout, window=args.window, stale_after=args.stale_after
        )
    except (AuthError, ValueError) as e:
        print(f"gpudock fleet: {e}", file=sys.stderr)
        return None


def run(args) -> int:
    """``--json``: one read, printed. (Without it the CLI opens the fleet screen on
    :func:`open_reader`'s reader: the screen is the UI's, above the commands.)"""
    from gpudock.fleet.view import filter_hosts, sort_hosts

    reader = open_reader(args)
    if reader is None:
        return ExitCode.FAILED
    view = reader.read()
    out = view.to_json()
    hosts = filter_hosts(view.hosts, args.filter) if args.filter else list(view.hosts)
    out["hosts"] = [h.to_json() for h in sort_hosts(hosts, args.sort)]
    print(json.dumps(out, indent=2))
    if not view.ok:
        print(f"gpudock fleet: {view.error}", file=sys.stderr)
        return ExitCode.FAILED
    return ExitCode.OK
