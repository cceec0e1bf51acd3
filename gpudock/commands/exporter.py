"""``gpudock exporter``: this host's GPUs, holders and doctor findings as a Prometheus endpoint.

This module owns the command: its options, the address it listens on (127.0.0.1 unless
``--listen`` names another; it never binds beyond the address given), the host label, and the
HTTP server (``prometheus_client``'s). The series and their refresh are
:class:`gpudock.fleet.exporter.HostCollector`'s; the GPUs and holders come from the session's
poll, the one the dashboard runs (:meth:`gpudock.session.HostSession.poll`), the doctor's
findings from :meth:`gpudock.session.HostSession.diagnose`.

``--dcgm-hpc-job-dir DIR`` also keeps dcgm-exporter's HPC job mapping files in DIR
(:mod:`gpudock.fleet.hpc`), so a dcgm-exporter started with ``--hpc-job-mapping-dir DIR`` labels
its own series with the holding container's name (``hpc_job``).

``--once`` prints one scrape's text and exits (no port is opened).
"""

from __future__ import annotations

import errno
import ipaddress
import signal
import sys
import threading

from gpudock.exitcode import ExitCode
from gpudock.fleet.metrics import DEFAULT_PORT


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "exporter",
        help="serve this host's GPUs, holders and doctor findings to Prometheus",
        description="A Prometheus endpoint: per GPU utilization, memory, temperature, power and MIG devices; "
        "gpudock_gpu_holder_info per (GPU, holding container), joinable with dcgm-exporter on UUID; "
        "per-process GPU memory; one series per doctor finding; the driver version.",
    )
    p.add_argument(
        "--listen",
        metavar="ADDR:PORT",
        default=f"127.0.0.1:{DEFAULT_PORT}",
        type=listen_address,
        help=f"address to listen on (default 127.0.0.1:{DEFAULT_PORT}, this machine only; "
        f"0.0.0.0:{DEFAULT_PORT} or [::]:{DEFAULT_PORT} for every interface)",
    )
    p.add_argument(
        "--hostname",
        metavar="NAME",
        default=None,
        help="the hostname label (default: this machine's hostname; on --sim/--demo, the scenario's name)",
    )
    p.add_argument(
        "--interval", metavar="SECONDS", type=_positive, default=5.0, help="read the GPUs every SECONDS (default 5)"
    )
    p.add_argument(
        "--doctor-every",
        metavar="SECONDS",
        type=float,
        default=300.0,
        help="run the doctor every SECONDS (default 300; 0: never, no doctor series)",
    )
    p.add_argument(
        "--dcgm-hpc-job-dir",
        metavar="DIR",
        default=None,
        help="also write dcgm-exporter's HPC job mapping files (one per GPU index, or GPU.GI for a MIG instance; "
        "one container name per line) into DIR",
    )
    p.add_argument("--no-docker", action="store_true", help="do not read the Docker engine (no holders)")
    p.add_argument("--once", action="store_true", help="print one scrape's text to stdout and exit")
    p.set_defaults(func=run)


def _positive(text: str) -> float:
    import argparse

    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds above 0")
    return v


def listen_address(text: str) -> tuple[str, int]:
    """``ADDR:PORT`` (IPv4, ``[IPv6]:PORT``) -> (addr, port); an argparse error in words otherwise."""
    import argparse

    host, sep, port_s = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give ADDR:PORT, e.g. 127.0.0.1:{DEFAULT_PORT} (this machine only) or "
            f"0.0.0.0:{DEFAULT_PORT} (every interface)"
        )
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: {host!r} is not an IP address; give the address to listen on as numbers "
            "(127.0.0.1, 0.0.0.0, [::1]), not a name"
        ) from None
    if not port_s.isdigit() or not 0 <= int(port_s) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r}: the port must be a number from 1 to 65535 (0: any free one)")
    return str(ip), int(port_s)


def bind_error(addr: str, port: int, e: OSError) -> str:
    where = f"{'[' + addr + ']' if ':' in addr else addr}:{port}"
    if e.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {where}: the port is already in use (another gpudock exporter?); "
            f"stop it, or choose another port with --listen {addr if ':' not in addr else '[' + addr + ']'}:PORT"
        )
    if e.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {where}: this machine has no such address; give one of its own addresses to --listen"
    if e.errno in (errno.EACCES, errno.EPERM):
        return f"cannot listen on {where}: permission denied (ports below 1024 need root); choose a port above 1024"
    return f"cannot listen on {where}: {e.strerror or e}"


def run(args, host) -> int:
    from prometheus_client import CollectorRegistry, generate_latest, start_http_server

    from gpudock.fleet.exporter import HostCollector
    from gpudock.fleet.hpc import HpcJobDir

    hpc = None
    if args.dcgm_hpc_job_dir:
        hpc = HpcJobDir(args.dcgm_hpc_job_dir)
        try:
            hpc.check()
        except OSError as e:
            print(f"gpudock exporter: {e}", file=sys.stderr)
            return ExitCode.FAILED
    # The dashboard's poll: the session's NVML session and its watcher, whose event thread keeps
    # the containers current; the doctor on the same session.
    watcher = host.start_watching()
    if host.docker_url is not None:
        watcher.wait_ready(10.0)
    hostname = args.hostname or host.hostname
    core = HostCollector(
        host.poll,
        (lambda: host.diagnose()[1]) if args.doctor_every > 0 else None,
        hostname=hostname,
        doctor_period=args.doctor_every,
        listeners=[hpc.update] if hpc is not None else [],
    )
    registry = CollectorRegistry()
    registry.register(core)
    core.refresh()
    if args.once:
        core.refresh_findings()
        sys.stdout.write(generate_latest(registry).decode())
        return ExitCode.OK
    addr, port = args.listen
    try:
        server, thread = start_http_server(port, addr=addr, registry=registry)
    except OSError as e:
        print(f"gpudock exporter: {bind_error(addr, port, e)}", file=sys.stderr)
        return ExitCode.FAILED
    core.start(args.interval)
    shown = f"[{addr}]" if ":" in addr else addr
    print(
        f"gpudock exporter: host {hostname!r} at http://{shown}:{server.server_port}/metrics "
        f"(GPUs every {args.interval:g} s"
        + (f", doctor every {args.doctor_every:g} s" if args.doctor_every > 0 else "")
        + (f", HPC job files in {hpc.directory}" if hpc else "")
        + ")",
        file=sys.stderr,
        flush=True,
    )
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    server.shutdown()
    server.server_close()
    thread.join(5)
    core.stop()
    return ExitCode.OK
