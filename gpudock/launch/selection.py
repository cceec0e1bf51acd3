"""Which GPUs an operator asked for, in the order they asked.

This module owns turning what a person types ("2,0", "GPU-4f3a…", "0000:05:00.0", an ``NV_GPU``
string, "all", a MIG device "6:0" or "MIG-…") into an ordered tuple of :class:`gpudock.model.Gpu`
from one :class:`gpudock.model.HostSnapshot`, with the MIG device chosen on each where one was
(:attr:`Selection.migs`). Order is kept: "2,0" is not "0,2" (nvidia-docker 1.0 lost it
in a Go map; the first card a process sees is the first one named here).

gpudock's own rules are strict: a card named twice, or named once by index and once by UUID, is an
error, not a silent merge; so is a MIG device named twice, or named beside its whole GPU. Two MIG
devices of one GPU are two items (the GPU appears twice in ``gpus``, each with its MIG device).
:func:`parse_plugin_devices` implements the old plugin's looser rules
(``dev=`` of ``/docker/cli``) for ``gpudock serve`` only.

Plain Python; no Textual.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from gpudock.model import Gpu, HostSnapshot, MigDevice, sysfs_bus_id

__all__ = ["Selection", "SelectionError", "parse_selection", "parse_plugin_devices"]


class SelectionError(ValueError):
    """The GPU selection cannot be honoured; the message says which item and why."""


@dataclass(frozen=True, slots=True)
class Selection:
    """An ordered choice of GPUs. ``all`` is True when the operator said "all" (rendered as
    ``all`` where a mode has that word, instead of listing every card)."""

    gpus: tuple[Gpu, ...]
    all: bool = False
    # Parallel to ``gpus``: the MIG device chosen on that GPU, None for the whole GPU (() : none)
    migs: tuple[MigDevice | None, ...] = ()

    def __post_init__(self) -> None:
        if self.migs and len(self.migs) != len(self.gpus):
            raise ValueError("Selection.migs must be parallel to gpus")

    @property
    def items(self) -> tuple[tuple[Gpu, MigDevice | None], ...]:
        """(GPU, its MIG device or None) in the order chosen."""
        return tuple(zip(self.gpus, self.migs or (None,) * len(self.gpus)))

    @property
    def cards(self) -> tuple[Gpu, ...]:
        """The physical GPUs, each once, in the order first chosen."""
        return tuple({g.index: g for g in self.gpus}.values())

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
# A MIG device by "<GPU index>:<MIG index>", as NVIDIA_VISIBLE_DEVICES and nvidia-ctk's CDI names take it.
_MIG_INDEX = re.compile(r"(\d{1,6}):(\d{1,6})")


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
    if token[:4].upper() == "MIG-":
        return "MIG UUID"
    if _MIG_INDEX.fullmatch(token):
        return "MIG index"
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


def _resolve_mig(token: str, kind: str, snapshot: HostSnapshot) -> tuple[Gpu, MigDevice]:
    if kind == "MIG UUID":
        want = token.lower()
        for g in snapshot.gpus:
            for m in g.mig_devices:
                if m.uuid.lower() == want:
                    return g, m
        raise SelectionError(f"unknown MIG device {_shown(token)}: no MIG device on this host has that UUID")
    gi, mi = (int(x) for x in _MIG_INDEX.fullmatch(token).groups())
    g = next((g for g in snapshot.gpus if g.index == gi), None)
    if g is None:
        raise SelectionError(
            f"unknown MIG device {_shown(token)}: this host has no GPU {gi} (indices: {_range_text(snapshot.gpus)})"
        )
    m = next((m for m in g.mig_devices if m.index == mi), None)
    if m is None:
        have = ", ".join(f"{gi}:{m.index}" for m in g.mig_devices)
        why = f"its MIG devices are {have}" if have else "MIG is off on it, or it has no MIG devices"
        raise SelectionError(f"unknown MIG device {_shown(token)}: GPU {gi} has no MIG device {mi} ({why})")
    return g, m


def _mig_name(g: Gpu, m: MigDevice) -> str:
    return f"MIG device {g.index}:{m.index}"


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
        f"unknown GPU {_shown(token)}: name a GPU by NVML index (0), UUID (GPU-…), PCI bus id (0000:05:00.0), "
        "a MIG device (0:1, MIG-…) or 'all'"
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
    migs: list[MigDevice | None] = []
    named_by: dict[int, str] = {}  # GPU index -> the token that first named it (whole)
    mig_named_by: dict[str, str] = {}  # MIG UUID -> the token that named it
    mig_parents: dict[int, str] = {}  # GPU index -> a token that named one of its MIG devices
    for tok in tokens:
        kind = _kind(tok)
        if kind in ("MIG UUID", "MIG index"):
            g, m = _resolve_mig(tok, kind, snapshot)
            if m.uuid in mig_named_by:
                raise SelectionError(
                    f"{_mig_name(g, m)} is named twice ({_shown(mig_named_by[m.uuid])} and {_shown(tok)})"
                )
            if g.index in named_by:
                raise SelectionError(
                    f"GPU {g.index} ({_shown(named_by[g.index])}) and its {_mig_name(g, m)} ({_shown(tok)}) "
                    "overlap: name the whole GPU or its MIG devices"
                )
            mig_named_by[m.uuid] = tok
            mig_parents.setdefault(g.index, tok)
            chosen.append(g)
            migs.append(m)
            continue
        g = _resolve(tok, snapshot)
        if g.index in mig_parents:
            raise SelectionError(
                f"GPU {g.index} ({_shown(tok)}) and its MIG device ({_shown(mig_parents[g.index])}) overlap: "
                "name the whole GPU or its MIG devices"
            )
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
        migs.append(None)
    return Selection(tuple(chosen), migs=tuple(migs) if any(migs) else ())


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
