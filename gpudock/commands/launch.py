"""``gpudock args``, ``run``, ``serve`` and ``nvidia-docker``: the launcher on the command line.

    gpudock args [--mode legacy|runtime|gpus|cdi] [--format cli|plugin|json|compose|k8s|sdk|run] GPU...
    gpudock run  [--mode ...] --gpu GPU... [--name N] [--env K=V]... [--cap CAPS] [--mps PCT] [--force] IMAGE [CMD...]
    gpudock serve [--port 3476] [--plugin-socket PATH | --no-plugin] [--volume-dir DIR]
    gpudock nvidia-docker [--dev-dir DIR] run|create [docker args]   (and any other docker command)

GPUs are NVML indices, UUIDs, PCI bus ids, an ``NV_GPU``-style list ("2,0") or ``all``; their
order is kept. ``run`` takes them from ``--gpu`` or, failing that, from ``$NV_GPU``. Every refusal
is one line on stderr and exit status 2; nothing is launched.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from gpudock.exitcode import ExitCode
from gpudock.launch.selection import SelectionError, parse_selection
from gpudock.launch.spec import FORMATS, MODES, LaunchError, build_spec
from gpudock.launch.volume import DEFAULT_VOLUME_DIR
from gpudock.launch.volume_plugin import DEFAULT_PLUGIN_SOCKET


def _err(msg: str) -> int:
    print(f"gpudock: {msg}", file=sys.stderr)
    return ExitCode.FAILED


def _add_spec_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--mode",
        choices=MODES,
        default="runtime",
        help="legacy (nvidia-docker 1.0 devices + driver volume), runtime (--runtime=nvidia), "
        "gpus (--gpus, Docker 19.03+), cdi (--device nvidia.com/gpu=…); default runtime",
    )
    p.add_argument(
        "--ids",
        choices=("uuid", "index"),
        default="uuid",
        help="name cards to the runtime/--gpus/CDI by UUID (default, stable) or NVML index",
    )
    p.add_argument(
        "--cap",
        action="append",
        metavar="CAPS",
        help="driver capabilities, e.g. compute,utility (default) or all; repeatable",
    )
    p.add_argument(
        "--mps", type=int, metavar="PCT", help="MPS client: CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=PCT and --ipc=host"
    )
    p.add_argument(
        "--dev-dir",
        default="/dev",
        metavar="DIR",
        help="legacy mode: where the Docker host has the /dev/nvidia* nodes (default /dev)",
    )


def _uvm_tools(args, host) -> bool:
    if args.dev_dir != "/dev":
        return os.path.exists(os.path.join(args.dev_dir, "nvidia-uvm-tools"))
    return host.root.exists("/dev/nvidia-uvm-tools")


def _spec(args, host, snap, gpu_items, **extra):
    sel = parse_selection(gpu_items, snap)
    return build_spec(
        snap,
        sel,
        args.mode,
        ids=args.ids,
        capabilities=args.cap,
        mps_thread_percentage=args.mps,
        dev_dir=args.dev_dir,
        uvm_tools=_uvm_tools(args, host) if args.mode == "legacy" else True,
        **extra,
    )


def _snapshot(host):
    snap = host.snapshot()
    if snap.nvml_failure:
        raise LaunchError(f"NVML could not start: {snap.nvml_failure.nvml_text}. {snap.nvml_failure.message}")
    return snap


def cmd_args(args, host) -> int:
    try:
        snap = _snapshot(host)
        spec = _spec(args, host, snap, args.gpu, image=args.image)
        if args.format == "run" and not args.image:
            raise LaunchError("--format run needs --image")
        print(spec.render(args.format).rstrip("\n"))
    except (LaunchError, SelectionError) as e:
        return _err(str(e))
    return ExitCode.OK


def cmd_run(args, host) -> int:
    import docker

    from gpudock.launch.run import launch
    from gpudock.launch.volume import ensure_driver_volume

    gpus = args.gpu or ([os.environ["NV_GPU"]] if os.environ.get("NV_GPU") else [])
    try:
        snap = _snapshot(host)
        spec = _spec(
            args, host, snap, gpus, image=args.image, command=args.command or None, name=args.name, env=args.env or ()
        )
        client = host.docker_client(timeout=60)
        if spec.mode == "legacy":
            got = ensure_driver_volume(client, host.root, spec.driver_volume, args.volume_dir)
            if got.action != "ok":
                print(f"gpudock: {got.message}", file=sys.stderr)
        hmap = host.holders(snap)
        if hmap.docker is not None and not hmap.docker.ok:
            raise LaunchError(hmap.docker.message or f"cannot read the Docker engine at {hmap.docker.base_url}")
        container, warnings = launch(client, spec, snap, force=args.force, holders=hmap.running_holder_names())
    except LaunchError as e:
        return _err(f"{e} (--force launches anyway)" if e.forcible else str(e))
    except SelectionError as e:
        return _err(str(e))
    except docker.errors.DockerException as e:
        return _err(host.explain_engine_error(e))
    return _report_run(args, spec, container, warnings)


def _report_run(args, spec, container, warnings) -> int:
    from gpudock.launch.run import wait_for_first_logs

    for w in warnings:
        print(f"gpudock: warning: {w}", file=sys.stderr)
    logs = wait_for_first_logs(container, args.logs, args.wait)
    if args.json:
        print(
            json.dumps(
                {
                    "id": container.id,
                    "name": container.name,
                    "status": container.status,
                    "warnings": list(warnings),
                    "logs": logs,
                    "docker_run": spec.docker_run_line(),
                },
                indent=2,
            )
        )
    else:
        print(f"{container.name} {container.id[:12]} {container.status}")
        for line in logs:
            print(f"  {line}")
    return ExitCode.OK


def cmd_serve(args, host) -> int:
    import threading

    from gpudock.launch.httpserve import SocketInUse
    from gpudock.launch.plugin_server import PluginServer
    from gpudock.launch.volume_plugin import DriverVolumePlugin

    cache: list = [0.0, None]  # one NVML session per second at most, however many requests come
    lock = threading.Lock()  # requests are answered on several threads; one NVML session at a time

    def snapshot():
        with lock:
            now = time.monotonic()
            if cache[1] is None or now - cache[0] >= 1.0:
                cache[:] = [now, host.snapshot()]
            return cache[1]

    def log(line: str) -> None:
        print(f"gpudock: {line}", file=sys.stderr, flush=True)

    root = host.root
    # A simulated host keeps the plugin's socket and volumes in its own directory, as it keeps
    # everything else; a real one where dockerd looks for them.
    socket_path = args.plugin_socket or (root.real(DEFAULT_PLUGIN_SOCKET) if host.simulated else DEFAULT_PLUGIN_SOCKET)
    volume_dir = args.volume_dir or (root.real(DEFAULT_VOLUME_DIR) if host.simulated else DEFAULT_VOLUME_DIR)
    args.plugin_socket, args.volume_dir = socket_path, volume_dir
    plugin = None
    if not args.no_plugin:
        # the read-only mounts must be made where dockerd sees them: only on the host itself
        plugin = DriverVolumePlugin(
            root, volume_dir, lambda: snapshot().driver_version, log=log, read_only_mounts=root.is_live
        )
        if not root.is_live and not host.simulated:
            log(
                "volume plugin: read-only mounts are off (--root): containers get the volume directory itself, "
                "read-only only where they ask for :ro (as /docker/cli and the wrapper do)"
            )
    try:
        srv = PluginServer(
            snapshot,
            port=args.port,
            host=args.host,
            root=root,
            log=log,
            dev_dir=args.dev_dir,
            volume_plugin=plugin,
            plugin_socket=socket_path,
        )
    except LaunchError as e:
        return _err(str(e))
    except SocketInUse as e:
        return _err(
            f"cannot serve the volume plugin: {e} (nvidia-docker-plugin, or another gpudock serve?): "
            "stop it, or give --plugin-socket PATH, or --no-plugin for the REST API alone"
        )
    print(f"gpudock: nvidia-docker-plugin API on http://127.0.0.1:{srv.port}/v1.0/", file=sys.stderr, flush=True)
    if plugin is not None:
        print(
            f"gpudock: Docker volume plugin nvidia-docker on {args.plugin_socket} (volumes in {args.volume_dir})",
            file=sys.stderr,
            flush=True,
        )
    with srv:
        srv.serve_forever()
    return ExitCode.OK


def _port(text: str) -> int:
    try:
        n = int(text) if len(text) <= 6 else -1
    except ValueError:
        n = -1
    if not 1 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"{text[:12]!r} is not a TCP port (1-65535)")
    return n


def cmd_nvidia_docker(args, host) -> int:
    import docker

    from gpudock.launch.wrapper import WrapperOptions, docker_command, gpu_args, parse_docker_line, wrapped_args

    argv = list(args.docker_args)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        return _err("nvidia-docker: give a docker command, e.g. 'gpudock nvidia-docker run --rm IMAGE nvidia-smi'")
    line = parse_docker_line(argv)
    cmd = docker_command(os.environ)
    final = list(argv)
    if line.command in ("run", "create"):
        opts = WrapperOptions(host.root, args.dev_dir, args.volume_dir, args.plugin_socket)
        try:
            snap = _snapshot(host)
            # the engine docker's own -H names, else the host's
            client = host.docker_client(timeout=60, base_url=line.host)
            final = wrapped_args(line, gpu_args(line, snap, os.environ, opts, client))
        except (LaunchError, SelectionError) as e:
            return _err(str(e))
        except docker.errors.DockerException as e:
            return _err(host.explain_engine_error(e))
    elif line.command == "version":
        from importlib.metadata import PackageNotFoundError, version

        try:
            mine = version("gpudock")
        except PackageNotFoundError:
            mine = "unknown"
        print(f"NVIDIA Docker: gpudock {mine}\n", flush=True)
    full = [*cmd, *final]
    if args.dry_run:
        import shlex

        print(shlex.join(full))
        return ExitCode.OK
    # docker runs on the engine gpudock looked at: the host's (on a simulated host, its own)
    env = dict(os.environ)
    if not line.host and host.docker_url:
        env["DOCKER_HOST"] = host.docker_url
    sys.stdout.flush()
    sys.stderr.flush()
    if host.simulated:
        # its engine lives in this process: docker must run while it does (never through a shell)
        return subprocess.run(full, env=env).returncode
    try:
        os.execvpe(full[0], full, env)  # never through a shell
    except OSError as e:
        return _err(f"cannot run {full[0]}: {e.strerror}")
    return ExitCode.OK  # not reached


def register(sub) -> None:
    p = sub.add_parser("args", help="print the docker arguments that give a container these GPUs")
    _add_spec_options(p)
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="cli",
        help="cli (shell-quoted args), plugin (nvidia-docker-plugin's /docker/cli line, legacy), "
        "json, compose, k8s, sdk (Docker SDK call), run (a whole docker run line)",
    )
    p.add_argument("--image", help="image for the json/compose/sdk/run formats")
    p.add_argument("gpu", nargs="+", metavar="GPU", help="index, UUID, bus id, '2,0' or all; order kept")
    p.set_defaults(func=cmd_args)

    p = sub.add_parser("run", help="launch a container on these GPUs (detached), after the checks")
    _add_spec_options(p)
    p.add_argument(
        "--gpu",
        action="append",
        metavar="GPU",
        help="GPUs (index, UUID, bus id, '2,0', all); repeatable; default $NV_GPU",
    )
    p.add_argument("--name", help="container name")
    p.add_argument("-e", "--env", action="append", metavar="K=V", help="environment variable; repeatable")
    p.add_argument("--force", action="store_true", help="launch even if the image needs a newer CUDA")
    p.add_argument("--logs", type=int, default=10, metavar="N", help="print the first N log lines (default 10)")
    p.add_argument(
        "--wait", type=float, default=2.0, metavar="S", help="wait up to S seconds for the first log lines (default 2)"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _add_volume_dir(p)
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD", help="command and arguments (no shell)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "serve",
        help="nvidia-docker-plugin: the REST API on 127.0.0.1 and the Docker volume plugin on its socket",
    )
    p.add_argument("--port", type=_port, default=3476, help="TCP port (default 3476)")
    p.add_argument("--host", default="127.0.0.1", help=argparse.SUPPRESS)
    p.add_argument(
        "--plugin-socket",
        metavar="PATH",
        default=None,
        help=f"the volume plugin's UNIX socket (default {DEFAULT_PLUGIN_SOCKET}, where dockerd looks "
        "for the plugin nvidia-docker; on --demo/--sim, the simulated host's own)",
    )
    p.add_argument("--no-plugin", action="store_true", help="the REST API only, no volume plugin")
    p.add_argument(
        "--volume-dir",
        default=None,
        metavar="DIR",
        help=f"where the plugin builds driver volumes (a directory on this machine, which dockerd opens as "
        f"named; default {DEFAULT_VOLUME_DIR}; on --demo/--sim, inside the simulated host)",
    )
    p.add_argument(
        "--dev-dir",
        default="/dev",
        metavar="DIR",
        help="where this host has the /dev/nvidia* nodes (default /dev; otherwise /docker/cli maps DIR/nvidiaN)",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "nvidia-docker",
        help="nvidia-docker 1.0's wrapper: docker run|create with the GPUs of $NV_GPU and the driver volume",
        description="docker run/create (also container run/create) with the devices of $NV_GPU (indices or "
        "UUIDs, in order; all GPUs when unset) and the driver volume inserted before the image, after the "
        "image's CUDA check; every other argument, and every other docker command, goes to docker unchanged "
        "($NV_DOCKER replaces 'docker'). gpudock's own options come first; docker's global options after "
        "'--' (gpudock nvidia-docker -- -H unix:///x run ...).",
    )
    p.add_argument(
        "--dev-dir",
        default="/dev",
        metavar="DIR",
        help="where the Docker host has the /dev/nvidia* nodes (default /dev)",
    )
    _add_volume_dir(p)
    p.add_argument(
        "--plugin-socket",
        metavar="PATH",
        default=DEFAULT_PLUGIN_SOCKET,
        help="the volume plugin's socket: when it answers and the volume is missing, the plugin builds it",
    )
    p.add_argument("--dry-run", action="store_true", help="print the docker command instead of running it")
    p.add_argument("docker_args", nargs=argparse.REMAINDER, metavar="DOCKER-ARGS")
    p.set_defaults(func=cmd_nvidia_docker)


def _add_volume_dir(p: argparse.ArgumentParser, where: str = "the Docker host's path, under --root") -> None:
    p.add_argument(
        "--volume-dir",
        default=DEFAULT_VOLUME_DIR,
        metavar="DIR",
        help=f"where gpudock builds driver volumes ({where}; default {DEFAULT_VOLUME_DIR})",
    )
