"""Docker's /etc/docker/daemon.json, as far as the NVIDIA runtime is concerned.

Owns: reading the file (``load_daemon_json``; malformed JSON refused with line and column), saying
whether a runtime for the toolkit is registered (``runtimes.<name>.path``, any runtime whose path
ends in ``nvidia-container-runtime``) and which runtime is the default, planning the registration
(``plan_register``) as a merge into the existing object - every other key and the key order kept,
written with the file's own indentation - and comparing with the running engine's ``docker info``
(``engine_runtimes``). The nvidia-docker2 package overwrote this file and ``nvidia-ctk runtime
configure`` re-sorts it; we do neither. Writes go through ``gpudock.toolkit.atomic``.

Plain Python, no Textual, no Docker connection (the caller passes the ``docker info`` dict).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gpudock.toolkit.atomic import FileSnapshot, WriteResult, atomic_write, read_snapshot

DEFAULT_PATH = "/etc/docker/daemon.json"
RUNTIME_BINARY = "nvidia-container-runtime"
RESTART_HINT = "restart the Docker engine for the change to take effect: systemctl restart docker"


class DaemonJsonError(Exception):
    def __init__(self, message: str, path: str, line: int | None = None, column: int | None = None):
        super().__init__(message)
        self.path = path
        self.line = line
        self.column = column


def _is_toolkit_runtime(entry: Any) -> bool:
    if not isinstance(entry, Mapping):
        return False
    path = entry.get("path")
    return isinstance(path, str) and os.path.basename(path.rstrip("/")) == RUNTIME_BINARY


@dataclass(frozen=True)
class DaemonJson:
    """daemon.json as read: ``data`` is {} for a missing or blank file (dockerd treats both as empty)."""

    path: str
    snapshot: FileSnapshot = field(repr=False)
    data: dict
    exists: bool

    @property
    def runtimes(self) -> dict:
        r = self.data.get("runtimes")
        return r if isinstance(r, dict) else {}

    @property
    def default_runtime(self) -> str | None:
        d = self.data.get("default-runtime")
        return d if isinstance(d, str) else None

    def toolkit_runtimes(self) -> list[str]:
        """Names of the runtimes whose path is the toolkit's nvidia-container-runtime."""
        return [name for name, entry in self.runtimes.items() if _is_toolkit_runtime(entry)]

    def registered(self, name: str = "nvidia") -> bool:
        entry = self.runtimes.get(name)
        return isinstance(entry, Mapping) and isinstance(entry.get("path"), str) and bool(entry.get("path"))

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "exists": self.exists,
            "runtimes": {n: (e.get("path") if isinstance(e, Mapping) else None) for n, e in self.runtimes.items()},
            "toolkit_runtimes": self.toolkit_runtimes(),
            "nvidia_registered": self.registered("nvidia"),
            "default_runtime": self.default_runtime,
        }


def parse_daemon_json(snapshot: FileSnapshot) -> DaemonJson:
    path = snapshot.path
    if not snapshot.exists:
        return DaemonJson(path, snapshot, {}, False)
    try:
        text = snapshot.data.decode("utf-8")
    except UnicodeDecodeError as e:
        before = snapshot.data[: e.start]
        line, col = before.count(b"\n") + 1, e.start - (before.rfind(b"\n") + 1) + 1
        raise DaemonJsonError(
            f"{path} is not valid UTF-8 at line {line}, column {col}; fix it by hand (gpudock left it untouched)",
            path,
            line,
            col,
        ) from e
    if not text.strip():
        return DaemonJson(path, snapshot, {}, True)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DaemonJsonError(
            f"{path} is not valid JSON at line {e.lineno}, column {e.colno}: {e.msg}; "
            "fix it by hand (gpudock left it untouched)",
            path,
            e.lineno,
            e.colno,
        ) from e
    if not isinstance(data, dict):
        raise DaemonJsonError(
            f"{path} must hold a JSON object, not {type(data).__name__}; fix it by hand (gpudock left it untouched)",
            path,
            1,
            1,
        )
    return DaemonJson(path, snapshot, data, True)


def load_daemon_json(path: str = DEFAULT_PATH) -> DaemonJson:
    """Read ``path``. Raises DaemonJsonError (with line, column) and PermissionDeniedError."""
    return parse_daemon_json(read_snapshot(path))


# --------------------------------------------------------------------------- formatting


@dataclass(frozen=True, slots=True)
class JsonStyle:
    indent: str | None  # None: one line; else the unit of indentation ("    ", "  ", "\t")
    ascii_only: bool
    trailing_newline: bool
    eol: str


def detect_style(text: str) -> JsonStyle:
    eol = "\r\n" if "\r\n" in text else "\n"
    indent: str | None = None
    lines = text.replace("\r\n", "\n").split("\n")
    if len([ln for ln in lines if ln.strip()]) > 1:
        # the indentation of the first indented line is one unit: json writers nest by one unit
        for ln in lines:
            m = re.match(r"[ \t]+(?=\S)", ln)
            if m:
                indent = m.group(0)
                break
        if indent is None:
            indent = "    "
    non_ascii = any(ord(c) > 127 for c in text)
    return JsonStyle(indent, not non_ascii, text.endswith("\n") or not text, eol)


def render(data: Any, style: JsonStyle) -> str:
    if style.indent is None:
        out = json.dumps(data, ensure_ascii=style.ascii_only)
    else:
        out = json.dumps(data, indent=style.indent, ensure_ascii=style.ascii_only)
    if style.eol != "\n":
        out = out.replace("\n", style.eol)
    if style.trailing_newline:
        out += style.eol
    return out


# --------------------------------------------------------------------------- registering


@dataclass(frozen=True)
class RegisterPlan:
    """The merge ``plan_register`` computed: ``changes`` says each change in words; empty: nothing to do."""

    path: str
    name: str
    runtime_path: str
    changes: tuple[str, ...]
    new_data: bytes
    snapshot: FileSnapshot = field(repr=False)
    restart_needed: bool = True  # true whenever something changes: dockerd reads the file at start

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "name": self.name,
            "runtime_path": self.runtime_path,
            "changes": list(self.changes),
            "changed": self.changed,
            "restart_needed": self.changed and self.restart_needed,
            "restart_hint": RESTART_HINT if self.changed else None,
        }


def plan_register(
    doc: DaemonJson,
    path: str = RUNTIME_BINARY,
    name: str = "nvidia",
    default: bool | None = None,
) -> RegisterPlan:
    """Plan ``runtimes.<name>.path = path`` merged into ``doc``.

    ``default``: True makes ``<name>`` the default runtime; False removes ``default-runtime`` if it
    names ``<name>`` (dockerd falls back to runc); None leaves it. Other fields of an existing
    ``runtimes.<name>`` entry (``runtimeArgs``) and every other key stay, in their order.
    """
    data = json.loads(json.dumps(doc.data))  # a deep copy that keeps the key order
    changes: list[str] = []
    runtimes = data.get("runtimes")
    if runtimes is None:
        runtimes = data["runtimes"] = {}
    if not isinstance(runtimes, dict):
        raise DaemonJsonError(
            f'{doc.path}: "runtimes" is not an object; fix it by hand (gpudock left it untouched)', doc.path
        )
    entry = runtimes.get(name)
    if not isinstance(entry, dict):
        runtimes[name] = {"path": path}
        changes.append(f'add runtime "{name}" with path "{path}"')
    elif entry.get("path") != path:
        old = entry.get("path")
        entry["path"] = path
        changes.append(f'runtime "{name}": path "{old}" -> "{path}"')
    current_default = data.get("default-runtime")
    if default is True and current_default != name:
        data["default-runtime"] = name
        changes.append(f'default-runtime: {json.dumps(current_default)} -> "{name}"')
    elif default is False and current_default == name:
        del data["default-runtime"]
        changes.append(f'remove default-runtime "{name}" (the engine falls back to runc)')
    if not changes:
        return RegisterPlan(doc.path, name, path, (), doc.snapshot.data, doc.snapshot, False)
    text = doc.snapshot.data.decode("utf-8") if doc.exists else ""
    style = detect_style(text) if text.strip() else JsonStyle("    ", True, True, "\n")
    new = render(data, style).encode("utf-8")
    # the merge may only have touched the runtime entry and default-runtime
    check = json.loads(new)
    assert {k: v for k, v in check.items() if k not in ("runtimes", "default-runtime")} == {
        k: v for k, v in doc.data.items() if k not in ("runtimes", "default-runtime")
    }
    return RegisterPlan(doc.path, name, path, tuple(changes), new, doc.snapshot)


def apply_register(plan: RegisterPlan, *, backup: bool = True) -> WriteResult | None:
    """Write the plan (refused if the file changed since it was read); None when nothing changes."""
    if not plan.changed:
        return None
    return atomic_write(plan.path, plan.new_data, plan.snapshot, backup=backup, make_parents=True)


def register(
    daemon_json: str = DEFAULT_PATH,
    path: str = RUNTIME_BINARY,
    name: str = "nvidia",
    default: bool | None = None,
) -> RegisterPlan:
    """Load, plan and write in one go. The returned plan says what changed and whether to restart."""
    plan = plan_register(load_daemon_json(daemon_json), path, name, default)
    apply_register(plan)
    return plan


# --------------------------------------------------------------------------- the running engine


@dataclass(frozen=True, slots=True)
class EngineRuntimes:
    """What the running engine knows (from ``docker info``) next to what daemon.json says."""

    runtimes: dict  # name -> path, as the engine reports
    default_runtime: str | None
    knows: bool  # the engine has a runtime by the asked name
    toolkit_runtimes: tuple[str, ...]  # engine runtimes whose path is nvidia-container-runtime
    restart_needed: bool  # daemon.json (when given) says something the engine does not know yet
    reasons: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {
            "runtimes": self.runtimes,
            "default_runtime": self.default_runtime,
            "knows_runtime": self.knows,
            "toolkit_runtimes": list(self.toolkit_runtimes),
            "restart_needed": self.restart_needed,
            "reasons": list(self.reasons),
        }


def engine_runtimes(info: Mapping, name: str = "nvidia", daemon: DaemonJson | None = None) -> EngineRuntimes:
    """Compare ``docker info`` (``Runtimes``, ``DefaultRuntime``) with daemon.json when given."""
    raw = info.get("Runtimes") or {}
    runtimes = (
        {n: (e.get("path") if isinstance(e, Mapping) else None) for n, e in raw.items()}
        if isinstance(raw, Mapping)
        else {}
    )
    default = info.get("DefaultRuntime") or None
    knows = name in runtimes
    toolkit = tuple(n for n, e in raw.items() if _is_toolkit_runtime(e)) if isinstance(raw, Mapping) else ()
    reasons: list[str] = []
    if daemon is not None:
        for rname, entry in daemon.runtimes.items():
            p = entry.get("path") if isinstance(entry, Mapping) else None
            if rname not in runtimes:
                reasons.append(f'daemon.json registers runtime "{rname}" but the engine does not know it')
            elif p and runtimes.get(rname) and runtimes[rname] != p:
                reasons.append(f'runtime "{rname}": daemon.json path "{p}", engine path "{runtimes[rname]}"')
        want_default = daemon.default_runtime or "runc"
        if default is not None and want_default != default:
            reasons.append(f'daemon.json default-runtime "{want_default}", engine default "{default}"')
    return EngineRuntimes(runtimes, default, knows, toolkit, bool(reasons), tuple(reasons))
