"""A small terminal screen for tests: what an xterm shows after the bytes a Textual app writes.

It knows the sequences Textual's updates use (cursor position CUP and column CHA, SGR attributes,
newline and carriage return, text with wide characters), the moves and erases curses adds (VPA,
relative moves, backspace, ECH, EL, ED), and ignores the rest (modes, OSC, character sets). Each
cell holds its character and its attributes as (attributes, foreground, background), read here on
their own, independently of gpudock's encoder, so two byte streams can be compared by the picture
they leave rather than by their bytes. ``written`` counts the bytes that went to each line (a move
counts for the line it goes to), for the benchmark's breakdown of where the bytes go.
"""

from __future__ import annotations

import re
from collections import Counter

from rich.cells import cell_len

_SEQ = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])|\x1b\][^\x1b\x07]*(?:\x07|\x1b\\)|\x1b[()][A-Za-z0-9]|\x1b.")

# SGR codes that turn attributes off: which attributes each clears.
_OFF = {"22": {"1", "2"}, "23": {"3"}, "24": {"4", "21"}, "25": {"5", "6"}, "27": {"7"}, "28": {"8"}, "29": {"9"}}


class Screen:
    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.x = self.y = 0
        self.attrs: set[str] = set()
        self.fg: str | None = None
        self.bg: str | None = None
        blank = (" ", (frozenset(), None, None))
        self.cells = [[blank] * width for _ in range(height)]
        self.written: Counter[int] = Counter()

    @property
    def sgr(self) -> tuple[frozenset[str], str | None, str | None]:
        return frozenset(self.attrs), self.fg, self.bg

    def feed(self, data: str) -> None:
        pos = 0
        for m in _SEQ.finditer(data):
            self._text(data[pos : m.start()])
            pos = m.end()
            if m.group(2) is not None:
                self._csi(m.group(1), m.group(2))
            self.written[self.y] += len(m.group(0).encode())
        self._text(data[pos:])

    def _csi(self, params: str, final: str) -> None:
        if params.startswith("?"):
            return
        n = int(params) if params.isdigit() else 1
        if final == "H":
            row, _, col = params.partition(";")
            self.y, self.x = int(row or 1) - 1, int(col or 1) - 1
        elif final == "G":
            self.x = n - 1
        elif final == "d":
            self.y = n - 1
        elif final in "ABCD":
            dy, dx = {"A": (-n, 0), "B": (n, 0), "C": (0, n), "D": (0, -n)}[final]
            self.y, self.x = self.y + dy, self.x + dx
        elif final == "X":
            self._erase(self.y, self.x, self.x + n)
        elif final == "K":
            if params in ("", "0"):
                self._erase(self.y, self.x, self.width)
            else:
                self._erase(self.y, 0, self.x + 1 if params == "1" else self.width)
        elif final == "J":
            if params in ("", "0"):
                self._erase(self.y, self.x, self.width)
                rows = range(self.y + 1, self.height)
            elif params == "1":
                self._erase(self.y, 0, self.x + 1)
                rows = range(self.y)
            else:
                rows = range(self.height)
            for y in rows:
                self._erase(y, 0, self.width)
        elif final == "m":
            self._sgr(params.split(";"))
        self.y = min(self.height - 1, max(0, self.y))
        self.x = min(self.width - 1, max(0, self.x))

    def _erase(self, y: int, a: int, b: int) -> None:
        for x in range(max(0, a), min(self.width, b)):
            self.cells[y][x] = (" ", (frozenset(), None, self.bg))

    def _sgr(self, codes: list[str]) -> None:
        i = 0
        while i < len(codes):
            c = codes[i]
            if c in ("38", "48"):
                n = 3 if i + 1 < len(codes) and codes[i + 1] == "5" else 5
                colour = ";".join(codes[i : i + n])
                if c == "38":
                    self.fg = colour
                else:
                    self.bg = colour
                i += n
                continue
            v = int(c) if c.isdigit() else 0
            if v == 0:
                self.attrs, self.fg, self.bg = set(), None, None
            elif c in _OFF:
                self.attrs -= _OFF[c]
            elif 30 <= v <= 37 or 90 <= v <= 97:
                self.fg = c
            elif 40 <= v <= 47 or 100 <= v <= 107:
                self.bg = c
            elif v == 39:
                self.fg = None
            elif v == 49:
                self.bg = None
            else:
                self.attrs.add(c)
            i += 1

    def _text(self, text: str) -> None:
        for ch in text:
            self.written[self.y] += len(ch.encode())
            if ch == "\b":
                self.x = max(0, self.x - 1)
            elif ch == "\n":
                self.y = min(self.height - 1, self.y + 1)
                self.x = 0
            elif ch == "\r":
                self.x = 0
            elif self.x < self.width:
                self.cells[self.y][self.x] = (ch, self.sgr)
                for i in range(1, cell_len(ch)):
                    if self.x + i < self.width:
                        self.cells[self.y][self.x + i] = ("", self.sgr)
                self.x += max(1, cell_len(ch))

    def lines(self) -> list[str]:
        return ["".join(ch for ch, _ in row) for row in self.cells]


def record(app) -> list[str]:
    """The terminal output of each of ``app``'s screen updates, as its driver would write it (a
    headless app renders nothing: this renders what it would have). Call before the app runs."""
    from textual._compositor import CompositorUpdate

    writes: list[str] = []
    display = app._display

    def spy(screen, renderable) -> None:
        if isinstance(renderable, CompositorUpdate):
            writes.append(renderable.render_segments(app.console))
        display(screen, renderable)

    app._display = spy
    return writes


def full_repaint(app) -> Screen:
    """The screen as a full repaint of ``app``'s current screen leaves it, every widget's lines
    rendered afresh (Textual's cache of rendered lines is dropped)."""
    from textual._compositor import LayoutUpdate

    screen = app.screen
    for widget in screen.walk_children(with_self=True):
        widget._styles_cache.clear()
    strips = screen._compositor.render_strips()
    vt = Screen(screen.size.width, screen.size.height)
    vt.feed(LayoutUpdate([[s] for s in strips], screen.size.region).render_segments(app.console))
    return vt


def visible_text(data: str) -> str:
    """The characters a stream writes, escape sequences left out."""
    return _SEQ.sub("", data)


def cursor_moves(data: str) -> int:
    return sum(1 for m in _SEQ.finditer(data) if m.group(2) in ("H", "G"))
