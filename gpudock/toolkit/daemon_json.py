"""Docker's /etc/docker/daemon.json, as far as the NVIDIA runtime is concerned.

Owns: reading the file (``load_daemon_json``) with a strict JSON parser of its own that knows where
every value is (``parse_json``): malformed JSON, ``NaN``/``Infinity``, a number no float holds
(``1e400``), a duplicate key, a lone surrogate, nesting deeper than ``MAX_DEPTH`` are refused with
the file, line and column - dockerd would refuse them too, or silently take the last duplicate.
Then: whether a runtime for the toolkit is registered (``runtimes.<name>.path``, any runtime whose
path ends in ``nvidia-container-runtime``) and which runtime is the default; planning the
registration (``plan_register``) as an *edit* of the text: only the ``runtimes.<name>`` entry (its
``path``) and ``default-runtime`` change, every other byte of the file stays (one-line arrays and
objects, a compact file, ``1.5e1``, tab indentation, CRLF line ends), and what is added follows the
file's own layout; and comparing with the running engine's ``docker info`` (``engine_runtimes``).
The nvidia-docker2 package overwrote this file and ``nvidia-ctk runtime configure`` re-renders it;
we do neither. Writes go through ``gpudock.toolkit.atomic``.

Plain Python, no Textual, no Docker connection (the caller passes the ``docker info`` dict).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from json.decoder import JSONDecodeError, scanstring
from typing import Any

from gpudock.host.root import HostRoot
from gpudock.toolkit.atomic import FileSnapshot, HostFile, WriteResult, atomic_write, edit_lock, read_snapshot

DEFAULT_PATH = "/etc/docker/daemon.json"
RUNTIME_BINARY = "nvidia-container-runtime"
RESTART_HINT = "restart the Docker engine for the change to take effect: systemctl restart docker"
# No daemon.json nests beyond a handful of levels; this bounds the parser and every comparison.
MAX_DEPTH = 200
_UNTOUCHED = "fix it by hand (gpudock left it untouched)"


class DaemonJsonError(Exception):
    def __init__(self, message: str, path: str, line: int | None = None, column: int | None = None):
        super().__init__(message)
        self.path = path
        self.line = line
        self.column = column


class RegisterArgumentError(DaemonJsonError):
    """A runtime name or path that cannot be written (empty, not UTF-8, control characters)."""


def daemon_json_file(path: str | None = None, *, root: str | HostRoot = "/") -> HostFile:
    """The daemon.json to read and edit: ``path`` (``--daemon-json``, a path on this machine) when
    given, else /etc/docker/daemon.json under ``root``, reached inside the root."""
    if path:
        return HostFile.of(path)
    return HostFile(root if isinstance(root, HostRoot) else HostRoot(root or "/"), DEFAULT_PATH)


def _is_toolkit_runtime(entry: Any) -> bool:
    if not isinstance(entry, Mapping):
        return False
    path = entry.get("path")
    return isinstance(path, str) and os.path.basename(path.rstrip("/")) == RUNTIME_BINARY


# --------------------------------------------------------------------------- the parser


class _Node:
    """A JSON value and where it is: ``text[start:end]``. Objects keep their members in order as
    (key, key_start, key_end, node)."""

    __slots__ = ("kind", "start", "end", "value", "members")

    def __init__(self, kind: str, start: int, value: Any = None) -> None:
        self.kind = kind
        self.start = start
        self.end = start
        self.value = value
        self.members: list[tuple[str, int, int, _Node]] = []

    def member(self, key: str) -> tuple[int, tuple[str, int, int, _Node]] | None:
        for i, m in enumerate(self.members):
            if m[0] == key:
                return i, m
        return None


_WS = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_SURROGATE = re.compile("[\ud800-\udfff]")
_NOT_JSON = ("NaN", "Infinity", "-Infinity")


def _where(text: str, pos: int) -> tuple[int, int]:
    return text.count("\n", 0, pos) + 1, pos - text.rfind("\n", 0, pos)


class _Bad(Exception):
    def __init__(self, pos: int, msg: str) -> None:
        self.pos, self.msg = pos, msg


def _string(text: str, pos: int) -> tuple[str, int]:
    try:
        value, end = scanstring(text, pos + 1, True)
    except JSONDecodeError as e:
        raise _Bad(e.pos, e.msg) from None
    if _SURROGATE.search(value):
        raise _Bad(pos, "the string holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is not a character")
    return value, end


def _scalar(text: str, pos: int) -> _Node:
    c = text[pos : pos + 1]
    if c == '"':
        value, end = _string(text, pos)
        node = _Node("string", pos, value)
    elif c in ("t", "f", "n"):
        for word, value in (("true", True), ("false", False), ("null", None)):
            if text.startswith(word, pos):
                node = _Node("literal", pos, value)
                end = pos + len(word)
                break
        else:
            raise _Bad(pos, "expected a value")
    else:
        for word in _NOT_JSON:
            if text.startswith(word, pos):
                raise _Bad(pos, f"{word} is not JSON (dockerd cannot read it); write a number or null")
        m = _NUMBER.match(text, pos)
        if not m or (c != "-" and not c.isdigit()):
            raise _Bad(pos, "expected a value")
        tok = m.group(0)
        f = float(tok)
        if math.isinf(f):
            shown = tok if len(tok) <= 24 else f"{tok[:20]}... ({len(tok)} characters)"
            raise _Bad(pos, f"the number {shown} is too large for a 64-bit float (dockerd cannot read it)")
        node = _Node("number", pos, f if (m.group(1) or m.group(2)) else int(tok))
        end = m.end()
    node.end = end
    return node


def parse_json(text: str) -> _Node:
    """Parse ``text`` as one strict JSON value, without recursion. Raises ``_Bad`` (position, reason)."""
    n = len(text)
    ws = _WS.match
    stack: list[_Node] = []
    pending: list[tuple[str, int, int]] = []  # per open object: the key waiting for its value
    pos = ws(text, 0).end()

    def key_at(p: int) -> int:
        if text[p : p + 1] != '"':
            raise _Bad(p, "expected a key in double quotes")
        key, kend = _string(text, p)
        obj = stack[-1]
        if key in obj.value:
            first = next(m for m in obj.members if m[0] == key)
            line, _ = _where(text, first[1])
            raise _Bad(p, f'duplicate key "{key}" (first at line {line}); dockerd would take only one of them')
        q = ws(text, kend).end()
        if text[q : q + 1] != ":":
            raise _Bad(q, "expected ':' after the key")
        pending.append((key, p, kend))
        return ws(text, q + 1).end()

    while True:
        if pos >= n:
            raise _Bad(pos, "expected a value, found the end of the file")
        c = text[pos]
        if c in "{[":
            if len(stack) >= MAX_DEPTH:
                raise _Bad(pos, f"nested more than {MAX_DEPTH} levels deep")
            node = _Node("object" if c == "{" else "array", pos, {} if c == "{" else [])
            stack.append(node)
            pos = ws(text, pos + 1).end()
            close = "}" if c == "{" else "]"
            if text[pos : pos + 1] != close:
                if c == "{":
                    pos = key_at(pos)
                continue
            pos += 1
            node.end = pos
            stack.pop()
        else:
            node = _scalar(text, pos)
            pos = node.end
        # a complete value: hand it to its container, closing as many as end here
        while True:
            if not stack:
                end = ws(text, pos).end()
                if end != n:
                    raise _Bad(end, "extra data after the end of the JSON value")
                return node
            parent = stack[-1]
            if parent.kind == "object":
                key, ks, ke = pending.pop()
                parent.value[key] = node.value
                parent.members.append((key, ks, ke, node))
            else:
                parent.value.append(node.value)
            pos = ws(text, pos).end()
            c = text[pos : pos + 1]
            if c == ",":
                pos = ws(text, pos + 1).end()
                if parent.kind == "object":
                    pos = key_at(pos)
                break
            if c == ("}" if parent.kind == "object" else "]"):
                pos += 1
                parent.end = pos
                stack.pop()
                node = parent
                continue
            raise _Bad(pos, f"expected ',' or '{'}' if parent.kind == 'object' else ']'}'")


@dataclass(frozen=True)
class DaemonJson:
    """daemon.json as read: ``data`` is {} for a missing or blank file (dockerd treats both as empty)."""

    path: str
    snapshot: FileSnapshot = field(repr=False)
    data: dict
    exists: bool
    text: str = field(default="", repr=False)

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


def _parse_text(text: str, path: str) -> _Node:
    try:
        return parse_json(text)
    except _Bad as e:
        line, col = _where(text, e.pos)
        raise DaemonJsonError(
            f"{path} is not valid JSON at line {line}, column {col}: {e.msg}; {_UNTOUCHED}", path, line, col
        ) from None


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
            f"{path} is not valid UTF-8 at line {line}, column {col}; {_UNTOUCHED}", path, line, col
        ) from e
    if not text.strip():
        return DaemonJson(path, snapshot, {}, True, text)
    node = _parse_text(text, path)
    if node.kind != "object":
        raise DaemonJsonError(
            f"{path} must hold a JSON object, not {type(node.value).__name__}; {_UNTOUCHED}", path, 1, 1
        )
    return DaemonJson(path, snapshot, node.value, True, text)


def load_daemon_json(path: str | HostFile = DEFAULT_PATH) -> DaemonJson:
    """Read ``path`` (a HostFile, or a path on this machine). Raises DaemonJsonError (with line,
    column) and AtomicWriteError (PermissionDeniedError, FileAccessError)."""
    return parse_daemon_json(read_snapshot(path))


# --------------------------------------------------------------------------- editing the text


@dataclass(frozen=True, slots=True)
class _Layout:
    """How the file writes JSON, read off the file itself."""

    eol: str  # "\n" or "\r\n"
    key_sep: str  # between a key and its value: ": ", ":" ...
    item_sep: str  # between the members of a one-line object, comma included: ", ", ","
    unit: str  # one level of indentation in a multi-line object
    ascii_only: bool  # \u-escape non-ASCII in what we add (the file has none)


def _line_start(text: str, pos: int) -> int:
    return text.rfind("\n", 0, pos) + 1


def _indent_before(text: str, pos: int) -> str | None:
    """The blanks from the start of the line to ``pos``, or None when something else is there."""
    lead = text[_line_start(text, pos) : pos]
    return lead if not lead.strip(" \t") else None


def _layout(text: str, root: _Node) -> _Layout:
    eol = "\r\n" if "\r\n" in text else "\n"
    key_sep, item_sep, unit = ": ", ", ", None
    objects = [root]
    seen_key = seen_item = False
    while objects and not (seen_key and seen_item and unit):
        obj = objects.pop(0)
        for i, (_k, _ks, ke, node) in enumerate(obj.members):
            between = text[ke : node.start]
            if not seen_key and "\n" not in between:
                key_sep, seen_key = between, True
            if i and not seen_item:
                gap = text[obj.members[i - 1][3].end : obj.members[i][1]]
                if "\n" not in gap:
                    item_sep, seen_item = gap, True
            if node.kind == "object":
                objects.append(node)
        if unit is None and obj.members:
            inner = _indent_before(text, obj.members[0][1])
            outer = _indent_before(text, obj.end - 1)
            if inner and outer is not None and inner.startswith(outer) and len(inner) > len(outer):
                unit = inner[len(outer) :]
    if not seen_item and not key_sep.endswith((" ", "\t")):
        item_sep = ","  # a compact file: {"a":1,"b":2}
    return _Layout(eol, key_sep, item_sep, unit or "    ", text.isascii())


def _render(value: Any, lay: _Layout, multiline: bool, indent: str) -> str:
    """``value`` as the file would write it, for a place indented by ``indent``."""
    if not multiline or not isinstance(value, (dict, list)) or not value:
        return json.dumps(value, ensure_ascii=lay.ascii_only, separators=(lay.item_sep, lay.key_sep))
    out = json.dumps(value, ensure_ascii=lay.ascii_only, indent=lay.unit, separators=(",", lay.key_sep))
    return out.replace("\n", lay.eol + indent)


def _key(key: str, lay: _Layout) -> str:
    return json.dumps(key, ensure_ascii=lay.ascii_only)


def _multiline(text: str, obj: _Node) -> bool:
    return "\n" in text[obj.start : obj.end]


def _member_indent(text: str, obj: _Node, lay: _Layout) -> str:
    if obj.members:
        got = _indent_before(text, obj.members[-1][1])
        if got is not None:
            return got
    outer = _indent_before(text, obj.end - 1)
    if outer is None:
        outer = _indent_before(text, obj.start) or ""
    return outer + lay.unit


def _edit_add(text: str, obj: _Node, key: str, value: Any, lay: _Layout) -> str:
    """Add member ``key: value`` at the end of object ``obj``."""
    multi = _multiline(text, obj)
    indent = _member_indent(text, obj, lay)
    member = _key(key, lay) + lay.key_sep + _render(value, lay, multi, indent)
    if obj.members:
        at = obj.members[-1][3].end
        glue = "," + lay.eol + indent if multi else lay.item_sep
        return text[:at] + glue + member + text[at:]
    at = obj.start + 1
    return text[:at] + (lay.eol + indent if multi else "") + member + text[at:]


def _edit_replace(text: str, obj: _Node, node: _Node, value: Any, lay: _Layout) -> str:
    """Replace value ``node`` (a member of ``obj``) by ``value``."""
    multi = _multiline(text, obj)
    indent = _member_indent(text, obj, lay)
    return text[: node.start] + _render(value, lay, multi, indent) + text[node.end :]


def _edit_remove(text: str, obj: _Node, index: int) -> str:
    members = obj.members
    _k, ks, _ke, node = members[index]
    if len(members) == 1:
        return text[: obj.start + 1] + text[node.end :]
    if index < len(members) - 1:
        return text[:ks] + text[members[index + 1][1] :]
    return text[: members[index - 1][3].end] + text[node.end :]


# --------------------------------------------------------------------------- registering


@dataclass(frozen=True)
class RegisterPlan:
    """The edit ``plan_register`` computed: ``changes`` says each change in words; empty: nothing to do."""

    path: str
    name: str
    runtime_path: str
    changes: tuple[str, ...]
    new_data: bytes
    snapshot: FileSnapshot = field(repr=False)
    restart_needed: bool = True  # true whenever something changes: dockerd reads the file at start
    kept: str | None = None  # why an existing registration was left as it is

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
            "kept": self.kept,
            "restart_needed": self.changed and self.restart_needed,
            "restart_hint": RESTART_HINT if self.changed else None,
        }


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _check_argument(what: str, value: str, where: str) -> None:
    if not value:
        raise RegisterArgumentError(f"the runtime {what} must not be empty; nothing written to {where}", where)
    if _SURROGATE.search(value):
        raise RegisterArgumentError(
            f"the runtime {what} {value.encode('utf-8', 'surrogateescape')!r} is not valid UTF-8; "
            f"nothing written to {where}",
            where,
        )
    if _CONTROL.search(value):
        raise RegisterArgumentError(
            f"the runtime {what} {value!r} holds control characters; nothing written to {where}", where
        )


def plan_register(
    doc: DaemonJson,
    path: str | None = None,
    name: str = "nvidia",
    default: bool | None = None,
) -> RegisterPlan:
    """Plan ``runtimes.<name>.path = path`` as an edit of the file's text.

    ``path`` None: keep the path of a runtime already registered under ``name`` (a working
    ``/usr/local/nvidia/toolkit/nvidia-container-runtime`` stays), else ``nvidia-container-runtime``.
    ``default``: True makes ``<name>`` the default runtime; False removes ``default-runtime`` if it
    names ``<name>`` (dockerd falls back to runc); None leaves it. Other fields of an existing
    ``runtimes.<name>`` entry (``runtimeArgs``), every other key and every other byte stay.
    """
    _check_argument("name", name, doc.path)
    if path is not None:
        _check_argument("path", path, doc.path)
    runtimes = doc.data.get("runtimes")
    if runtimes is not None and not isinstance(runtimes, dict):
        raise DaemonJsonError(f'{doc.path}: "runtimes" is not an object; {_UNTOUCHED}', doc.path)
    entry = (runtimes or {}).get(name)
    kept = None
    if path is None:
        if doc.registered(name):
            path = entry["path"]
            kept = f'runtime "{name}" is registered with path "{path}"; kept (give --path to change it)'
        else:
            path = RUNTIME_BINARY
    changes: list[str] = []
    text = doc.text if doc.exists and doc.text.strip() else ""
    if not text:
        data: dict = {"runtimes": {name: {"path": path}}}
        changes.append(f'add runtime "{name}" with path "{path}"')
        if default is True:
            data["default-runtime"] = name
            changes.append(f'default-runtime: null -> "{name}"')
        new = json.dumps(data, indent=4, ensure_ascii=True) + "\n"
        return _verified(doc, name, path, default, changes, new, kept)

    root = _parse_text(text, doc.path)
    lay = _layout(text, root)
    rt = root.member("runtimes")
    if rt is None:
        text = _edit_add(text, root, "runtimes", {name: {"path": path}}, lay)
        changes.append(f'add runtime "{name}" with path "{path}"')
    else:
        rt_node = rt[1][3]
        found = rt_node.member(name)
        if found is None:
            text = _edit_add(text, rt_node, name, {"path": path}, lay)
            changes.append(f'add runtime "{name}" with path "{path}"')
        elif found[1][3].kind != "object":
            text = _edit_replace(text, rt_node, found[1][3], {"path": path}, lay)
            changes.append(f'add runtime "{name}" with path "{path}"')
        else:
            entry_node = found[1][3]
            p = entry_node.member("path")
            if p is None:
                text = _edit_add(text, entry_node, "path", path, lay)
                changes.append(f'runtime "{name}": path None -> "{path}"')
            elif p[1][3].value != path:
                text = _edit_replace(text, entry_node, p[1][3], path, lay)
                changes.append(f'runtime "{name}": path "{p[1][3].value}" -> "{path}"')

    current_default = doc.data.get("default-runtime")
    if default is True and current_default != name:
        root = parse_json(text)
        d = root.member("default-runtime")
        if d is None:
            text = _edit_add(text, root, "default-runtime", name, lay)
        else:
            text = _edit_replace(text, root, d[1][3], name, lay)
        changes.append(f'default-runtime: {json.dumps(current_default)} -> "{name}"')
    elif default is False and current_default == name:
        root = parse_json(text)
        d = root.member("default-runtime")
        assert d is not None
        text = _edit_remove(text, root, d[0])
        changes.append(f'remove default-runtime "{name}" (the engine falls back to runc)')
    if not changes:
        return RegisterPlan(doc.path, name, path, (), doc.snapshot.data, doc.snapshot, False, kept)
    return _verified(doc, name, path, default, changes, text, kept)


def _verified(
    doc: DaemonJson, name: str, path: str, default: bool | None, changes: list[str], new: str, kept: str | None
) -> RegisterPlan:
    """The edited text must parse and hold exactly what was there plus the change."""
    try:
        after = parse_json(new).value
    except _Bad as e:  # pragma: no cover - a bug in the editor, refused rather than written
        raise DaemonJsonError(
            f"{doc.path}: gpudock's edit would not parse ({e.msg}); nothing written", doc.path
        ) from None
    want = dict(doc.data)
    runtimes = dict(want.get("runtimes") or {})
    entry = runtimes.get(name)
    runtimes[name] = (dict(entry) if isinstance(entry, dict) else {}) | {"path": path}
    want["runtimes"] = runtimes
    if default is True:
        want["default-runtime"] = name
    elif default is False and want.get("default-runtime") == name:
        del want["default-runtime"]
    order_kept = [k for k in after if k in doc.data] == [k for k in doc.data if k in after]
    if after != want or not order_kept:
        raise DaemonJsonError(  # pragma: no cover - as above
            f"{doc.path}: gpudock's edit would change more than the runtime entry; nothing written", doc.path
        )
    return RegisterPlan(doc.path, name, path, tuple(changes), new.encode("utf-8"), doc.snapshot, True, kept)


def apply_register(plan: RegisterPlan, *, backup: bool = True) -> WriteResult | None:
    """Write the plan (refused if the file changed since it was read); None when nothing changes."""
    if not plan.changed:
        return None
    return atomic_write(plan.snapshot.file or plan.path, plan.new_data, plan.snapshot, backup=backup, make_parents=True)


def register(
    daemon_json: str | HostFile = DEFAULT_PATH,
    path: str | None = None,
    name: str = "nvidia",
    default: bool | None = None,
) -> RegisterPlan:
    """Load, plan and write in one go, holding the file's lock throughout: concurrent gpudock
    writers take turns, each merging into what the one before wrote, so none is lost. The
    returned plan says what changed and whether to restart."""
    with edit_lock(daemon_json, make_parents=True):
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
