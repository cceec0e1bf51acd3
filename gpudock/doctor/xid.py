"""NVIDIA Xid events in kernel log text (failures.md §16): a small pure parser, no I/O.

The driver reports GPU faults to the kernel log as

    NVRM: Xid (PCI:0000:06:00): 79, pid=1234, name=python3, GPU has fallen off the bus.

(older drivers: ``NVRM: Xid (0000:06:00): 79, GPU has fallen off the bus.``), and newer drivers
also say, without an Xid number,

    NVRM: The NVIDIA GPU 0000:b3:00.0 (PCI ID: 10de:2330) installed in this system has fallen off the bus
      and is not responding to commands.   (one line in the log)

Syslog files put a timestamp and host in front: classic ``Nov 23 10:01:02 host kernel: [ 12.3] ...``
or RFC 3339 ``2024-05-01T10:01:02.123456+00:00 host kernel: ...``. :func:`parse` returns one
:class:`XidEvent` per such line, with the time when the prefix gives one.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime

FALLEN_OFF = "fallen off the bus"

# code -> (severity, meaning). Sources: failures.md §16; NVIDIA's Xid catalog.
XIDS: dict[int, tuple[str, str]] = {
    79: ("error", "GPU has fallen off the bus"),
    48: ("error", "double-bit ECC error"),
    95: ("error", "uncontained ECC error"),
    119: ("error", "GSP RPC timeout"),
    120: ("error", "GSP error"),
    92: ("warning", "high single-bit ECC error rate"),
    94: ("warning", "contained ECC error"),
    63: ("warning", "ECC page retirement or row remapping event"),
    64: ("warning", "ECC page retirement or row remapper recording failure"),
    74: ("warning", "NVLink error"),
    13: ("info", "graphics engine exception (usually an application fault)"),
    31: ("info", "GPU memory page fault (usually an application fault)"),
    43: ("info", "GPU stopped processing (usually an application fault)"),
    45: ("info", "preemptive cleanup after an application stopped (usually an application fault)"),
}
APP_FAULTS = frozenset({13, 31, 43, 45})

_BUS = r"(?:[0-9a-fA-F]{4,8}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}(?:\.[0-7])?"
_XID = re.compile(r"NVRM: Xid \((?:PCI:)?(?P<bus>" + _BUS + r")[^)]*\): (?P<code>\d+)(?:,\s*(?P<rest>.*))?")
_OFF = re.compile(r"NVRM: .*?GPU (?:at )?(?:PCI:)?(?P<bus>" + _BUS + r")\b.*" + FALLEN_OFF)
_PID = re.compile(r"\bpid=(?P<pid>'?[^,\s]+'?),\s*name=(?P<name>[^,]*),\s*")
_ISO = re.compile(r"^(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)\s")
_BSD = re.compile(r"^([A-Z][a-z]{2}) {1,2}(\d{1,2}) (\d\d):(\d\d):(\d\d)\s")
_MONTHS = {
    m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)
}


@dataclass(frozen=True, slots=True)
class XidEvent:
    code: int | None  # None: "fallen off the bus" said without an Xid number
    bus: tuple[int, int, int] | None  # (domain, bus, device) of the GPU
    line: str  # the log line, verbatim
    when: float | None = None  # epoch seconds from the syslog prefix; None when it has none
    pid: str | None = None
    process: str | None = None
    message: str = ""  # the driver's text after the code

    @property
    def severity(self) -> str:
        return severity(self.code)

    @property
    def meaning(self) -> str:
        if self.code is None:
            return "GPU has fallen off the bus"
        return XIDS.get(self.code, ("", self.message or "see NVIDIA's Xid catalog"))[1]

    @property
    def bus_id(self) -> str | None:
        """ "0000:06:00.0", the form sysfs and /proc/driver/nvidia/gpus use."""
        return None if self.bus is None else f"{self.bus[0]:04x}:{self.bus[1]:02x}:{self.bus[2]:02x}.0"


def severity(code: int | None) -> str:
    """The severity of an Xid (None: fallen off the bus). Codes not in :data:`XIDS` are ``info``."""
    if code is None:
        return "error"
    return XIDS.get(code, ("info", ""))[0]


def bus_key(bus_id: str | None) -> tuple[int, int, int] | None:
    """(domain, bus, device) of a PCI id in any of the forms the driver and NVML print:
    "00000000:05:00.0" (NVML), "0000:06:00" (Xid), "PCI:0000:06:00", "06:00.0"; None when it is none."""
    if not bus_id:
        return None
    s = bus_id.strip()
    if s.upper().startswith("PCI:"):
        s = s[4:]
    s = s.split(".", 1)[0]
    parts = s.split(":")
    if len(parts) == 2:
        parts = ["0", *parts]
    if len(parts) != 3:
        return None
    try:
        return int(parts[0], 16), int(parts[1], 16), int(parts[2], 16)
    except ValueError:
        return None


def _when(line: str, ref: float | None) -> float | None:
    m = _ISO.match(line)
    if m:
        try:
            dt = datetime.fromisoformat(m.group(1).replace("Z", "+00:00"))
        except ValueError:
            return None
        return dt.timestamp()  # naive (no offset): local time, as the host wrote it
    m = _BSD.match(line)
    if not m or m.group(1) not in _MONTHS:
        return None
    # The classic format has no year: the file's mtime gives it (an event after the mtime
    # belongs to the year before). Local time, as the host's syslog wrote it.
    ref = time.time() if ref is None else ref
    year = time.localtime(ref).tm_year
    mon, day, hh, mm, ss = _MONTHS[m.group(1)], int(m.group(2)), int(m.group(3)), int(m.group(4)), int(m.group(5))
    for y in (year, year - 1):
        try:
            t = time.mktime((y, mon, day, hh, mm, ss, 0, 0, -1))
        except (OverflowError, ValueError):
            return None
        if t <= ref + 86400:
            return t
    return None


def parse_line(line: str, ref: float | None = None) -> XidEvent | None:
    """One log line -> its event, or None when it reports none. ``ref``: the file's mtime, for the
    year of classic syslog timestamps."""
    if "NVRM" not in line:
        return None
    m = _XID.search(line)
    if m:
        rest = (m.group("rest") or "").strip()
        pid = name = None
        pm = _PID.match(rest)
        if pm:
            pid, name = pm.group("pid").strip("'"), pm.group("name").strip() or None
            rest = rest[pm.end() :]
        return XidEvent(int(m.group("code")), bus_key(m.group("bus")), line, _when(line, ref), pid, name, rest)
    if FALLEN_OFF in line:
        m = _OFF.search(line)
        return XidEvent(
            None,
            bus_key(m.group("bus")) if m else None,
            line,
            _when(line, ref),
            None,
            None,
            "GPU has fallen off the bus",
        )
    return None


def parse(text: str, ref: float | None = None) -> list[XidEvent]:
    """Every Xid and fallen-off-the-bus line in kernel log text, in order."""
    out = []
    start = 0
    while True:
        i = text.find("NVRM", start)
        if i < 0:
            return out
        a = text.rfind("\n", 0, i) + 1
        b = text.find("\n", i)
        b = len(text) if b < 0 else b
        ev = parse_line(text[a:b].rstrip("\r"), ref)
        if ev is not None:
            out.append(ev)
        start = b + 1


__all__ = ["APP_FAULTS", "FALLEN_OFF", "XIDS", "XidEvent", "bus_key", "parse", "parse_line", "severity"]
