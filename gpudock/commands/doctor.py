"""``gpudock doctor [--json]``: every finding of the doctor, for scripts and for the operator.

Exit status: 1 when any finding is an error, else 0 (2 for usage errors, from the CLI). The NVML
session follows the global options (--demo, --sim, --nvml-lib); with ``--root DIR`` and none of
them, the libnvidia-ml.so.1 that DIR's own ld.so.cache resolves is loaded, so a copy of a host is
examined with its own library. The Docker engine is the one whose socket is under the root
(``/var/run/docker.sock``; a container with the host at /host sees the host's engine), or
``DOCKER_HOST`` on the live root, or ``--docker-host URL``; ``--no-docker`` skips it.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import textwrap

EXIT_OK, EXIT_ERRORS = 0, 1
_MARK = {"ok": "OK", "info": "INFO", "warning": "WARN", "error": "ERROR"}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "doctor",
        help="diagnose the driver, libraries, devices and Docker wiring",
        description="Find driver/library mismatches and the other known GPU-container "
        "failures, with evidence and fixes. Exits 1 when any finding is an error.",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--docker-host",
        metavar="URL",
        default=None,
        help="the Docker engine to ask (default: the socket under --root, or DOCKER_HOST)",
    )
    p.add_argument("--no-docker", action="store_true", help="do not ask the Docker engine")
    p.add_argument(
        "--only",
        metavar="ID",
        action="append",
        default=None,
        help="show only this finding id (repeatable); the exit status follows what is shown",
    )
    p.set_defaults(func=run)


def nvml_for(args, root):
    """(NvmlSession, library description) for this run; see the module docstring."""
    from gpudock.cli import open_nvml

    if getattr(args, "sim", None) or getattr(args, "demo", False) or getattr(args, "nvml_lib", None):
        return open_nvml(args), getattr(args, "nvml_lib", None)
    if root.is_live:
        return open_nvml(args), None
    from gpudock.doctor import libview
    from gpudock.host.nvml import NvmlSession

    pick = None
    try:
        pick = libview.pick(type("F", (), {"libs": libview.scan(root), "errors": {}})(), "libnvidia-ml.so.1")
    except Exception:  # noqa: BLE001 - an unreadable cache means "no library", reported by the checks
        pick = None
    if pick is None or pick.dangling or not pick.resolved:

        def _missing():
            raise OSError(f"no libnvidia-ml.so.1 in {root.root}/etc/ld.so.cache")

        return NvmlSession(_missing, source="nvml"), None
    from gpudock.host.nvml import system_loader

    # Loading a library runs its constructors: only the root's own libnvidia-ml, as the loader picks it.
    return NvmlSession(system_loader(root.real(pick.resolved)), source="nvml"), pick.resolved


def docker_for(args, root):
    if getattr(args, "no_docker", False):
        return None, False
    try:
        import docker
    except ImportError:
        return None, True
    url = getattr(args, "docker_host", None)
    if url is None:
        sock = root.real("/var/run/docker.sock")
        try:
            is_sock = stat.S_ISSOCK(os.stat(sock).st_mode)
        except OSError:
            is_sock = False
        if is_sock:
            url = f"unix://{sock}"
        elif root.is_live and os.environ.get("DOCKER_HOST"):
            url = os.environ["DOCKER_HOST"]
        elif not root.is_live:
            return None, True  # a copy of a host: no engine to ask
    try:
        client = docker.DockerClient(base_url=url, timeout=10) if url else docker.from_env(timeout=10)
        client.api.ping()
        return client, True
    except Exception:  # noqa: BLE001 - unreachable engine: the findings say so
        return None, True


def diagnose_args(args):
    """(facts, findings) for the CLI options; shared with the diagnostics screen."""
    from gpudock.doctor import diagnose
    from gpudock.host.root import HostRoot
    from gpudock.sim.host import sim_host_for

    root = HostRoot(getattr(args, "root", "/") or "/")
    session, lib = nvml_for(args, root)
    # --demo/--sim with [[container]]s and no engine named: the simulated engine, as the
    # dashboard's doctor screen uses, so the CLI and the screen agree.
    with sim_host_for(args) as sim:
        if sim is not None and not getattr(args, "no_docker", False):
            import docker

            client, use_docker = docker.DockerClient(base_url=sim.docker_base_url, timeout=10), True
        else:
            client, use_docker = docker_for(args, root)
        try:
            return diagnose(root, session, client, use_docker=use_docker, nvml_library=lib)
        finally:
            session.shutdown()
            if client is not None:
                client.close()


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


def run(args) -> int:
    from gpudock.doctor import report_json

    facts, findings = diagnose_args(args)
    if args.only:
        findings = tuple(f for f in findings if f.id in set(args.only))
    if args.json:
        json.dump(report_json(facts, findings), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_text(findings))
    return EXIT_ERRORS if any(f.is_error for f in findings) else EXIT_OK
