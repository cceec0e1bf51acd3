"""Which GPUs an operator asked for, in the order they asked.

This module owns turning what a person types ("2,0", "GPU-4f3a…", "0000:05:00.0", an ``NV_GPU``
string, "all") into an ordered tuple of :class:`gpudock.model.Gpu` from one
:class:`gpudock.model.HostSnapshot`. Order is kept: "2,0" is not "0,2" (nvidia-docker 1.0 lost it
in a Go map; the first card a process sees is the first one named here).

gpudock's own rules are strict: a card named twice, or named once by index and once by UUID, is an
error, not a silent merge. :func:`parse_plugin_devices` implements the old plugin's looser rules
(``dev=`` of ``/docker/cli``) for ``gpudock serve`` only.

Plain Python; no Textual.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from gpudock.model import Gpu, HostSnapshot, sysfs_bus_id

__all__ = ["Selection", "SelectionError", "parse_selection", "parse_plugin_devices"]


class SelectionError(ValueError):
    """The GPU selection cannot be honoured; the message says which item and why."""


@dataclass(frozen=True, slots=True)
class Selection:
    """An ordered choice of GPUs. ``all`` is True when the operator said "all" (rendered as
    ``all`` where a mode has that word, instead of listing every card)."""

    gpus: tuple[Gpu, ...]
    all: bool = False

    @property
    def indices(self) -> tuple[int, ...]:
        return tuple(g.index for g in self.gpus)

    def __len__(self) -> int:
        return len(self.gpus)


_SPLIT = re.compile(r"[\s,]+")
_MAX_INDEX_DIGITS = 9
_INDEX = re.compile(r"\d+")
# Bus ids: "0000:05:00.0", "00000000:05:00.0", "05:00.0", any case.
_BUS = re.compile(r"(?:[0-9a-fA-F]{1,8}:)?[0-9a-fA-F]{1,2}:[0-9a-fA-F]{1,2}\.[0-7]")


def _tokens(items: str | Iterable[str]) -> list[str]:
    if isinstance(items, str):
        items = [items]
    out: list[str] = []
    for item in items:
        out.extend(t for t in _SPLIT.split(item.strip()) if t)
    return out


def _kind(token: str) -> str:
    if _INDEX.fullmatch(token):
        return "index"
    if token[:4].upper() == "GPU-":
        return "UUID"
    if _BUS.fullmatch(token):
        return "bus id"
    return "unknown"


def _shown(token: str) -> str:
    """A token as a message quotes it: whole when short, else its start and its length (a
    pasted 5,000-digit number must not fill the terminal)."""
    if len(token) <= 40:
        return repr(token)
    return f"{token[:20]!r}… ({len(token)} characters)"


# More digits than any index can have: int() of more than 4,300 digits raises ValueError, and a
# GPU index is below 64 on any host NVML supports.
_MAX_INDEX_DIGITS = 6


def _describe(g: Gpu) -> str:
    return f"GPU {g.index}" + (f" ({g.uuid})" if g.uuid else "")


def _resolve(token: str, snapshot: HostSnapshot) -> Gpu:
    kind = _kind(token)
    gpus = snapshot.gpus
    if kind == "index":
        digits = token.lstrip("0") or "0"
        shown = token if len(token) <= 24 else f"{token[:12]}…({len(token)} digits)"
        if len(digits) > _MAX_INDEX_DIGITS:  # int() would refuse 4,300 digits; no host has that many GPUs
            raise SelectionError(
                f"unknown GPU {shown!r}: this host has no GPU with that NVML index (indices: {_range_text(gpus)})"
            )
        idx = int(digits)
        for g in gpus:
            if g.index == idx:
                return g
        raise SelectionError(
            f"unknown GPU {shown!r}: this host has no GPU with NVML index {idx} (indices: {_range_text(gpus)})"
        )
    if kind == "UUID":
        want = token.lower()
        exact = [g for g in gpus if g.uuid and g.uuid.lower() == want]
        if exact:
            return exact[0]
        prefixed = [g for g in gpus if g.uuid and g.uuid.lower().startswith(want)]
        if len(prefixed) == 1:
            return prefixed[0]
        if len(prefixed) > 1:
            raise SelectionError(
                f"ambiguous GPU {_shown(token)}: it is the start of the UUIDs of "
                + ", ".join(_describe(g) for g in prefixed)
                + "; give more of the UUID"
            )
        raise SelectionError(f"unknown GPU {_shown(token)}: no GPU on this host has that UUID")
    if kind == "bus id":
        want = sysfs_bus_id(token)
        for g in gpus:
            if g.sysfs_bus_id == want:
                return g
        raise SelectionError(f"unknown GPU {_shown(token)}: no GPU on this host is at PCI bus id {want}")
    raise SelectionError(
        f"unknown GPU {_shown(token)}: name a GPU by NVML index (0), UUID (GPU-…), PCI bus id (0000:05:00.0) or 'all'"
    )


def _range_text(gpus: tuple[Gpu, ...]) -> str:
    idx = sorted(g.index for g in gpus)
    if not idx:
        return "none"
    if len(idx) > 1 and idx == list(range(idx[0], idx[-1] + 1)):
        return f"{idx[0]}-{idx[-1]}"
    return ", ".join(map(str, idx))


def parse_selection(items: str | Iterable[str], snapshot: HostSnapshot) -> Selection:
    """Resolve ``items`` (strings, each possibly an ``NV_GPU``-style list split on commas or
    whitespace) against ``snapshot``, keeping their order.

    Raises :class:`SelectionError` for: an empty selection, an unknown GPU, a GPU named twice
    (also by two spellings of the same kind), an index and a UUID (or bus id) for the same card,
    and "all" mixed with other items.
    """
    tokens = _tokens(items)
    if not tokens:
        raise SelectionError("no GPU selected: name at least one (index, UUID, bus id) or 'all'")
    if any(t.lower() == "all" for t in tokens):
        if len(tokens) > 1:
            raise SelectionError("'all' cannot be combined with other GPUs: " + " ".join(tokens))
        if not snapshot.gpus:
            raise SelectionError("'all' selects nothing: this host has no GPUs")
        return Selection(tuple(sorted(snapshot.gpus, key=lambda g: g.index)), all=True)

    chosen: list[Gpu] = []
    named_by: dict[int, str] = {}  # GPU index -> the token that first named it
    for tok in tokens:
        g = _resolve(tok, snapshot)
        first = named_by.get(g.index)
        if first is not None:
            k1, k2 = _kind(first), _kind(tok)
            if k1 == k2:
                raise SelectionError(f"GPU {g.index} is named twice ({_shown(first)} and {_shown(tok)})")
            raise SelectionError(
                f"{k1} {_shown(first)} and {k2} {_shown(tok)} are the same card ({_describe(g)}); name it once"
            )
        named_by[g.index] = tok
        chosen.append(g)
    return Selection(tuple(chosen))


_GO_ATOI = re.compile(r"[+-]?\d+")


def parse_plugin_devices(value: str, snapshot: HostSnapshot) -> Selection:
    """The ``dev=`` parameter of nvidia-docker-plugin's ``/docker/cli``, by its rules.

    Split on single spaces (``+`` in the URL is already a space); empty or ``*`` is every GPU in
    index order; an item is a decimal index or a ``GPU-`` prefix of a UUID (first match); anything
    else raises ``SelectionError("invalid device: <item>")``, the plugin's exact text. Duplicates
    merge silently as the plugin did; unlike the plugin, the order given is kept.
    """
    ids = value.split(" ")
    gpus = tuple(sorted(snapshot.gpus, key=lambda g: g.index))
    if len(ids) == 1 and ids[0] in ("", "*"):
        return Selection(gpus, all=True)
    chosen: dict[int, Gpu] = {}
    for item in ids:
        found: Gpu | None = None
        if item.startswith("GPU-"):
            found = next((g for g in gpus if g.uuid and g.uuid.startswith(item)), None)
        elif _GO_ATOI.fullmatch(item) and len(item.lstrip("+-").lstrip("0")) <= _MAX_INDEX_DIGITS:
            i = int(item)  # longer numbers are out of range anyway (Go's Atoi: "value out of range")
            if 0 <= i < len(gpus):
                found = gpus[i]
        if found is None:
            raise SelectionError(f"invalid device: {item}")
        chosen.setdefault(found.index, found)
    return Selection(tuple(chosen.values()))
