"""gpudock's exit statuses, the same for every command (the README's "Exit status")."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["ExitCode"]


class ExitCode(IntEnum):
    OK = 0
    FINDINGS = 1  # the doctor found an error, holders found conflicts
    FAILED = 2  # could not do it, or a usage error: the message says what to do
    INTERRUPTED = 130  # ctrl+c
