"""What a screen's refresh writes to the terminal: the changed cells only, as curses would.

Textual's partial update (``textual._compositor.ChopsUpdate``) writes each dirty span from the left
edge of the widget under it (its own "TODO: crop to x extents"): a number that changes in the middle
of a table line rewrites the line up to that number. It also writes every segment as a complete SGR
sequence followed by a reset. Over an SSH link each second, that is most of what a live dashboard
sends. :class:`CellUpdate` writes the same picture with less:

* each dirty span from its own first cell (never splitting a double-width character);
* the pieces of one update in an order that groups equal styles (they never overlap, so the order
  does not change the picture), with the terminal's attributes kept from one piece to the next and
  changed by the codes that differ (a reset only where an attribute must go), one reset at the end;
* the shortest cursor move: none when the cursor is already there, a column move on the same line.

:class:`LiveScreen` is a Textual ``Screen`` whose partial updates are written this way; full updates
(a resize, a new screen) are Textual's own. The SGR codes are Textual's own
(``Strip.render_ansi``), so colours and attributes are exactly what Textual would write.
"""

from __future__ import annotations

from functools import lru_cache

from rich.cells import cell_len
from rich.color import ColorSystem
from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from textual._compositor import ChopsUpdate, Compositor
from textual.screen import Screen
from textual.strip import Strip

RESET = "\x1b[0m"

# The codes that turn attributes off, and the attributes each turns off (22 both bold and dim, 24
# both underlines, 25 both blinks). An attribute without one is turned off by a reset.
_OFF_CODES = {"22": {"1", "2"}, "23": {"3"}, "24": {"4", "21"}, "25": {"5", "6"}, "27": {"7"}, "28": {"8"}, "29": {"9"}}
_OFF = {a: code for code, attrs in _OFF_CODES.items() for a in attrs}

Sgr = tuple[frozenset[str], str | None, str | None]  # (attributes, foreground, background)
DEFAULT: Sgr = (frozenset(), None, None)


def parse_sgr(codes: str) -> Sgr:
    """SGR parameters as Textual writes them ("1;38;5;197;48;5;234"), from a reset state."""
    attrs: set[str] = set()
    fg = bg = None
    params = codes.split(";") if codes else []
    i = 0
    while i < len(params):
        p = params[i]
        if p in ("38", "48"):
            n = 3 if i + 1 < len(params) and params[i + 1] == "5" else 5
            color = ";".join(params[i : i + n])
            i += n
            if p == "38":
                fg = color
            else:
                bg = color
            continue
        v = int(p) if p.isdigit() else -1
        if p in ("", "0"):
            attrs.clear()
            fg = bg = None
        elif 30 <= v <= 37 or 90 <= v <= 97:
            fg = p
        elif 40 <= v <= 47 or 100 <= v <= 107:
            bg = p
        elif p == "39":
            fg = None
        elif p == "49":
            bg = None
        else:
            attrs.add(p)
        i += 1
    return frozenset(attrs), fg, bg


def _full_codes(sgr: Sgr) -> list[str]:
    attrs, fg, bg = sgr
    codes = sorted(attrs, key=int)
    if fg is not None:
        codes.append(fg)
    if bg is not None:
        codes.append(bg)
    return codes


@lru_cache(maxsize=4096)
def transition(current: Sgr, new: Sgr) -> str:
    """The shortest SGR sequence that takes the terminal from ``current`` attributes to ``new``."""
    if current == new:
        return ""
    if new == DEFAULT:
        return RESET
    full = _full_codes(new)
    if current == DEFAULT:
        return f"\x1b[{';'.join(full)}m"
    reset = f"\x1b[0;{';'.join(full)}m"
    cur_attrs, cur_fg, cur_bg = current
    attrs, fg, bg = new
    off = cur_attrs - attrs
    on = attrs - cur_attrs
    codes: list[str] = []
    for a in sorted(off, key=int):
        code = _OFF.get(a)
        if code is None:
            return reset
        if code not in codes:
            codes.append(code)
            on |= attrs & _OFF_CODES[code]  # it turned off its sibling too: give back the one that stays
    codes.extend(sorted(on, key=int))
    if fg != cur_fg:
        codes.append(fg if fg is not None else "39")
    if bg != cur_bg:
        codes.append(bg if bg is not None else "49")
    step = f"\x1b[{';'.join(codes)}m"
    return step if len(step) < len(reset) else reset


@lru_cache(maxsize=4096)
def _style_sgr(style: Style, color_system: ColorSystem) -> tuple[Sgr, str, str]:
    """A style's attributes, and what a link around it opens and closes ("" for no link)."""
    rendered = Strip.render_style(style, "\0", color_system)
    before, _, after = rendered.partition("\0")
    if not style._link:
        return (parse_sgr(before[2:-1]) if before else DEFAULT), "", ""
    # A hyperlink: OSC 8 around the SGR. Written whole, from and back to the reset state.
    return DEFAULT, before, after


def _cell_bounds(strip: Strip, start: int, end: int) -> tuple[int, int]:
    """``start``/``end`` moved out to character boundaries: a crop never splits a wide character."""
    pos = 0
    for text, _, _ in strip:
        seg_end = pos + cell_len(text)
        if seg_end > start and pos < end and seg_end - pos != len(text):
            x = pos
            for ch in text:
                w = cell_len(ch)
                if x < start < x + w:
                    start = x
                if x < end < x + w:
                    end = x + w
                x += w
        if seg_end >= end:
            break
        pos = seg_end
    return start, end


class CellUpdate(ChopsUpdate):
    """Textual's partial update, written cell-exact (see the module's docstring)."""

    def render_segments(self, console: Console) -> str:
        color_system = console._color_system or ColorSystem.TRUECOLOR
        pieces: list[tuple[tuple, int, int, list[Segment]]] = []
        width = 0
        for y, x1, x2 in self.spans:
            ends = self.chop_ends[y]
            if ends:
                width = max(width, ends[-1])
            for end, (x, strip) in zip(ends, self.chops[y].items()):
                if strip is None or x >= x2 or end <= x1:
                    continue
                a, b = max(x, x1), min(end, x2)
                if (a, b) != (x, end):
                    a, b = _cell_bounds(strip, a - x, b - x)
                    strip = strip.crop(a, b)
                    a += x
                segments = [s for s in strip if s.text]
                if segments:
                    first = segments[0].style
                    sgr = _style_sgr(first, color_system)[0] if first is not None else DEFAULT
                    key = (sgr[2] or "", sorted(sgr[0]), sgr[1] or "")  # background, attributes, colour
                    pieces.append((key, y, a, segments))
        pieces.sort(key=lambda p: (p[0], p[1], p[2]))

        out: list[str] = []
        write = out.append
        current = DEFAULT
        cx: int | None = None
        cy = -1
        for _, y, x, segments in pieces:
            if y != cy or cx is None:
                write(f"\x1b[{y + 1};{x + 1}H")
            elif cx != x:
                write(f"\x1b[{x + 1}G")
            for text, style, _ in segments:
                if style is None:
                    sgr, link_open, link_close = DEFAULT, "", ""
                else:
                    sgr, link_open, link_close = _style_sgr(style, color_system)
                if link_open:
                    write(transition(current, DEFAULT))
                    write(f"{link_open}{text}{link_close}")
                    current = DEFAULT
                else:
                    write(transition(current, sgr))
                    write(text)
                    current = sgr
                x += cell_len(text)
            cy = y
            cx = x if x < width else None  # at the last column the terminal waits to wrap: move absolutely
        write(transition(current, DEFAULT))
        return "".join(out)


# Changed cells closer than this are repainted as one span: moving the cursor costs more bytes.
MERGE_GAP = 4


def _cells(strip: Strip) -> list[tuple[str, Style | None]]:
    """One (character, style) per terminal cell; a wide character's second cell is ("", style)."""
    cells: list[tuple[str, Style | None]] = []
    for text, style, _ in strip:
        if cell_len(text) == len(text):
            cells.extend((ch, style) for ch in text)
        else:
            for ch in text:
                cells.append((ch, style))
                cells.extend([("", style)] * (cell_len(ch) - 1))
    return cells


def changed_spans(old: Strip, new: Strip) -> list[tuple[int, int]]:
    """The ``[start, end)`` cell spans where two lines differ (spans less than MERGE_GAP apart joined)."""
    if old == new:  # the same segments (most lines of a text shown anew): no cell to compare
        return []
    a, b = _cells(old), _cells(new)
    if len(a) != len(b):
        return [(0, max(len(a), len(b)))]
    spans: list[list[int]] = []
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            if spans and i - spans[-1][1] < MERGE_GAP:
                spans[-1][1] = i + 1
            else:
                spans.append([i, i + 1])
    return [(s, e) for s, e in spans]


class CellCompositor(Compositor):
    """Textual's compositor, whose partial updates are :class:`CellUpdate`."""

    def render_partial_update(self) -> ChopsUpdate | None:
        update = super().render_partial_update()
        if type(update) is not ChopsUpdate:  # None (nothing to do), or a Textual this was not made for
            return update
        return CellUpdate(update.chops, update.spans, update.chop_ends)


class LiveScreen(Screen):
    """A screen refreshed every second: its partial updates write the changed cells only."""

    def __init__(self, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._compositor = CellCompositor()
