"""The command line: the dashboard by default, and a command beside every screen for scripts.

This module owns parsing: the host options (``--demo``, ``--sim NAME|FILE``, ``--root DIR``,
``--nvml-lib FILE``), which may come before or after any command, are turned once into
:class:`gpudock.session.Options`; the host they name is opened once
(:func:`gpudock.session.open_session`) and handed to the command (``gpudock.commands``) or the
dashboard (``gpudock.ui``). Nothing imports this module.

The CLI never simulates silently: ``gpudock gpus`` on a host without a driver says so and exits 2.
Only the dashboard falls back to the built-in simulated host, with a banner that says why.

``--readonly`` (or ``GPUDOCK_READONLY=1``) refuses, before the host is opened, every command that
changes the host (:data:`CHANGES_HOST`: launching, the toolkit's edits, container and process
actions, the nvidia-docker plugin and wrapper); the session refuses the same changes again itself.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from gpudock.exitcode import ExitCode
from gpudock.session import Options, SessionError, open_session, readonly_message


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gpudock")
    except PackageNotFoundError:
        return "unknown"


def _add_host_options(p: argparse.ArgumentParser, suppress: bool) -> None:
    # On commands the defaults are SUPPRESSed: an option left out there keeps what was given
    # before the command ("gpudock --demo doctor" and "gpudock doctor --demo" are the same).
    d = (lambda v: argparse.SUPPRESS) if suppress else (lambda v: v)
    g = p.add_argument_group("host")
    g.add_argument("--demo", action="store_true", default=d(False), help="use the built-in simulated 8-GPU host")
    g.add_argument(
        "--sim",
        metavar="NAME|FILE",
        default=d(None),
        help="use a simulated host: a built-in scenario (gpudock scenarios lists them) or a scenario file (TOML)",
    )
    g.add_argument(
        "--root", metavar="DIR", default=d("/"), help="read the host's files under DIR (e.g. /host from a container)"
    )
    g.add_argument(
        "--nvml-lib",
        metavar="FILE",
        default=d(None),
        help="load this libnvidia-ml.so.1 instead of the loader's (e.g. under a driver root)",
    )
    g.add_argument(
        "--docker-host",
        metavar="URL",
        default=d(None),
        help="the Docker engine (default: $DOCKER_HOST or /var/run/docker.sock; under --root, the socket there)",
    )
    g.add_argument(
        "--readonly",
        action="store_true",
        default=d(False),
        help="change nothing on the host: no launch, toolkit edits, container or process actions (also "
        "GPUDOCK_READONLY=1)",
    )
    g.add_argument("--debug", action="store_true", default=d(False), help="log what gpudock does, to stderr")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpudock",
        description="GPU servers with Docker: inventory, holders, launcher, toolkit config and doctor. "
        "With no command, opens the dashboard.",
    )
    parser.add_argument("--version", action="version", version=f"gpudock {_version()}")
    _add_host_options(parser, suppress=False)
    parser.add_argument(
        "--refresh", type=float, default=1.0, metavar="SECONDS", help="dashboard refresh period (default 1.0)"
    )
    parser.add_argument(
        "--no-demo",
        action="store_true",
        help="dashboard: show NVML's error instead of falling back to the simulated host",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _command_modules():
        module.register(sub)
    for sp in _leaves(sub):
        _add_host_options(sp, suppress=True)
        name = sp.prog.removeprefix(f"{parser.prog} ")
        if name in CHANGES_HOST:
            sp.set_defaults(changes_host=name)
    return parser


# The commands that change the host (refused in a read-only session); every other command only
# reads. tests/unit/test_readonly.py holds every command to being in one list or the other.
CHANGES_HOST = frozenset(
    {
        "run",
        "serve",
        "nvidia-docker",
        "toolkit debug",
        "toolkit runtime register",
        "toolkit defaults",
        "container stop",
        "container restart",
        "container rm",
        "kill",
    }
)


def _leaves(sub: argparse._SubParsersAction):
    """Every command's parser, nested ones included (``toolkit status``): each takes the host options."""
    for sp in sub.choices.values():
        yield sp
        for action in sp._actions:
            if isinstance(action, argparse._SubParsersAction):
                yield from _leaves(action)


def _command_modules():
    from gpudock.commands import (
        container,
        doctor,
        exporter,
        fleet,
        gpus,
        holders,
        launch,
        libs,
        scenarios,
        sim_exec,
        toolkit,
        topo,
    )

    return (gpus, holders, doctor, libs, toolkit, launch, container, topo, sim_exec, scenarios, exporter, fleet)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "debug", False):
        logging.basicConfig(level=logging.DEBUG, format="gpudock: %(name)s: %(message)s")
    try:
        options = Options.from_namespace(args)
        if args.command is None:
            from gpudock.ui.app import run_dashboard

            return run_dashboard(options)
        if args.command == "fleet" and not args.json:  # the fleet screen: an app of its own, on no host
            from gpudock.commands.fleet import open_reader
            from gpudock.ui.screens.fleet import run_fleet

            reader = open_reader(args)
            return run_fleet(reader, args.interval) if reader is not None else ExitCode.FAILED
        if options.readonly and getattr(args, "changes_host", None):
            print(f"gpudock: {readonly_message(options, f'gpudock {args.changes_host}')}", file=sys.stderr)
            return ExitCode.FAILED
        if not getattr(args, "needs_host", True):
            return int(args.func(args))
        with open_session(options) as host:
            return int(args.func(args, host))
    except SessionError as e:
        print(f"gpudock: {e}", file=sys.stderr)
        return ExitCode.FAILED
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        # `gpudock gpus | head`: the reader went away; that's fine.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK
    except Exception as e:  # noqa: BLE001 - last line of defence: one clear line, not a traceback
        if os.environ.get("GPUDOCK_DEBUG") or getattr(args, "debug", False):
            raise
        print(f"gpudock: {type(e).__name__}: {e} (run with --debug for the traceback)", file=sys.stderr)
        return ExitCode.FAILED


if __name__ == "__main__":
    sys.exit(main())
