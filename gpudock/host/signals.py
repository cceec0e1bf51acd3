"""Signals to a host process, sent only to the process the operator was shown.

This module owns what "kill PID 4242" checks before anything is sent:

* a PID is a number that the kernel hands out again: the process is named by its PID *and* its
  start time (field 22 of ``/proc/<pid>/stat``, clock ticks since boot), read when it was shown;
* the PID is pinned with a pidfd (``pidfd_open``) before its start time is compared, so the number
  cannot be given to another process between the check and the signal (``pidfd_send_signal``);
* the process table read (``proc_root``: the host's ``/proc`` under the session's root) must be
  this machine's own: a copy of a host (``--root``), or another PID namespace, has PIDs that name
  other processes here, and a signal is refused rather than sent to whatever has that number here;
* PID 1 and gpudock itself are never signalled.

Every refusal is a :class:`SignalRefused` whose message says what happened and that nothing was
sent. Only SIGTERM and SIGKILL are offered. Plain Python; no Textual.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

__all__ = ["SIGNALS", "SignalRefused", "SignalSent", "parse_signal", "read_start_time", "send_signal"]

# What an operator may send, by the names kill(1) takes.
SIGNALS: dict[str, signal.Signals] = {"TERM": signal.SIGTERM, "KILL": signal.SIGKILL}
LOCAL_PROC = "/proc"


class SignalRefused(Exception):
    """No signal was sent; the message says why, in an operator's words."""


@dataclass(frozen=True, slots=True)
class SignalSent:
    pid: int
    signal: str  # "SIGTERM", "SIGKILL"


def parse_signal(text: str | int) -> signal.Signals:
    """``TERM``, ``SIGTERM``, ``15``, ``KILL``, ``SIGKILL``, ``9`` (any case); others are refused."""
    t = str(text).strip().upper()
    t = t[3:] if t.startswith("SIG") else t
    for name, sig in SIGNALS.items():
        if t in (name, str(int(sig))):
            return sig
    raise SignalRefused(f"signal {text!r}: gpudock sends TERM (15) or KILL (9) only")


def read_start_time(pid: int, proc_root: str = LOCAL_PROC) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (``<proc_root>/<pid>/stat`` field 22),
    or None when there is no such process (or its stat cannot be read)."""
    try:
        with open(os.path.join(proc_root, str(int(pid)), "stat"), "rb") as f:
            text = f.read(4096).decode("ascii", "replace")
    except (OSError, ValueError):
        return None
    # comm (field 2) is in parentheses and may hold spaces and ')': the fields after the last ')'
    # are state (3), ppid (4), ... starttime (22).
    rest = text.rpartition(")")[2].split()
    try:
        return int(rest[19])
    except (IndexError, ValueError):
        return None


def _pidfd(pid: int) -> int | None:
    """A pidfd pinning ``pid`` (None where the kernel or Python has none: then os.kill)."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return opener(pid)
    except ProcessLookupError:
        raise
    except OSError:  # ENOSYS (kernel before 5.3), EPERM in some sandboxes
        return None


def send_signal(
    pid: int, sig: signal.Signals, expected_start: int | None, *, proc_root: str = LOCAL_PROC, what: str = ""
) -> SignalSent:
    """Send ``sig`` to ``pid`` if it is still the process that started at ``expected_start``
    (read through ``proc_root`` when it was shown). ``what`` names it in messages ("python
    train.py in container train-a"). Raises :class:`SignalRefused`, nothing sent, otherwise."""
    pid = int(pid)
    name = f"PID {pid}" + (f" ({what})" if what else "")
    if sig not in SIGNALS.values():
        raise SignalRefused(f"{sig!r}: gpudock sends SIGTERM or SIGKILL only; nothing sent")
    if pid <= 1:
        raise SignalRefused(f"PID {pid} is the host's init (or not a process): gpudock never signals it")
    if pid == os.getpid():
        raise SignalRefused(f"PID {pid} is this gpudock: nothing sent")
    if expected_start is None:
        raise SignalRefused(
            f"{name}: its start time could not be read when it was shown, so gpudock cannot tell it from a "
            "process that got the same PID later; nothing sent"
        )
    try:
        fd = _pidfd(pid)
    except ProcessLookupError:
        raise SignalRefused(f"{name} has exited since it was shown: nothing sent") from None
    try:
        now = read_start_time(pid, proc_root)
        if now is None:
            raise SignalRefused(f"{name} has exited since it was shown: nothing sent")
        if now != expected_start:
            raise SignalRefused(
                f"PID {pid} is now another process (it started later than the one shown, which has exited): "
                "nothing sent"
            )
        if os.path.realpath(proc_root) != LOCAL_PROC and read_start_time(pid, LOCAL_PROC) != now:
            raise SignalRefused(
                f"PID {pid} in {proc_root} is not this machine's PID {pid} (a copy of a host, or another PID "
                "namespace): gpudock signals only processes of the machine it runs on; nothing sent"
            )
        try:
            if fd is not None:
                signal.pidfd_send_signal(fd, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            raise SignalRefused(f"{name} exited before the signal reached it: nothing sent") from None
        except PermissionError:
            raise SignalRefused(
                f"{name}: not permitted to signal it (it belongs to another user); run gpudock as root or as that user"
            ) from None
    finally:
        if fd is not None:
            os.close(fd)
    return SignalSent(pid, sig.name)
