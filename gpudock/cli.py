"""The command line: the dashboard by default, and a subcommand beside every screen for scripts.

Every subcommand sits on the same core as the TUI (``gpudock.host``, ``launch``, ``toolkit``,
``doctor``) and takes ``--json``. Global options (``--demo``, ``--sim FILE``, ``--root DIR``,
``--nvml-lib FILE``) may come before or after the subcommand.

The CLI never simulates silently: ``gpudock gpus`` on a host without a driver says so and exits 2.
Only the dashboard falls back to the built-in simulated host, with a banner that says why.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from gpudock.model import HostSnapshot

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


def _add_host_options(p: argparse.ArgumentParser, suppress: bool) -> None:
    d = (lambda v: argparse.SUPPRESS) if suppress else (lambda v: v)
    g = p.add_argument_group("host")
    g.add_argument("--demo", action="store_true", default=d(False), help="use the built-in simulated 8-GPU host")
    g.add_argument(
        "--sim", metavar="FILE", default=d(None), help="use a simulated host described by a scenario file (TOML)"
    )
    g.add_argument(
        "--root",
        metavar="DIR",
        default=d("/"),
        help="read the host's files under DIR (e.g. /host from a container); default /",
    )
    g.add_argument(
        "--nvml-lib",
        metavar="FILE",
        default=d(None),
        help="load this libnvidia-ml.so.1 instead of the loader's (e.g. under a driver root)",
    )


def open_nvml(args):
    """The NVML session the options ask for: simulated (--demo/--sim) or real."""
    from gpudock.host.nvml import NvmlSession, system_loader
    from gpudock.sim.libnvml import sim_library_loader
    from gpudock.sim.scenario import builtin_scenario, load_scenario

    if getattr(args, "sim", None):
        sc = load_scenario(args.sim)
        return NvmlSession(sim_library_loader(sc), source=f"sim:{sc.name}")
    if getattr(args, "demo", False):
        sc = builtin_scenario("demo")
        return NvmlSession(sim_library_loader(sc), source="sim:demo")
    lib = getattr(args, "nvml_lib", None)
    return NvmlSession(system_loader(lib) if lib else None, source="nvml")


def load_snapshot(args) -> HostSnapshot:
    """One snapshot for a CLI command, from the session the options ask for."""
    session = open_nvml(args)
    try:
        return session.snapshot()
    finally:
        session.shutdown()


def _fmt(v, unit: str = "", nd: int | None = None) -> str:
    if v is None:
        return "N/A"
    if nd is not None and isinstance(v, float):
        return f"{v:.{nd}f}{unit}"
    return f"{v}{unit}"


def cmd_gpus(args) -> int:
    snap = load_snapshot(args)
    if args.json:
        print(json.dumps(snap.to_json(detail=args.detail), indent=2))
    else:
        print(render_gpus_text(snap))
    return EXIT_USAGE if snap.nvml_failure else EXIT_OK


def render_gpus_text(snap: HostSnapshot) -> str:
    if snap.nvml_failure:
        f = snap.nvml_failure
        return f"NVML could not start: {f.nvml_text}\n{f.message}"
    lines = [
        f"Driver {_fmt(snap.driver_version)}   CUDA {_fmt(snap.cuda_driver_version)}   "
        f"NVML {_fmt(snap.nvml_version)}   ({snap.source})",
        f"{'IDX':>3}  {'BUS ID':<16}  {'DEVICE':<12}  {'NAME':<24}  {'GPU%':>4}  {'MEM%':>4}  "
        f"{'MEMORY MiB':>13}  {'TEMP':>4}  {'POWER W':>9}",
    ]
    for g in snap.gpus:
        if g.error:
            lines.append(f"{g.index:>3}  {_fmt(g.pci_bus_id):<16}  {_fmt(g.device):<12}  ERROR: {g.error}")
            continue
        mem = f"{_fmt(g.memory_used_mib)}/{_fmt(g.memory_total_mib)}"
        pw = f"{_fmt(g.power_w, nd=0)}/{_fmt(g.power_limit_w, nd=0)}"
        lines.append(
            f"{g.index:>3}  {_fmt(g.pci_bus_id):<16}  {_fmt(g.device):<12}  {_fmt(g.name)[:24]:<24}  "
            f"{_fmt(g.utilization_gpu):>4}  {_fmt(g.utilization_memory):>4}  {mem:>13}  "
            f"{_fmt(g.temperature_c, 'C'):>4}  {pw:>9}"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpudock",
        description="GPU servers with Docker: inventory, holders, launcher, toolkit config and doctor. "
        "With no command, opens the dashboard.",
    )
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

    p = sub.add_parser("gpus", help="the GPU inventory (what the main screen shows)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--brief",
        dest="detail",
        action="store_false",
        help="with --json: only the table's fields, no details/processes/MIG",
    )
    p.set_defaults(func=cmd_gpus)

    for module in _command_modules():
        module.register(sub)
    for sp in sub.choices.values():
        _add_host_options(sp, suppress=True)
    return parser


def _command_modules():
    from gpudock.commands import doctor, exporter, fleet, holders, launch, libs, toolkit

    return (holders, doctor, libs, toolkit, launch, exporter, fleet)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command is None:
            from gpudock.ui.app import run_dashboard

            return run_dashboard(args)
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `gpudock gpus | head`: the reader went away; that's fine.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as e:  # noqa: BLE001 - last line of defence: one clear line, not a traceback
        from gpudock.sim.scenario import ScenarioError

        if isinstance(e, ScenarioError):
            print(f"gpudock: {e}", file=sys.stderr)
            return EXIT_USAGE
        if os.environ.get("GPUDOCK_DEBUG"):
            raise
        print(f"gpudock: {type(e).__name__}: {e} (set GPUDOCK_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
