"""The NVIDIA Container Toolkit's config.toml: where it is, what the toolkit reads from it, and
the debug-logging toggle.

Owns: locating the file (``locate_config``), parsing it with ``tomllib`` (``load_config``; a file
that does not parse is refused with the parser's line and column), the status an operator needs
(``ToolkitConfig.status()``: mode, log-level, ldconfig, no-cgroups, and for ``[nvidia-container-cli]``
and ``[nvidia-container-runtime]`` whether ``debug`` is on and where it writes, telling a commented
default from a set key), and the debug toggle as a *plan* (``plan_debug``) that the UI shows
before ``apply_plan`` writes it through ``gpudock.toolkit.atomic``.

The toggle is a line-level edit guided by a real TOML parse, never a re-render: turning debug on
uncomments the shipped ``#debug = "..."`` line of the right table (for another path than the
shipped line's, ``--path X``, that line stays and ours goes right after it), turning it off comments
that very line out again (or takes our added line away), so on-then-off gives back the original
bytes for any path. (``nvidia-ctk config --set``
re-renders the whole file and, up to 1.18, writes a default path back commented; see
nvidia-stack.md section 7.4.) After every edit the result is parsed again and compared with the
original: only the intended key may differ, or nothing is written.

Plain Python, no Textual.
"""

from __future__ import annotations

import copy
import errno
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from gpudock.host.root import HostRoot, NotRegularFileError
from gpudock.toolkit.atomic import (
    FileSnapshot,
    HostFile,
    WriteResult,
    atomic_write,
    edit_lock,
    explain,
    read_snapshot,
)

DEFAULT_PATH = "/etc/nvidia-container-runtime/config.toml"
RELATIVE_PATH = "nvidia-container-runtime/config.toml"

Component = Literal["hook", "runtime"]
# The hook's log is nvidia-container-cli's --debug file; the runtime has its own log.
DEBUG_TABLES: dict[str, str] = {"hook": "nvidia-container-cli", "runtime": "nvidia-container-runtime"}
DEFAULT_DEBUG_LOGS: dict[str, str] = {
    "hook": "/var/log/nvidia-container-toolkit.log",
    "runtime": "/var/log/nvidia-container-runtime.log",
}
# The paths the toolkit ships on its commented debug lines (the hook-era one included).
_SHIPPED_DEBUG_PATHS = frozenset(DEFAULT_DEBUG_LOGS.values()) | {"/var/log/nvidia-container-runtime-hook.log"}
# What the toolkit uses for debug when the key is unset: nothing for the CLI, /dev/null for the runtime.
_DEBUG_OFF_VALUES = ("", "/dev/null")

SettingState = Literal["set", "commented", "absent"]


class ConfigError(Exception):
    """config.toml cannot be used as asked; the message says what is wrong and what to do."""

    def __init__(self, message: str, path: str):
        super().__init__(message)
        self.path = path


class ConfigMissingError(ConfigError):
    pass


class ConfigParseError(ConfigError):
    def __init__(self, message: str, path: str, line: int | None, column: int | None):
        super().__init__(message, path)
        self.line = line
        self.column = column


class ConfigEditError(ConfigError):
    """The edit cannot be made safely (e.g. the result would not parse or would change more)."""


# --------------------------------------------------------------------------- locating


def host_file(root: str | HostRoot, path: str) -> str:
    """Where host path ``path`` under ``root`` is on this machine, every symlink on the way followed
    inside the root as after ``chroot(root)``, for showing to the operator. A link loop raises
    OSError (ELOOP): a lexically joined path could lead this machine's kernel out of the root. For
    reading or writing use ``HostFile(root, path)`` with ``gpudock.toolkit.atomic``, which walks the
    root with descriptors."""
    return (root if isinstance(root, HostRoot) else HostRoot(root or "/")).real(path)


@dataclass(frozen=True, slots=True)
class ConfigLocation:
    # Where the file is on this machine, for showing: under the root, with every symlink on the way
    # followed inside the root (as written when that fails, e.g. in a link loop). Never do I/O on
    # it: use ``file`` (``load_config(location)`` does).
    path: str
    # "--config", "NVIDIA_CTK_CONFIG_FILE_PATH", "XDG_CONFIG_HOME" or "default"
    source: str
    exists: bool
    # The path as the host names it ("/etc/nvidia-container-runtime/config.toml"), before links;
    # for --config, the path as given.
    host_path: str = ""
    # The root the host path is under (None: this machine, for --config).
    root: HostRoot | None = None
    # Why the file cannot be used although something is there (a link loop, a FIFO, a device, a
    # directory), in an operator's words; None when it is a regular file or simply absent.
    error: str | None = None

    @property
    def file(self) -> HostFile:
        if self.root is None:
            return HostFile.of(self.host_path or self.path)
        return HostFile(self.root, self.host_path, None)

    def to_json(self) -> dict:
        return {"path": self.path, "source": self.source, "exists": self.exists, "error": self.error}


def _probe(f: HostFile) -> tuple[bool, str | None]:
    """(is a regular file, why what is there cannot be used)."""
    try:
        st = f.root.stat(f.path)
    except (FileNotFoundError, NotADirectoryError):
        return False, None
    except OSError as e:  # a link loop, no permission to look
        return False, str(explain(e, f, "read"))
    if stat.S_ISREG(st.st_mode):
        return True, None
    if stat.S_ISDIR(st.st_mode):
        return False, str(explain(IsADirectoryError(errno.EISDIR, "Is a directory", f.shown), f, "read"))
    return False, str(explain(NotRegularFileError(f.shown, st.st_mode), f, "read"))


def locate_config(
    config: str | None = None, *, root: str | HostRoot = "/", environ: Mapping[str, str] | None = None
) -> ConfigLocation:
    """Find the config.toml the toolkit reads.

    ``config`` (the operator's ``--config``) wins, missing or not, and is taken as given (a path on
    this machine). Else the toolkit's overrides, where the file exists: ``$NVIDIA_CTK_CONFIG_FILE_PATH``,
    then ``$XDG_CONFIG_HOME/nvidia-container-runtime/config.toml`` (both under ``root``); else
    ``/etc/nvidia-container-runtime/config.toml`` under ``root``. An override that is not a regular
    file is skipped because our environment (often sudo's) is not the hook's: the hook runs with the
    container engine's environment, which normally sets neither. A relative override names no host
    path and is skipped too.

    Every path under ``root`` is looked up through :class:`~gpudock.host.root.HostRoot`: symlinks
    are followed inside the root as after ``chroot(root)``, so an absolute link in a copied host
    never reaches this machine's files; a link loop, a FIFO or a device is ``error``, never a guess.
    Never raises. The doctor uses this same lookup.
    """
    env = os.environ if environ is None else environ
    if config:
        f = HostFile.of(config)
        exists, error = _probe(f)
        return ConfigLocation(config, "--config", exists, config, None, error)
    hr = root if isinstance(root, HostRoot) else HostRoot(root or "/")
    candidates = []
    override = env.get("NVIDIA_CTK_CONFIG_FILE_PATH")
    if override and override.startswith("/"):
        candidates.append((override, "NVIDIA_CTK_CONFIG_FILE_PATH"))
    xdg = env.get("XDG_CONFIG_HOME")
    if xdg and xdg.startswith("/"):
        candidates.append((f"{xdg.rstrip('/')}/{RELATIVE_PATH}", "XDG_CONFIG_HOME"))
    for host_path, source in candidates:
        f = HostFile(hr, host_path)
        if _probe(f)[0]:
            return ConfigLocation(f.shown, source, True, host_path, hr)
    f = HostFile(hr, DEFAULT_PATH)
    exists, error = _probe(f)
    return ConfigLocation(f.shown, "default", exists, DEFAULT_PATH, hr, error)


# --------------------------------------------------------------------------- line scanner
#
# A small TOML line classifier: which lines are table headers, key/value lines (with their full
# dotted key path), continuation lines of a multi-line value, comments, and comments that hold a
# commented-out key ("#debug = ..."). The values themselves always come from tomllib; this only
# says *where* things are, and every edit is re-verified with tomllib.

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(slots=True)
class _Line:
    index: int  # 0-based
    body: str  # without the line ending
    eol: str  # "\n", "\r\n" or "" (last line without newline)
    kind: str = "other"  # blank, comment, header, kv, cont, other
    table: tuple[str, ...] = ()
    array_table: bool = False
    key: tuple[str, ...] | None = None  # kv: the full key path (table + dotted key)
    value_start: int | None = None  # kv: offset of the value in body
    continued: bool = False  # kv: the value goes on over the next lines
    ckey: tuple[str, ...] | None = None  # comment holding a key: full key path
    cvalue: Any = None  # comment holding a key: its value
    cprefix: str = ""  # comment holding a key: indentation + "#" + spaces before the key


def _basic_string_end(s: str, i: int) -> int:
    """s[i] == '"'; index just past the closing quote of a one-line basic string (or len(s))."""
    j = i + 1
    while j < len(s):
        c = s[j]
        if c == "\\":
            j += 2
            continue
        if c == '"':
            return j + 1
        j += 1
    return len(s)


def _parse_key(s: str, i: int) -> tuple[tuple[str, ...], int] | None:
    """Parse a (dotted) key at s[i:]; returns (parts, index after the key and trailing blanks)."""
    parts: list[str] = []
    while True:
        while i < len(s) and s[i] in " \t":
            i += 1
        if i >= len(s):
            return None
        c = s[i]
        if c == '"':
            end = _basic_string_end(s, i)
            try:
                parts.append(tomllib.loads(f"k = {s[i:end]}")["k"])
            except tomllib.TOMLDecodeError:
                return None
            i = end
        elif c == "'":
            end = s.find("'", i + 1)
            if end < 0:
                return None
            parts.append(s[i + 1 : end])
            i = end + 1
        else:
            m = _BARE_KEY.match(s, i)
            if not m:
                return None
            parts.append(m.group(0))
            i = m.end()
        while i < len(s) and s[i] in " \t":
            i += 1
        if i < len(s) and s[i] == ".":
            i += 1
            continue
        return tuple(parts), i


def _scan_value(s: str, i: int, depth: int, ml: str | None) -> tuple[int, str | None]:
    """Scan a value from s[i:], tracking bracket depth and an open multi-line string."""
    n = len(s)
    while i < n:
        if ml is not None:
            j = i
            while j < n:
                if ml == '"""' and s[j] == "\\":
                    j += 2
                    continue
                if s.startswith(ml, j):
                    break
                j += 1
            if j >= n:
                return depth, ml
            # a delimiter may be followed by up to two more quotes, which belong to the string
            # ('"""a""""' is 'a"'); the closing delimiter is the last three
            j += 3
            extra = 0
            while j < n and s[j] == ml[0] and extra < 2:
                j += 1
                extra += 1
            i, ml = j, None
            continue
        c = s[i]
        if c == "#":
            return depth, None
        if c == '"':
            if s.startswith('"""', i):
                ml, i = '"""', i + 3
            else:
                i = _basic_string_end(s, i)
            continue
        if c == "'":
            if s.startswith("'''", i):
                ml, i = "'''", i + 3
            else:
                end = s.find("'", i + 1)
                i = n if end < 0 else end + 1
            continue
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
        i += 1
    return depth, ml


def _split_lines(text: str) -> list[_Line]:
    # Split on "\n" only: str.splitlines() would also split on \x0b, \x1c, U+2028 ... and the
    # rejoined text would not be byte-identical.
    raw = text.split("\n")
    out: list[_Line] = []
    for i, piece in enumerate(raw):
        if i == len(raw) - 1:
            # the text after the last "\n": nothing, or a last line without a newline
            if piece:
                out.append(_Line(i, piece, ""))
            break
        if piece.endswith("\r"):
            out.append(_Line(i, piece[:-1], "\r\n"))
        else:
            out.append(_Line(i, piece, "\n"))
    return out


def _scan(text: str) -> list[_Line]:
    lines = _split_lines(text)
    table: tuple[str, ...] = ()
    array_table = False
    depth, ml = 0, None
    in_value = False
    for ln in lines:
        s = ln.body
        if in_value:
            ln.kind, ln.table, ln.array_table = "cont", table, array_table
            depth, ml = _scan_value(s, 0, depth, ml)
            in_value = depth > 0 or ml is not None
            continue
        stripped = s.lstrip(" \t")
        indent = s[: len(s) - len(stripped)]
        ln.table, ln.array_table = table, array_table
        if not stripped:
            ln.kind = "blank"
        elif stripped.startswith("#"):
            ln.kind = "comment"
            rest = stripped[1:]
            content = rest.lstrip(" \t")
            parsed = _parse_key(content, 0)
            if parsed and parsed[1] < len(content) and content[parsed[1]] == "=":
                try:
                    value = tomllib.loads(content)
                except tomllib.TOMLDecodeError:
                    value = None
                if value is not None:
                    for part in parsed[0]:
                        value = value[part]
                    ln.ckey = table + parsed[0]
                    ln.cvalue = value
                    ln.cprefix = indent + "#" + rest[: len(rest) - len(content)]
        elif stripped.startswith("["):
            ln.kind = "header"
            is_array = stripped.startswith("[[")
            parsed = _parse_key(stripped, 2 if is_array else 1)
            if parsed:
                table, array_table = parsed[0], is_array
                ln.table, ln.array_table = table, array_table
        else:
            parsed = _parse_key(s, 0)
            if parsed and parsed[1] < len(s) and s[parsed[1]] == "=":
                ln.kind = "kv"
                ln.key = table + parsed[0]
                vs = parsed[1] + 1
                while vs < len(s) and s[vs] in " \t":
                    vs += 1
                ln.value_start = vs
                depth, ml = _scan_value(s, vs, 0, None)
                in_value = depth > 0 or ml is not None
                ln.continued = in_value
    return lines


def _value_end(body: str, start: int) -> int:
    """End of a one-line string value starting at body[start]."""
    c = body[start : start + 1]
    if c == '"' and not body.startswith('"""', start):
        return _basic_string_end(body, start)
    if c == "'" and not body.startswith("'''", start):
        end = body.find("'", start + 1)
        return len(body) if end < 0 else end + 1
    # not a one-line string (a number, a bool ...): up to blanks or a comment
    m = re.compile(r"[^\s#]*").match(body, start)
    return m.end() if m else start


def _render_string(value: str, like: str) -> str:
    """A TOML string for ``value``, in the quoting style of the token ``like`` where possible."""
    if (
        like.startswith("'")
        and not like.startswith("'''")
        and "'" not in value
        and not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value)
    ):
        return f"'{value}'"
    return _basic_string(value)


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _basic_string(value: str) -> str:
    """A TOML basic string: control characters (DEL included, which JSON leaves raw) escaped."""
    out = []
    for ch in value:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


# --------------------------------------------------------------------------- status


@dataclass(frozen=True, slots=True)
class Setting:
    """One key as the toolkit reads it: ``value`` is the effective value (the default when unset)."""

    key: str  # dotted, e.g. "nvidia-container-runtime.mode"
    value: Any
    state: SettingState  # set in the file, only present as a commented line, or absent
    line: int | None  # 1-based line of the key, or of the commented line
    default: Any
    commented_value: Any = None  # the value on the commented line, when there is one

    def to_json(self) -> dict:
        return {
            "key": self.key,
            "value": self.value,
            "state": self.state,
            "line": self.line,
            "default": self.default,
            "commented_value": self.commented_value,
        }


@dataclass(frozen=True, slots=True)
class DebugStatus:
    component: str  # "hook" or "runtime"
    table: str
    enabled: bool
    log_path: str | None  # where it writes while enabled; None when off
    state: SettingState
    line: int | None
    commented_path: str | None  # the path on the commented (shipped) line, if any

    def to_json(self) -> dict:
        return {
            "component": self.component,
            "table": self.table,
            "enabled": self.enabled,
            "log_path": self.log_path,
            "state": self.state,
            "line": self.line,
            "commented_path": self.commented_path,
        }


@dataclass(frozen=True, slots=True)
class ConfigStatus:
    path: str
    settings: dict[str, Setting]  # "mode", "log-level", "ldconfig", "no-cgroups"
    debug: dict[str, DebugStatus]  # "hook", "runtime"

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "settings": {k: v.to_json() for k, v in self.settings.items()},
            "debug": {k: v.to_json() for k, v in self.debug.items()},
        }


# (status name, key path, default)
_SETTINGS: tuple[tuple[str, tuple[str, ...], Any], ...] = (
    ("mode", ("nvidia-container-runtime", "mode"), "auto"),
    ("log-level", ("nvidia-container-runtime", "log-level"), "info"),
    # the toolkit normalises "@/sbin/ldconfig" to "@/sbin/ldconfig.real" when that file exists
    ("ldconfig", ("nvidia-container-cli", "ldconfig"), "@/sbin/ldconfig"),
    ("no-cgroups", ("nvidia-container-cli", "no-cgroups"), False),
)


def _lookup(data: Mapping, path: tuple[str, ...]) -> tuple[bool, Any]:
    cur: Any = data
    for part in path:
        if not isinstance(cur, Mapping) or part not in cur:
            return False, None
        cur = cur[part]
    return True, cur


@dataclass(frozen=True)
class ToolkitConfig:
    """A parsed config.toml and the snapshot it was parsed from (for a later safe write)."""

    path: str
    snapshot: FileSnapshot
    text: str
    data: dict
    lines: list = field(repr=False, compare=False, default_factory=list)

    def _set_line(self, keypath: tuple[str, ...]) -> _Line | None:
        for ln in self.lines:
            if ln.kind == "kv" and ln.key == keypath and not ln.array_table:
                return ln
        return None

    def _commented_lines(self, keypath: tuple[str, ...]) -> list[_Line]:
        return [ln for ln in self.lines if ln.ckey == keypath and not ln.array_table]

    def setting(self, keypath: tuple[str, ...], default: Any) -> Setting:
        present, value = _lookup(self.data, keypath)
        commented = self._commented_lines(keypath)
        cval = commented[0].cvalue if commented else None
        dotted = ".".join(keypath)
        if present:
            ln = self._set_line(keypath)
            return Setting(dotted, value, "set", ln.index + 1 if ln else None, default, cval)
        if commented:
            return Setting(dotted, default, "commented", commented[0].index + 1, default, cval)
        return Setting(dotted, default, "absent", None, default)

    def debug_status(self, component: str) -> DebugStatus:
        table = DEBUG_TABLES[component]
        default = "" if component == "hook" else "/dev/null"
        s = self.setting((table, "debug"), default)
        enabled = s.state == "set" and isinstance(s.value, str) and s.value not in _DEBUG_OFF_VALUES
        cpath = s.commented_value if isinstance(s.commented_value, str) else None
        return DebugStatus(component, table, enabled, s.value if enabled else None, s.state, s.line, cpath)

    def status(self) -> ConfigStatus:
        settings = {name: self.setting(kp, d) for name, kp, d in _SETTINGS}
        debug = {c: self.debug_status(c) for c in DEBUG_TABLES}
        return ConfigStatus(self.path, settings, debug)


def key_line(text: str, keypath: tuple[str, ...]) -> tuple[int, str, SettingState] | None:
    """Where ``keypath`` sits in config text: (1-based line, the line verbatim, "set" or
    "commented"), a set key before a commented one; None when the file has neither. For evidence
    (the doctor quotes the line); values still come from ``tomllib``."""
    lines = _scan(text)
    for ln in lines:
        if ln.kind == "kv" and ln.key == keypath and not ln.array_table:
            return ln.index + 1, ln.body, "set"
    for ln in lines:
        if ln.ckey == keypath and not ln.array_table:
            return ln.index + 1, ln.body, "commented"
    return None


_POS = re.compile(r"\(at line (\d+), column (\d+)\)")


def _deepest(text: str) -> tuple[int, int, int]:
    """(depth, line, column) of the most deeply nested ``[`` or ``{`` of a value, outside strings
    and comments: where to point when tomllib gives up on the nesting (RecursionError)."""
    depth = best = 0
    best_at = 0
    i, n = 0, len(text)
    header = True  # at the start of a line a "[" opens a table header, not an array
    while i < n:
        c = text[i]
        if c == "\n":
            header = depth == 0
        elif c in " \t\r":
            pass
        elif c == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        elif c in "\"'":
            q = text[i : i + 3] if text.startswith(c * 3, i) else c
            j = i + len(q)
            while j < n and not text.startswith(q, j):
                j += 2 if (c == '"' and text[j] == "\\") else 1
                if len(q) == 1 and j < n and text[j] == "\n":
                    break
            i = j + len(q)
            header = False
            continue
        elif c in "[{" and not (header and c == "["):
            depth += 1
            if depth > best:
                best, best_at = depth, i
        elif c in "]}" and depth:
            depth -= 1
        else:
            header = False
        if c == "[" and header:
            j = text.find("\n", i)  # a table header: the rest of its line
            i = n if j < 0 else j
            continue
        i += 1
    line = text.count("\n", 0, best_at) + 1
    return best, line, best_at - text.rfind("\n", 0, best_at)


def parse_toml(text: str, path: str) -> dict:
    """tomllib.loads, with failures as ConfigParseError carrying the parser's line and column."""
    try:
        return tomllib.loads(text)
    except RecursionError:
        depth, line, col = _deepest(text)
        raise ConfigParseError(
            f"{path} is not usable TOML at line {line}, column {col}: arrays or inline tables nested {depth} levels "
            "deep, more than any config.toml needs (or a parser can follow); fix the file by hand (gpudock left it "
            "untouched)",
            path,
            line,
            col,
        ) from None
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = _POS.search(msg)
        line, col = (int(m.group(1)), int(m.group(2))) if m else (None, None)
        where = f" at line {line}, column {col}" if m else ""
        reason = _POS.sub("", msg).strip()
        raise ConfigParseError(
            f"{path} is not valid TOML{where}: {reason}; fix the file by hand (gpudock left it untouched)",
            path,
            line,
            col,
        ) from e


def _decode(data: bytes, path: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        before = data[: e.start]
        line = before.count(b"\n") + 1
        col = e.start - (before.rfind(b"\n") + 1) + 1
        raise ConfigParseError(
            f"{path} is not valid UTF-8 at line {line}, column {col}; fix the file by hand (gpudock left it untouched)",
            path,
            line,
            col,
        ) from e


def config_from_snapshot(snapshot: FileSnapshot) -> ToolkitConfig:
    path = snapshot.path
    if not snapshot.exists:
        raise ConfigMissingError(
            f"{path} does not exist; write the toolkit's defaults with `gpudock toolkit defaults --config {path}`",
            path,
        )
    text = _decode(snapshot.data, path)
    data = parse_toml(text, path)
    return ToolkitConfig(path, snapshot, text, data, _scan(text))


def load_config(path: str | HostFile | ConfigLocation) -> ToolkitConfig:
    """Read and parse ``path`` (a location from ``locate_config``, a HostFile, or a path on this
    machine). Raises ConfigMissingError, ConfigParseError and AtomicWriteError (PermissionDeniedError,
    FileAccessError: a link loop, a FIFO or device, a file too big)."""
    return config_from_snapshot(read_snapshot(path.file if isinstance(path, ConfigLocation) else path))


# --------------------------------------------------------------------------- the debug toggle


@dataclass(frozen=True)
class EditPlan:
    """One edit of config.toml, computed but not written: what the confirmation shows.

    ``action``: "uncomment", "comment", "set" (the value of an existing line changes), "add" (a
    new line, and a table header when ``added_header``), "remove" (our line goes, the shipped
    commented line beside it stays), or "noop" (already as asked; nothing will be written).
    ``line`` is 1-based; for "add" it is the line the key will have.
    """

    path: str
    component: str
    table: str
    key: str
    action: str
    line: int | None
    old_line: str | None
    new_line: str | None
    new_data: bytes
    snapshot: FileSnapshot = field(repr=False)
    enable: bool = True
    log_path: str | None = None  # where the log goes after the edit (None: off)
    added_header: str | None = None

    @property
    def changed(self) -> bool:
        return self.action != "noop"

    def describe(self) -> str:
        if not self.changed:
            state = f"on ({self.log_path})" if self.enable else "off"
            return f"{self.path}: {self.table} debug is already {state}; nothing to change"
        if self.action == "add":
            head = f" under a new [{self.table}] table" if self.added_header else ""
            return f"{self.path} line {self.line}: add {self.new_line!r}{head}"
        if self.action == "remove":
            return f"{self.path} line {self.line}: remove {self.old_line!r} (the shipped #debug line stays)"
        return f"{self.path} line {self.line}: {self.old_line!r} -> {self.new_line!r}"

    @property
    def note(self) -> str | None:
        """A warning worth showing with the confirmation, or None."""
        if self.changed and self.enable and self.log_path in _SHIPPED_DEBUG_PATHS:
            return (
                "toolkit packages 1.14-1.19 comment a debug key that holds its default path out again "
                "when they re-render config.toml on upgrade; a log path other than the default survives that"
            )
        return None

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "note": self.note,
            "component": self.component,
            "table": self.table,
            "key": self.key,
            "action": self.action,
            "line": self.line,
            "old_line": self.old_line,
            "new_line": self.new_line,
            "added_header": self.added_header,
            "log_path": self.log_path,
            "changed": self.changed,
        }


def _comment_prefix_style(lines: list[_Line]) -> str:
    """ "#" or "# ": how this file writes its commented-out keys (the toolkit's own use "#")."""
    tight = spaced = 0
    for ln in lines:
        if ln.ckey is not None:
            if ln.cprefix.lstrip(" \t") == "#":
                tight += 1
            else:
                spaced += 1
    return "# " if spaced > tight else "#"


def _file_eol(lines: list[_Line]) -> str:
    for ln in lines:
        if ln.eol:
            return "\r\n" if ln.eol == "\r\n" else "\n"
    return "\n"


def _replace_value(body: str, start: int, new_value: str) -> str:
    end = _value_end(body, start)
    return body[:start] + _render_string(new_value, body[start:end]) + body[end:]


def _uncommented(ln: _Line) -> str:
    indent = ln.cprefix[: len(ln.cprefix) - len(ln.cprefix.lstrip(" \t"))]
    return indent + ln.body[len(ln.cprefix) :]


def plan_debug(config: ToolkitConfig, component: str, enable: bool, log_path: str | None = None) -> EditPlan:
    """Plan turning the hook's ("hook") or the runtime's ("runtime") debug log on or off.

    On: uncomment the ``#debug = ...`` line of the table (the one holding ``log_path`` if several),
    putting ``log_path`` in when given; with no such line, change the existing key's value if it
    is set, or add the key in the table. Off: comment out the ``debug`` line. The plan's new
    content has been verified to parse and to differ from the original only in that key.
    """
    if component not in DEBUG_TABLES:
        raise ValueError(f"component must be 'hook' or 'runtime', not {component!r}")
    table = DEBUG_TABLES[component]
    keypath = (table, "debug")
    lines = config.lines
    eol_default = _file_eol(lines)
    status = config.debug_status(component)
    set_ln = config._set_line(keypath)
    present, current = _lookup(config.data, keypath)

    def plan(action, idx, old, new, new_lines, new_value, added_header=None) -> EditPlan:
        return EditPlan(
            path=config.path,
            component=component,
            table=table,
            key="debug",
            action=action,
            line=None if idx is None else idx + 1,
            old_line=old,
            new_line=new,
            new_data=("".join(b + e for b, e in new_lines)).encode("utf-8") if new_lines else config.snapshot.data,
            snapshot=config.snapshot,
            enable=enable,
            log_path=new_value if enable else None,
            added_header=added_header,
        )

    base = [(ln.body, ln.eol) for ln in lines]

    if not enable:
        if not status.enabled:
            return plan("noop", None, None, None, None, None)
        if set_ln is None or set_ln.continued:
            raise ConfigEditError(
                f"{config.path}: the {table} debug key is not on one line gpudock can comment out; edit it by hand",
                config.path,
            )
        if config._commented_lines(keypath):
            # The shipped "#debug = ..." line is still there (`on --path X` added its line beside
            # it): take ours away, so that on-then-off gives back the original bytes for any X.
            removed_eol = base.pop(set_ln.index)[1]
            if not removed_eol and set_ln.index > 0:  # it ended the file without a newline
                base[set_ln.index - 1] = (base[set_ln.index - 1][0], "")
            result = plan("remove", set_ln.index, set_ln.body, None, base, None)
            _verify(config, result, keypath, None)
            return result
        stripped = set_ln.body.lstrip(" \t")
        indent = set_ln.body[: len(set_ln.body) - len(stripped)]
        new = indent + _comment_prefix_style(lines) + stripped
        base[set_ln.index] = (new, set_ln.eol)
        result = plan("comment", set_ln.index, set_ln.body, new, base, None)
        _verify(config, result, keypath, None)
        return result

    # enable
    if present and status.enabled and (log_path is None or log_path == current):
        return plan("noop", None, None, None, None, current)
    if present:
        if set_ln is None or set_ln.continued or set_ln.value_start is None:
            raise ConfigEditError(
                f"{config.path}: the {table} debug key is not on one line gpudock can change; edit it by hand",
                config.path,
            )
        commented = config._commented_lines(keypath)
        value = log_path or (
            commented[0].cvalue
            if commented and isinstance(commented[0].cvalue, str) and commented[0].cvalue not in _DEBUG_OFF_VALUES
            else DEFAULT_DEBUG_LOGS[component]
        )
        new = _replace_value(set_ln.body, set_ln.value_start, value)
        base[set_ln.index] = (new, set_ln.eol)
        result = plan("set", set_ln.index, set_ln.body, new, base, value)
        _verify(config, result, keypath, value)
        return result

    commented = [ln for ln in config._commented_lines(keypath) if isinstance(ln.cvalue, str)]
    if commented:
        chosen = next((ln for ln in commented if ln.cvalue == log_path), commented[0])
        new = _uncommented(chosen)
        value = chosen.cvalue
        if (log_path is not None and log_path != chosen.cvalue) or value in _DEBUG_OFF_VALUES:
            value = log_path or DEFAULT_DEBUG_LOGS[component]
            start = _parse_key(new, 0)
            assert start is not None  # the scanner parsed this very key
            vs = start[1] + 1
            while vs < len(new) and new[vs] in " \t":
                vs += 1
            new = _replace_value(new, vs, value)
            # Another path than the shipped line's: keep that line as it is and add ours after
            # it, in its layout, so that `off` can give the file back byte for byte.
            if chosen.eol:
                base.insert(chosen.index + 1, (new, chosen.eol))
            else:  # the shipped line ends the file without a newline
                base[chosen.index] = (chosen.body, eol_default)
                base.insert(chosen.index + 1, (new, ""))
            result = plan("add", chosen.index + 1, None, new, base, value)
            _verify(config, result, keypath, value)
            return result
        base[chosen.index] = (new, chosen.eol)
        result = plan("uncomment", chosen.index, chosen.body, new, base, value)
        _verify(config, result, keypath, value)
        return result

    # No line at all: add the key at the end of the table, or a new table at the end of the file.
    value = log_path or DEFAULT_DEBUG_LOGS[component]
    rendered = f"debug = {_render_string(value, '')}"
    header_idx = next(
        (ln.index for ln in lines if ln.kind == "header" and ln.table == (table,) and not ln.array_table), None
    )
    if header_idx is not None:
        last = header_idx
        for ln in lines[header_idx + 1 :]:
            if ln.kind == "header":
                break
            if ln.kind in ("kv", "cont"):
                last = ln.index
        ref = lines[last]
        indent = ref.body[: len(ref.body) - len(ref.body.lstrip(" \t"))]
        new = indent + rendered
        if not base[last][1]:  # the line we insert after ends the file without a newline
            base[last] = (base[last][0], eol_default)
            base.insert(last + 1, (new, ""))
        else:
            base.insert(last + 1, (new, eol_default))
        result = plan("add", last + 1, None, new, base, value)
    else:
        if base and not base[-1][1]:
            base[-1] = (base[-1][0], eol_default)
        if base and base[-1][0].strip():
            base.append(("", eol_default))
        header = f"[{table}]"
        base.append((header, eol_default))
        base.append((rendered, eol_default))
        result = plan("add", len(base) - 1, None, rendered, base, value, added_header=header)
    _verify(config, result, keypath, value)
    return result


def _verify(config: ToolkitConfig, plan: EditPlan, keypath: tuple[str, ...], value: str | None) -> None:
    """The planned file must parse and differ from the original in ``keypath`` only."""
    try:
        new_data = tomllib.loads(plan.new_data.decode("utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigEditError(
            f"{config.path}: gpudock's edit would not parse ({e}); nothing written - edit the file by hand",
            config.path,
        ) from e
    expected = copy.deepcopy(config.data)
    parent = expected
    for part in keypath[:-1]:
        parent = parent.setdefault(part, {})
    if value is None:
        parent.pop(keypath[-1], None)
    else:
        parent[keypath[-1]] = value
    if new_data != expected:
        raise ConfigEditError(
            f"{config.path}: gpudock's edit would change more than {'.'.join(keypath)}; nothing written - "
            "edit the file by hand",
            config.path,
        )


def apply_plan(plan: EditPlan, *, backup: bool = True) -> WriteResult | None:
    """Write a plan. Refuses (FileChangedError) if the file changed since the plan was made.

    Returns None for a "noop" plan (nothing written).
    """
    if not plan.changed:
        return None
    return atomic_write(plan.snapshot.file or plan.path, plan.new_data, plan.snapshot, backup=backup)


def set_debug(
    path: str | HostFile | ConfigLocation, component: str, enable: bool, log_path: str | None = None
) -> EditPlan:
    """Load, plan and apply in one go (no confirmation), holding the file's lock throughout so
    that concurrent gpudock writers take turns and none is lost: for scripts and tests."""
    with edit_lock(path.file if isinstance(path, ConfigLocation) else path):
        plan = plan_debug(load_config(path), component, enable, log_path)
        apply_plan(plan)
    return plan


# --------------------------------------------------------------------------- defaults

# `nvidia-ctk config default` as rendered by v1.17.7-1.17.9 (nvidia-stack.md section 7.2 f).
_DEFAULT_TEMPLATE = """\
#accept-nvidia-visible-devices-as-volume-mounts = false
#accept-nvidia-visible-devices-envvar-when-unprivileged = true
disable-require = false
supported-driver-capabilities = "compat32,compute,display,graphics,ngx,utility,video"
#swarm-resource = "DOCKER_RESOURCE_GPU"

[nvidia-container-cli]
#debug = "/var/log/nvidia-container-toolkit.log"
environment = []
#ldcache = "/etc/ld.so.cache"
ldconfig = "{ldconfig}"
load-kmods = true
#no-cgroups = false
#path = "/usr/bin/nvidia-container-cli"
#root = "/run/nvidia/driver"
#user = "root:video"

[nvidia-container-runtime]
#debug = "/var/log/nvidia-container-runtime.log"
log-level = "info"
mode = "auto"
runtimes = ["docker-runc", "runc", "crun"]

[nvidia-container-runtime.modes]

[nvidia-container-runtime.modes.cdi]
annotation-prefixes = ["cdi.k8s.io/"]
default-kind = "nvidia.com/gpu"
spec-dirs = ["/etc/cdi", "/var/run/cdi"]

[nvidia-container-runtime.modes.csv]
mount-spec-path = "/etc/nvidia-container-runtime/host-files-for-container.d"

[nvidia-container-runtime.modes.legacy]
cuda-compat-mode = "ldconfig"

[nvidia-container-runtime-hook]
path = "nvidia-container-runtime-hook"
skip-mode-detection = false

[nvidia-ctk]
path = "nvidia-ctk"
"""


def default_config_text(root: str | HostRoot = "/", ldconfig: str | None = None) -> str:
    """The toolkit's default config.toml (1.17 rendering). ``ldconfig`` defaults like the
    toolkit's: "@/sbin/ldconfig.real" where that file exists (Debian/Ubuntu), else "@/sbin/ldconfig"."""
    if ldconfig is None:
        hr = root if isinstance(root, HostRoot) else HostRoot(root or "/")
        ldconfig = "@/sbin/ldconfig.real" if hr.exists("/sbin/ldconfig.real") else "@/sbin/ldconfig"
    return _DEFAULT_TEMPLATE.format(ldconfig=ldconfig)


def write_defaults(
    path: str | HostFile | ConfigLocation, *, root: str | HostRoot = "/", ldconfig: str | None = None
) -> WriteResult:
    """Write the toolkit's default file at ``path`` (a location from ``locate_config``, a HostFile,
    or a path on this machine), which must not exist (refused otherwise; a FIFO, a device or a
    directory there is refused too). Missing directories are made, inside the root."""
    f = path.file if isinstance(path, ConfigLocation) else HostFile.of(path)
    with edit_lock(f, make_parents=True):
        snap = read_snapshot(f)
        if snap.exists:
            raise ConfigError(
                f"{snap.path} already exists; gpudock writes the defaults only where there is no file", snap.path
            )
        return atomic_write(f, default_config_text(root, ldconfig).encode("utf-8"), snap, make_parents=True)
