"""``gpudock container stop|restart|rm|logs NAME`` and ``gpudock kill PID``: the Containers and
GPU screens' actions, for scripts.

    gpudock container stop NAME [--time S] [--json]
    gpudock container restart NAME [--time S] [--json]
    gpudock container rm NAME [--force] [--json]
    gpudock container logs NAME [--follow] [--tail N]
    gpudock kill [--signal TERM|KILL] PID [--json]

The same core as the screens (:mod:`gpudock.launch.lifecycle`, :mod:`gpudock.host.signals`),
through the host session, which refuses them in a read-only session and never signals this
machine's processes from a simulated host. Like ``docker stop`` and ``kill(1)`` they do not ask
first: a script says what it means. Each says what the container held (GPU index, PCI bus id,
device node), so a log of what was done names what it freed.

``kill`` signals GPU processes only (a PID NVML reports on a GPU of this host): a PID that is on no
GPU is refused (``kill(1)`` is for those). The process is named by its PID and the start time
read with this run's snapshot, so a PID that was reused meanwhile is refused, not signalled.

``--json`` where there is something to return: the action's result (``{"action", "id", "name",
"status", "message", "gpus": [{"index", "uuid", "pci_bus_id", "device"}]}``) and the signal sent
(``{"pid", "signal", "command", "container", "container_id", "gpus": [index, ...]}``). ``logs``
has none: it is the container's own text, printed as it comes.

Exit status: 0 done; 2 not done (gone, refused, read-only, the engine unreachable): the message
says why, on stderr.
"""

from __future__ import annotations

import json
import sys

from gpudock.exitcode import ExitCode

ACTION_OF = {"stop": "stop", "restart": "restart", "rm": "remove"}


def _err(msg: str) -> int:
    print(f"gpudock: {msg}", file=sys.stderr)
    return ExitCode.FAILED


def register(sub) -> None:
    p = sub.add_parser("container", help="stop, restart or remove a container, or follow its logs")
    csub = p.add_subparsers(dest="container_command", metavar="ACTION", required=True)
    for name, what in (("stop", "stop a container"), ("restart", "restart a container")):
        sp = csub.add_parser(name, help=f"{what} (its stop signal, then SIGKILL after --time seconds)")
        sp.add_argument("name", metavar="NAME", help="the container's name or id")
        sp.add_argument("--time", "-t", type=int, default=10, metavar="S", help="seconds before SIGKILL (default 10)")
        sp.add_argument("--json", action="store_true", help="machine-readable output")
        sp.set_defaults(func=cmd_action, action=ACTION_OF[name])
    sp = csub.add_parser("rm", help="remove a container (a running one only with --force)")
    sp.add_argument("name", metavar="NAME", help="the container's name or id")
    sp.add_argument("--force", "-f", action="store_true", help="kill and remove a running container")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp.set_defaults(func=cmd_action, action="remove", time=10)
    sp = csub.add_parser("logs", help="a container's output (stdout and stderr)")
    sp.add_argument("name", metavar="NAME", help="the container's name or id")
    sp.add_argument("--follow", "-f", action="store_true", help="keep printing new lines until it stops")
    sp.add_argument("--tail", type=_tail, default="all", metavar="N", help="only the last N lines (default all)")
    sp.set_defaults(func=cmd_logs)

    k = sub.add_parser("kill", help="send SIGTERM or SIGKILL to a GPU process (host PID)")
    k.add_argument("pid", type=int, metavar="PID", help="the host PID, as gpudock holders lists it")
    k.add_argument("--signal", "-s", default="TERM", metavar="TERM|KILL", help="the signal (default TERM)")
    k.add_argument("--json", action="store_true", help="machine-readable output")
    k.set_defaults(func=cmd_kill)


def _tail(text: str) -> str | int:
    if text == "all":
        return text
    if not text.isdigit():
        raise ValueError(text)
    return int(text)


def _held(host, ref: str) -> tuple[list[str], list[dict]]:
    """What the container ``ref`` holds, in lines and as JSON (empty where it cannot be read)."""
    from gpudock.launch.lifecycle import holdings

    try:
        snap = host.snapshot()
        hmap = host.holders(snap, all=True)
    except Exception:  # noqa: BLE001 - what it held is a courtesy; the action is what was asked
        return [], []
    for cg in hmap.containers:
        if ref in (cg.name, cg.id) or (len(ref) >= 4 and cg.id.startswith(ref)):
            gpus = []
            for g in cg.gpus:
                gh = hmap.gpu(g.uuid)
                gpus.append(
                    {
                        "index": g.index,
                        "uuid": g.uuid,
                        "pci_bus_id": gh.pci_bus_id if gh is not None else None,
                        "device": f"/dev/nvidia{g.minor}" if g.minor is not None else None,
                    }
                )
            return holdings(cg, hmap), gpus
    return [], []


def cmd_action(args, host) -> int:
    from gpudock.launch.lifecycle import ActionError
    from gpudock.session import SessionError

    lines, gpus = _held(host, args.name)
    try:
        done = host.container_action(
            args.name, args.action, force=bool(getattr(args, "force", False)), timeout=args.time, shown_as=args.name
        )
    except (ActionError, SessionError) as e:
        return _err(str(e))
    if args.json:
        print(json.dumps({**done.to_json(), "gpus": gpus}, indent=2))
    else:
        print(done.message)
        for line in lines:
            print(f"  held {line}" if line.startswith("GPU") else f"  {line}")
    return ExitCode.OK


def cmd_logs(args, host) -> int:
    from gpudock.launch.lifecycle import ActionError
    from gpudock.session import SessionError

    try:
        stream = host.container_logs(args.name, tail=args.tail, follow=args.follow)
    except (ActionError, SessionError) as e:
        return _err(str(e))
    try:
        for line in stream.lines():
            print(line, flush=args.follow)
    finally:
        stream.close()
    return ExitCode.OK


def cmd_kill(args, host) -> int:
    from gpudock.host.signals import SignalRefused, parse_signal
    from gpudock.session import SessionError

    try:
        sig = parse_signal(args.signal)
    except SignalRefused as e:
        return _err(str(e))
    snap = host.snapshot()
    procs = [(g, p) for g in snap.gpus for p in g.processes if p.pid == args.pid]
    if not procs:
        return _err(
            f"PID {args.pid} is not a process on any GPU of this host (gpudock holders lists them): gpudock kill "
            "signals GPU processes only; nothing sent"
        )
    proc = procs[0][1]
    container = container_id = None
    try:
        hmap = host.holders(snap)
        for gh in hmap.gpus:
            for hp in gh.processes:
                if hp.pid == args.pid:
                    container, container_id = hp.container_name, hp.container_id
    except Exception:  # noqa: BLE001 - which container it is in is a courtesy of the message
        pass
    where = f"in container {container}" if container else "in no container this engine knows"
    what = f"{proc.command or '?'}, {where}"
    try:
        sent = host.signal_process(args.pid, sig, proc.start_time, what=what)
    except (SignalRefused, SessionError) as e:
        return _err(str(e))
    gpus = [g.index for g, _ in procs]
    if args.json:
        out = {
            "pid": sent.pid,
            "signal": sent.signal,
            "command": proc.command,
            "container": container,
            "container_id": container_id,
            "gpus": gpus,
        }
        print(json.dumps(out, indent=2))
    else:
        print(f"sent {sent.signal} to PID {sent.pid} ({what}), on GPU {', '.join(map(str, gpus))}")
    return ExitCode.OK
