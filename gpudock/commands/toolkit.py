"""`gpudock toolkit`: the NVIDIA Container Toolkit's config.toml and Docker's daemon.json from the
command line, on the same core as the toolkit screen (``gpudock.toolkit``).

Owns the sub-commands ``status``, ``debug on|off``, ``runtime register`` and ``defaults``. Every
failure prints one line to stderr saying what is wrong and what to do, and exits 2.
"""

from __future__ import annotations

import json
import sys

from gpudock.exitcode import ExitCode
from gpudock.toolkit import config as tkconfig
from gpudock.toolkit import daemon_json as dj
from gpudock.toolkit.atomic import AtomicWriteError, edit_lock
from gpudock.toolkit.overview import overview


def _err(msg: str) -> int:
    print(f"gpudock toolkit: {msg}", file=sys.stderr)
    return ExitCode.FAILED


def _daemon_json_file(args, host):
    return dj.daemon_json_file(args.daemon_json, root=host.root)


def _locate(args, host):
    return tkconfig.locate_config(args.config, root=host.root, environ=host.environ)


# --------------------------------------------------------------------------- status


def collect_status(args, host) -> tuple[dict, list[str]]:
    """The JSON status document and the list of errors (files that cannot be used)."""
    if getattr(args, "no_engine", False):
        info, ierr = None, "not asked (--no-engine)"
    else:
        info, ierr = host.docker_info()
    return overview(
        config=args.config,
        daemon_json=args.daemon_json,
        root=host.root,
        docker_info=info,
        docker_error=ierr,
        environ=host.environ,
    )


def _onoff(d: dict) -> str:
    if d["enabled"]:
        return f"on  -> {d['log_path']} (line {d['line']})"
    if d["state"] == "commented":
        return f"off (commented default {d['commented_path']!r} at line {d['line']})"
    if d["state"] == "set":
        return f"off (set to an off value at line {d['line']})"
    return "off (no debug line)"


def render_status_text(doc: dict) -> str:
    c = doc["config"]
    out = [f"config.toml   {c['path']}  ({c['source']})"]
    if c["error"]:
        out.append(f"  {c['error']}")
    if c["settings"]:
        for name, s in c["settings"].items():
            where = f"line {s['line']}" if s["line"] else "not in file"
            state = "set" if s["state"] == "set" else f"default ({s['state']}, {where})"
            out.append(f"  {name:<12} {json.dumps(s['value']):<28} {state if s['state'] != 'set' else where}")
        for comp, d in c["debug"].items():
            label = "hook debug" if comp == "hook" else "runtime debug"
            out.append(f"  {label:<14} [{d['table']}] {_onoff(d)}")
    d = doc["daemon_json"]
    out.append(f"daemon.json   {d['path']}" + ("" if d.get("exists", True) else "  (does not exist)"))
    if d["error"]:
        out.append(f"  {d['error']}")
    else:
        rts = ", ".join(f"{n}={p}" for n, p in d["runtimes"].items()) or "none"
        out.append(f"  runtimes       {rts}")
        out.append(
            f"  nvidia         {'registered' if d['nvidia_registered'] else 'not registered'}"
            + (f"; toolkit runtimes: {', '.join(d['toolkit_runtimes'])}" if d["toolkit_runtimes"] else "")
        )
        out.append(f"  default        {d['default_runtime'] or 'runc (not set)'}")
    e = doc["engine"]
    if not e["reachable"]:
        out.append(f"engine        {e['error']}")
    else:
        out.append(
            f"engine        default {e['default_runtime']}; runtimes {', '.join(e['runtimes']) or 'none'}; "
            f"nvidia {'known' if e['knows_runtime'] else 'unknown'}"
        )
        for r in e["reasons"]:
            out.append(f"  {r}")
        if e["restart_needed"]:
            out.append(f"  {dj.RESTART_HINT}")
    return "\n".join(out)


def cmd_status(args, host) -> int:
    doc, errors = collect_status(args, host)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(render_status_text(doc))
    if errors:
        return _err(errors[0])
    return ExitCode.OK


# --------------------------------------------------------------------------- debug


def _confirm(question: str) -> bool:
    if not sys.stdin or not sys.stdin.isatty():
        return False
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


def cmd_debug(args, host) -> int:
    component = "runtime" if args.runtime else "hook"
    if args.path is not None and not args.path:
        return _err("--path must name the log file, not be empty")
    if args.path is not None and _not_utf8(args.path):
        return _err(f"--path {_raw(args.path)!r} is not valid UTF-8; the toolkit reads config.toml as UTF-8")
    loc = _locate(args, host)
    if loc.error:
        return _err(loc.error)
    if args.yes:
        # Nobody confirms in between: hold the file's lock from the read to the rename, so that
        # gpudock writers running at the same time take turns and none of their changes is lost.
        try:
            with edit_lock(loc.file):
                cfg = tkconfig.load_config(loc)
                plan = tkconfig.plan_debug(cfg, component, args.state == "on", args.path)
                _describe(plan)
                res = tkconfig.apply_plan(plan)
        except (tkconfig.ConfigError, AtomicWriteError) as e:
            return _err(str(e))
        return _debug_done(plan, res)
    try:
        cfg = tkconfig.load_config(loc)
        plan = tkconfig.plan_debug(cfg, component, args.state == "on", args.path)
    except (tkconfig.ConfigError, AtomicWriteError) as e:
        return _err(str(e))
    _describe(plan)
    if not plan.changed:
        return ExitCode.OK
    if not _confirm("Write this change?"):
        return _err(f"not written: confirm on a terminal or pass --yes to change {plan.path}")
    try:
        res = tkconfig.apply_plan(plan)  # refused if the file changed while we asked
    except AtomicWriteError as e:
        return _err(str(e))
    return _debug_done(plan, res)


def _describe(plan) -> None:
    print(plan.describe())
    if plan.note:
        print(f"note: {plan.note}")


def _debug_done(plan, res) -> int:
    if not plan.changed:
        return ExitCode.OK
    if res is not None and res.backup:
        print(f"written; the previous version is kept in {res.backup}")
    if plan.enable:
        print(f"{plan.table} debug logging goes to {plan.log_path}; it takes effect on the next container start")
    return ExitCode.OK


def _not_utf8(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _raw(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------- runtime register


def cmd_runtime_register(args, host) -> int:
    f = _daemon_json_file(args, host)
    try:
        # One read-merge-write under the file's lock: parallel registrations take turns and each
        # merges into what the one before wrote.
        with edit_lock(f, make_parents=True):
            plan = dj.plan_register(
                dj.load_daemon_json(f),
                args.path,
                args.name,
                True if args.default else (False if args.no_default else None),
            )
            res = dj.apply_register(plan)
    except (dj.DaemonJsonError, AtomicWriteError) as e:
        return _err(str(e))
    if getattr(args, "json", False):
        print(json.dumps(plan.to_json() | {"backup": res.backup if res else None}, indent=2))
        return ExitCode.OK
    if plan.kept:
        print(f"{plan.path}: {plan.kept}")
    if not plan.changed:
        print(f'{plan.path}: runtime "{args.name}" is already registered as asked; nothing to change')
        return ExitCode.OK
    for c in plan.changes:
        print(f"{plan.path}: {c}")
    if res is not None and res.backup:
        print(f"the previous version is kept in {res.backup}")
    print(dj.RESTART_HINT)
    return ExitCode.OK


# --------------------------------------------------------------------------- defaults


def cmd_defaults(args, host) -> int:
    loc = _locate(args, host)
    if loc.error:
        return _err(loc.error)
    if loc.exists:
        return _err(f"{loc.path} already exists; gpudock writes the defaults only where there is no file")
    try:
        res = tkconfig.write_defaults(loc, root=host.root)
    except (tkconfig.ConfigError, AtomicWriteError) as e:
        return _err(str(e))
    print(f"wrote the toolkit's default configuration to {res.path}")
    return ExitCode.OK


# --------------------------------------------------------------------------- parser


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "toolkit",
        help="the NVIDIA Container Toolkit's config.toml and Docker's daemon.json",
        description="Show and change the NVIDIA Container Toolkit's configuration safely: every edit "
        "keeps the rest of the file byte for byte, keeps a .gpudock-bak backup and is refused if the file "
        "changed meanwhile.",
    )
    sub = p.add_subparsers(dest="toolkit_action", metavar="ACTION", required=True)

    s = sub.add_parser("status", help="config.toml as the toolkit reads it, daemon.json and the engine")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.add_argument("--config", metavar="PATH", help="the toolkit's config.toml (default: as the toolkit finds it)")
    s.add_argument("--daemon-json", metavar="PATH", help="Docker's daemon.json (default /etc/docker/daemon.json)")
    s.add_argument("--no-engine", action="store_true", help="do not ask the running Docker engine")
    s.set_defaults(func=cmd_status)

    d = sub.add_parser("debug", help="turn the hook's or the runtime's debug log on or off")
    d.add_argument("state", choices=("on", "off"))
    which = d.add_mutually_exclusive_group()
    which.add_argument("--hook", action="store_true", help="[nvidia-container-cli] debug: the hook's log (the default)")
    which.add_argument("--runtime", action="store_true", help="[nvidia-container-runtime] debug: the runtime's log")
    d.add_argument("--path", metavar="LOG", help="log file to write to (default: the path on the shipped line)")
    d.add_argument("--config", metavar="PATH", help="the toolkit's config.toml (default: as the toolkit finds it)")
    d.add_argument("--yes", "-y", action="store_true", help="write without asking")
    d.set_defaults(func=cmd_debug)

    r = sub.add_parser("runtime", help="Docker's runtime registration for the toolkit")
    rsub = r.add_subparsers(dest="runtime_action", metavar="ACTION", required=True)
    rr = rsub.add_parser("register", help="register nvidia-container-runtime in daemon.json (merging)")
    dflt = rr.add_mutually_exclusive_group()
    dflt.add_argument("--default", action="store_true", help="also make it Docker's default runtime")
    dflt.add_argument(
        "--no-default",
        action="store_true",
        help="stop it being the default runtime (removes default-runtime if it names it)",
    )
    rr.add_argument("--daemon-json", metavar="PATH", help="default /etc/docker/daemon.json")
    rr.add_argument(
        "--path",
        metavar="RUNTIME",
        default=None,
        help="the runtime binary (default: keep the path of a runtime already registered under --name, "
        "else nvidia-container-runtime, found in dockerd's PATH)",
    )
    rr.add_argument("--name", default="nvidia", help="runtime name (default nvidia)")
    rr.add_argument("--json", action="store_true", help="machine-readable output")
    rr.set_defaults(func=cmd_runtime_register)

    df = sub.add_parser("defaults", help="write the toolkit's default config.toml where there is none")
    df.add_argument("--config", metavar="PATH", help="where to write (default: as the toolkit finds it)")
    df.set_defaults(func=cmd_defaults)
