"""The Docker banner: one line saying why gpudock cannot read the Docker engine, and what to do
about it (cut with "…" on a narrow terminal: the screens' details panes give the whole message);
hidden while all is well.

The GPU screen and the container panel show it under their headers. It reads the
:class:`gpudock.host.docker.DockerStatus` the holders map carries (``app.holders.docker``); the
watcher reconnects on its own, so the banner disappears on the first refresh after the engine is
back. An engine that is connected but does not answer (hung: its status has ``stale_since``) gets
a banner too, saying since when: the holders on screen are the last known ones.
"""

from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import Static

# A healthy engine answers in well under this: say "connecting" only when it is slow to.
CONNECTING_GRACE_S = 2.0


def docker_banner_text(status, now: float | None = None) -> Text | None:
    """The banner's text for a DockerStatus, or None when there is nothing to say."""
    if status is None:
        return None
    stale = getattr(status, "stale_since", None)
    if getattr(status, "ok", True) and stale is None:
        return None
    t = Text(no_wrap=True, overflow="ellipsis", end="")
    if getattr(status, "ok", True):
        waited = max(0, int((time.time() if now is None else now) - stale))
        at = time.strftime("%H:%M:%S", time.localtime(stale))
        t.append(" Docker ", style="bold reverse yellow")
        t.append(f" not answering since {at} ({waited} s): holders shown are as of then", style="yellow")
        return t
    if status.state == "connecting":
        since = getattr(status, "since", 0.0) or 0.0
        if (time.time() if now is None else now) - since < CONNECTING_GRACE_S:
            return None
        t.append(" Docker ", style="bold reverse yellow")
        t.append(f" connecting to the engine at {status.base_url}… (no answer yet)", style="yellow")
        return t
    t.append(" Docker ", style="bold reverse red")
    t.append(" " + docker_message(status), style="bold yellow")
    return t


def docker_message(status) -> str:
    """The whole of what is wrong with the engine and what to do (for the details panes)."""
    return status.message or f"cannot read the Docker engine at {status.base_url}"


class DockerBanner(Static):
    """Hidden unless the Docker engine cannot be read."""

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 - Textual's name
        super().__init__("", id=id, classes="docker-banner")
        self._last: Text | None = None
        self.display = False

    def show_status(self, status) -> None:
        text = docker_banner_text(status)
        if text is None:
            if self.display:
                self.display = False
            self._last = None
            return
        if self._last is None or self._last.plain != text.plain or self._last.spans != text.spans:
            self._last = text
            self.update(text)
        if not self.display:
            self.display = True
