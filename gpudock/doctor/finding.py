"""The doctor's output value: a Finding with its evidence and the fix, immutable and JSON-ready.

A finding's ``id`` is stable (scripts and the README key on it); ``severity`` is one of
``ok``, ``info``, ``warning``, ``error``. Every finding carries the evidence it read: for each
fact, the ``source`` (a host path, or "docker info", "NVML"), the ``line`` as read (the file's
line verbatim, or a rendering of what a stat/API call returned) and the ``value`` extracted from
it. ``fix`` is what the operator does, in words; empty when there is nothing to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["ok", "info", "warning", "error"]
SEVERITIES: tuple[str, ...] = ("ok", "info", "warning", "error")
_RANK = {s: i for i, s in enumerate(SEVERITIES)}


def severity_rank(s: str) -> int:
    return _RANK.get(s, 0)


@dataclass(frozen=True, slots=True)
class Evidence:
    source: str  # "/proc/driver/nvidia/version", "/etc/ld.so.cache", "docker info", "NVML"
    line: str | None  # what was read, verbatim; None when the source could not be read
    value: str | None  # the fact taken from it ("535.104.05"); None when absent/unreadable

    def to_json(self) -> dict:
        return {"source": self.source, "line": self.line, "value": self.value}

    def __str__(self) -> str:
        line = self.line if self.line is not None else "(absent or not readable)"
        # Show the extracted value only when the line does not already say it.
        v = (
            ""
            if self.value is None or (self.line is not None and self.line.rstrip().endswith(self.value))
            else f"  [{self.value}]"
        )
        return f"{self.source}: {line}{v}"


@dataclass(frozen=True, slots=True)
class Finding:
    id: str
    severity: Severity
    title: str
    summary: str
    evidence: tuple[Evidence, ...] = ()
    fix: str = ""
    # Further structured facts for scripts (e.g. the containers named); kept out of equality.
    data: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.severity not in _RANK:
            raise ValueError(f"severity must be one of {SEVERITIES}, not {self.severity!r}")
        if not isinstance(self.evidence, tuple):
            object.__setattr__(self, "evidence", tuple(self.evidence))

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def evidence_from(self, source: str) -> tuple[Evidence, ...]:
        return tuple(e for e in self.evidence if e.source == source)

    def to_json(self) -> dict:
        out = {
            "id": self.id,
            "severity": self.severity,
            "title": self.title,
            "summary": self.summary,
            "evidence": [e.to_json() for e in self.evidence],
            "fix": self.fix,
        }
        if self.data:
            out["data"] = self.data
        return out
