"""LiveText repaints only the characters that changed: what crosses a slow SSH link each second."""

from __future__ import annotations

from rich.text import Text
from textual.app import App
from textual.geometry import Region

from gpudock.ui.widgets.live_text import LiveText


class One(App):
    def compose(self):
        yield LiveText("", id="t")


def lines(*rows: str) -> Text:
    return Text("\n".join(rows))


async def test_one_changed_digit_repaints_that_digit_only():
    app = One()
    async with app.run_test(size=(40, 10)) as pilot:
        w = app.query_one(LiveText)
        w.show(lines("GPU 0", "fan 40%", "ECC on"))
        await pilot.pause()
        calls = []
        real = w.refresh
        w.refresh = lambda *regions, **kw: calls.append((regions, kw)) or real(*regions, **kw)
        w.show(lines("GPU 0", "fan 41%", "ECC on"))
        assert calls == [((Region(5, 1, 1, 1),), {})]  # "40" -> "41": the one cell
        await pilot.pause()
        assert str(w.render()).splitlines()[1] == "fan 41%"
        calls.clear()
        w.show(lines("GPU 0", "fan 41%", "ECC on"))  # nothing changed: nothing repainted
        assert calls == []


async def test_a_line_more_or_a_wrapping_line_lays_out_again():
    app = One()
    async with app.run_test(size=(40, 10)) as pilot:
        w = app.query_one(LiveText)
        w.show(lines("GPU 0", "fan 40%"))
        await pilot.pause()
        layouts = []
        real = w.refresh
        w.refresh = lambda *a, **kw: (kw.get("layout") and layouts.append(a)) or real(*a, **kw)
        w.show(lines("GPU 0", "fan 40%", "Conflict"))  # a line more
        assert len(layouts) == 1
        await pilot.pause()
        n = len(layouts)
        w.show(lines("GPU 0", "x" * 80, "Conflict"))  # a line that wraps: one more row
        assert len(layouts) == n + 1
        await pilot.pause()
        assert "Conflict" in str(w.render())
