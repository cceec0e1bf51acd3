"""``gpudock sim-exec [--demo | --sim NAME|FILE] -- PROGRAM [ARGS]``: run an NVML program on a
simulated host.

PROGRAM is a Python program that uses nvidia-ml-py: a console script (``nvitop``, ``gpustat``), a
``.py`` file, or ``-m MODULE``. It runs in this process with the scenario's simulated
``libnvidia-ml.so.1`` bound under pynvml (:mod:`gpudock.sim.exec`), so an operator can try a
monitoring script, or nvitop, on a host shaped like theirs without a GPU. The exit status is the
program's; 2 when it cannot be run (the message says why).
"""

from __future__ import annotations

import argparse
import os
import sys

EXIT_USAGE = 2


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sim-exec",
        help="run a Python NVML program (nvitop, gpustat, -m module, a script) on a simulated host",
        description="Run PROGRAM in this process with the simulated libnvidia-ml.so.1 of --demo or --sim "
        "NAME|FILE bound under pynvml. Put -- before PROGRAM.",
    )
    p.add_argument("program", nargs=argparse.REMAINDER, metavar="-- PROGRAM [ARGS]")
    p.set_defaults(func=run)


def choose_scenario(args):
    """The scenario of ``--demo`` or ``--sim NAME|FILE`` (a file path, else a built-in name)."""
    from importlib import resources

    from gpudock.sim.scenario import ScenarioError, builtin_scenario, load_scenario

    sim = getattr(args, "sim", None)
    if sim:
        if os.path.exists(sim) or sim.endswith(".toml"):
            return load_scenario(sim)
        names = sorted(
            p.name[:-5] for p in (resources.files("gpudock.sim") / "scenarios").iterdir() if p.name.endswith(".toml")
        )
        if sim in names:
            return builtin_scenario(sim)
        raise ScenarioError(f"--sim {sim}: no such file, and not a built-in scenario ({', '.join(names)})")
    if getattr(args, "demo", False):
        return builtin_scenario("demo")
    return None


def run(args) -> int:
    from gpudock.sim import exec as sim_exec

    program = list(args.program)
    if program and program[0] == "--":
        program = program[1:]
    scenario = choose_scenario(args)
    if scenario is None:
        print("gpudock sim-exec: say which simulated host: --demo, or --sim NAME|FILE", file=sys.stderr)
        return EXIT_USAGE
    try:
        sim_exec.resolve(program)
    except sim_exec.ProgramError as e:
        print(f"gpudock sim-exec: {e}", file=sys.stderr)
        return EXIT_USAGE
    return sim_exec.run(scenario, program)
