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

from gpudock.exitcode import ExitCode
from gpudock.session import SessionError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sim-exec",
        help="run a Python NVML program (nvitop, gpustat, -m module, a script) on a simulated host",
        description="Run PROGRAM in this process with the simulated libnvidia-ml.so.1 of --demo or --sim "
        "NAME|FILE bound under pynvml. Put -- before PROGRAM.",
    )
    p.add_argument("program", nargs=argparse.REMAINDER, metavar="-- PROGRAM [ARGS]")
    p.set_defaults(func=run)


def run(args, host) -> int:
    program = list(args.program)
    if program and program[0] == "--":
        program = program[1:]
    if not host.simulated:
        raise SessionError(
            "sim-exec runs a program on a simulated host: say which simulated host: --demo, or --sim NAME|FILE"
        )
    status = host.run_nvml_program(program)
    return status if status is not None else ExitCode.OK
