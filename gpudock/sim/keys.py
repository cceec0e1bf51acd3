"""The keys of a scenario file's TOML tables: what type and range each takes, checked up front.

One small set of typed checks for :mod:`gpudock.sim.scenario` (driver, GPUs, processes, MIG,
Docker, images, containers) and :mod:`gpudock.sim.host_spec` (``[host]``), so that every key of
the file is refused the same way: with its key path, what is expected and what was given, never a
traceback further in. A table's keys are a ``{name: Key(...)}`` mapping: adding a key to a table
is one line there. :func:`check_table` refuses a key the table does not know, naming the ones it
does, a missing required one, and a value of the wrong type or outside its range.

TOML's booleans are Python ints and its floats may be ``inf`` or ``nan``: an integer key never
takes ``true``, a number key never an infinity. Strings must be UTF-8 text (a table built in code
may hold a lone surrogate) without NUL, which no C string can carry.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["SpecError", "Key", "check_table", "check_value", "get", "unknown", "strings", "key_path", "shown", "number"]


class SpecError(ValueError):
    """A key that cannot be used: the message starts with where it is (the file, the key path)."""


# float stands for "a number" (a TOML integer or float)
TYPE_WORDS = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "a table",
}


def key_path(where: str, key: str | int) -> str:
    """``where`` and then ``key``: ``t.toml: [docker].version``, ``t.toml: gpu``, ``x.env[2]``."""
    if isinstance(key, int):
        return f"{where}[{key}]"
    if where.endswith(":"):
        return f"{where} {key}"
    return f"{where}.{key}"


def _is(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def number(x: float) -> str:
    """A bound as an operator reads it: 16777216, not 1.67772e+07."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _number_words(lo: float | None, hi: float | None, kind: type) -> str:
    noun = "an integer" if kind is int else "a number"
    if lo is not None and hi is not None:
        return f"{noun} from {number(lo)} to {number(hi)}"
    if lo is not None:
        return f"{noun} >= {number(lo)}"
    if hi is not None:
        return f"{noun} <= {number(hi)}"
    return noun


@dataclass(frozen=True)
class Key:
    """What one key takes.

    ``kind``: str, int, float (any number), bool, list or dict. ``lo``/``hi``: the range of a
    number (inclusive), or of a list's length. ``choices``: the only values a string may take.
    ``max_bytes``: the longest a string may be in UTF-8 (the C buffer the value is copied into,
    less its NUL). ``pattern``: a regular expression a string must match, with ``words`` saying
    what that is in an operator's terms. ``each``: the Key of every item of a list. ``check``: a
    further check, called as ``check(value, where)``, that raises :class:`SpecError`.
    ``required``: the table must have it.
    """

    kind: type
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    max_bytes: int | None = None
    pattern: str | None = None
    words: str | None = None
    each: Key | None = None
    check: Callable[[Any, str], None] | None = None
    required: bool = False
    empty: bool = True  # a string may be ""

    def expected(self) -> str:
        if self.words:
            return self.words
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.kind in (int, float):
            return _number_words(self.lo, self.hi, self.kind)
        if self.kind is list and self.each is not None:
            return f"a list of {_plural(self.each)}"
        return TYPE_WORDS[self.kind]


def _plural(k: Key) -> str:
    return {str: "strings", int: "integers", float: "numbers", bool: "booleans", list: "lists", dict: "tables"}[k.kind]


def check_value(value: Any, key: Key, where: str) -> Any:
    """``value`` when it is what ``key`` takes; else SpecError naming ``where``."""
    if not _is(value, key.kind):
        raise SpecError(f"{where}: expected {key.expected()}, got {shown(value)}")
    if key.kind is str:
        _text(value, where)
        if not key.empty and not value:
            raise SpecError(f"{where}: expected {key.expected()}, got an empty string")
        if key.choices and value not in key.choices:
            raise SpecError(f"{where}: expected one of {', '.join(key.choices)}, got {shown(value)}")
        if key.max_bytes is not None and len(value.encode()) > key.max_bytes:
            raise SpecError(f"{where}: at most {key.max_bytes} bytes (NVML's buffer), got {len(value.encode())}")
        if key.pattern is not None and value and not re.fullmatch(key.pattern, value):
            raise SpecError(f"{where}: expected {key.expected()}, got {shown(value)}")
    elif key.kind in (int, float):
        if isinstance(value, float) and not math.isfinite(value):
            raise SpecError(f"{where}: expected {key.expected()}, got {value!r}")
        if (key.lo is not None and value < key.lo) or (key.hi is not None and value > key.hi):
            raise SpecError(f"{where}: expected {key.expected()}, got {shown(value)}")
    elif key.kind is list:
        if key.hi is not None and len(value) > key.hi:
            raise SpecError(f"{where}: at most {number(key.hi)} items, got {len(value)}")
        if key.each is not None:
            for i, item in enumerate(value):
                check_value(item, key.each, key_path(where, i))
    elif key.kind is dict:
        for k in value:
            _text(k, f"{where} (key {k!r})")
    if key.check is not None:
        key.check(value, where)
    return value


def check_table(table: Any, keys: Mapping[str, Key], where: str) -> dict:
    """``table`` when it is a table whose every key is one of ``keys`` and takes what its Key
    says, with every required key present. Checked in the order of ``keys``."""
    if not isinstance(table, dict):
        raise SpecError(f"{_colon(where)} expected a table, got {shown(table)}")
    unknown(table, keys, where)
    for name, key in keys.items():
        # None is a table built in code saying "not given" (TOML has no null)
        if table.get(name) is not None:
            check_value(table[name], key, key_path(where, name))
        elif key.required:
            raise SpecError(f"{_colon(where)} missing required key '{name}'")
    return table


def get(table: dict, key: str, where: str, kind: type, default: Any) -> Any:
    """``table[key]`` when it is a ``kind`` (TOML booleans are not integers), ``default`` when absent."""
    if key not in table:
        return default
    value = table[key]
    if not _is(value, kind):
        raise SpecError(f"{where}.{key}: expected {TYPE_WORDS[kind]}, got {shown(value)}")
    if kind is str:
        _text(value, f"{where}.{key}")
    return value


def unknown(table: dict, keys, where: str) -> None:
    """Refuse keys that are not in ``keys``, naming those that are."""
    extra = sorted(str(k) for k in set(table) - set(keys))
    if extra:
        named = ", ".join(shown(k, 40) if not k.isidentifier() else k for k in extra[:5])
        if len(extra) > 5:
            named += f" and {len(extra) - 5} more"
        raise SpecError(f"{_colon(where)} unknown key(s) {named}; expected: {', '.join(sorted(keys))}")


def strings(value: list, where: str) -> tuple[str, ...]:
    """A list's items, each a string."""
    for i, v in enumerate(value):
        if not isinstance(v, str):
            raise SpecError(f"{where}[{i}]: expected a string, got {shown(v)}")
        _text(v, f"{where}[{i}]")
    return tuple(value)


def _colon(where: str) -> str:
    """``where`` followed by one colon (the top of a file is ``"t.toml:"`` already)."""
    return where if where.endswith(":") else where + ":"


def _text(value: str, where: str) -> None:
    if "\0" in value:
        raise SpecError(f"{where}: a NUL character (\\u0000) cannot be in a value, got {shown(value)}")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise SpecError(f"{where}: not UTF-8 text (a lone surrogate), got {shown(value)}") from None


def shown(value: Any, limit: int = 80) -> str:
    """A value as the message shows it: repr, cut to ``limit`` characters."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        # repr() of an integer of more than 4,300 digits raises ValueError
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    try:
        text = repr(value)
    except RecursionError:
        return "a value nested too deeply to show"
    return text if len(text) <= limit else text[: limit - 1] + "…"
