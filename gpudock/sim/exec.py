"""Run someone else's NVML program on a simulated host: the library bound under pynvml, in-process.

``pynvml`` (nvidia-ml-py) loads ``libnvidia-ml.so.1`` only while its module global ``nvmlLib`` is
None, and resolves every function by name on that object. Binding a :class:`SimNvmlLibrary` there
before the program starts is the whole trick: nvitop, gpustat or an operator's own script then run
unchanged, through the real bindings, on the scenario's GPUs. Nothing else is patched.

A program is named as Python itself would run it:

* ``-m MODULE [ARGS]``: ``runpy.run_module`` (``python -m MODULE``);
* a ``.py`` file: ``runpy.run_path``;
* a console script (``nvitop``, ``gpustat``): its entry point in the installed distributions'
  metadata, else a Python script of that name on ``PATH``.

The program runs in this interpreter and process, so it sees the simulated GPUs but the real
``/proc``: the scenario's process IDs do not exist here (nvitop says "No Such Process", gpustat
leaves them out).
"""

from __future__ import annotations

import os
import runpy
import shutil
import sys
from collections.abc import Callable
from importlib import metadata

import pynvml

from gpudock.sim.libnvml import SimNvmlLibrary
from gpudock.sim.scenario import Scenario


class ProgramError(ValueError):
    """The program cannot be run in-process; the message says why and what to do."""


def bind(scenario: Scenario) -> SimNvmlLibrary:
    """Make the scenario's simulated library the one pynvml uses, as if it had loaded it."""
    lib = SimNvmlLibrary(scenario)
    pynvml.nvmlLib = lib
    pynvml._nvmlGetFunctionPointer_cache.clear()
    return lib


def unbind() -> None:
    pynvml.nvmlLib = None
    pynvml._nvmlGetFunctionPointer_cache.clear()


def resolve(argv: list[str]) -> tuple[str, Callable[[], object]]:
    """``(argv[0] for the program, a function that runs it)`` for ``PROGRAM [ARGS]``."""
    if not argv:
        raise ProgramError("name a program to run: a console script (nvitop, gpustat), a .py file, or -m MODULE")
    prog = argv[0]
    if prog == "-m":
        if len(argv) < 2:
            raise ProgramError("-m needs a module name, as with python -m")
        module = argv[1]
        return module, lambda: runpy.run_module(module, run_name="__main__", alter_sys=True)
    if prog.endswith(".py") or os.sep in prog:
        if not os.path.isfile(prog):
            raise ProgramError(f"{prog}: no such file")
        if not _is_python(prog):
            raise ProgramError(f"{prog}: not a Python program; sim-exec runs Python programs in this process")
        return prog, lambda: runpy.run_path(prog, run_name="__main__")
    entry = _console_script(prog)
    if entry is not None:
        return prog, lambda: entry.load()()
    path = shutil.which(prog)
    if path is None:
        raise ProgramError(
            f"{prog}: not a console script of an installed Python package, nor a program on PATH "
            f"(install it into this Python: {sys.executable} -m pip install {prog})"
        )
    if not _is_python(path):
        raise ProgramError(
            f"{prog} ({path}) is not a Python program: sim-exec binds the simulated library under pynvml "
            "in this Python process, so it runs only programs that use nvidia-ml-py"
        )
    return path, lambda: runpy.run_path(path, run_name="__main__")


def run(scenario: Scenario, argv: list[str]) -> int:
    """Run ``PROGRAM [ARGS]`` on ``scenario``; its exit status (SystemExit's code, else 0)."""
    name, start = resolve(argv)
    args = argv[2:] if argv[0] == "-m" else argv[1:]
    saved = sys.argv
    sys.argv = [name, *args]
    bind(scenario)
    try:
        start()
        return 0
    except SystemExit as e:
        if e.code is None:
            return 0
        if isinstance(e.code, int):
            return e.code
        print(e.code, file=sys.stderr)
        return 1
    finally:
        sys.argv = saved
        sys.stdout.flush()


def _console_script(name: str):
    for ep in metadata.entry_points(group="console_scripts"):
        if ep.name == name:
            return ep
    return None


def _is_python(path: str) -> bool:
    if path.endswith(".py"):
        return True
    try:
        with open(path, "rb") as f:
            first = f.readline(200)
    except OSError:
        return False
    return first.startswith(b"#!") and b"python" in first
