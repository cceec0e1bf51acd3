"""LiveText repaints only the lines that changed: what crosses a slow SSH link each second."""

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


async def test_one_changed_line_repaints_that_line_only():
    app = One()
    async with app.run_test(size=(40, 10)) as pilot:
        w = app.query_one(LiveText)
        w.show(lines("GPU 0", "fan 40%", "ECC on"))
        await pilot.pause()
        calls = []
        real = w.refresh
        w.refresh = lambda *regions, **kw: calls.append((regions, kw)) or real(*regions, **kw)
        w.show(lines("GPU 0", "fan 41%", "ECC on"))
        assert calls == [((Region(0, 1, w.content_size.width, 1),), {})]
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
        updates = []
        real = w.update
        w.update = lambda *a, **kw: updates.append(a) or real(*a, **kw)
        w.show(lines("GPU 0", "fan 40%", "Conflict"))
        assert len(updates) == 1
        await pilot.pause()
        w.show(lines("GPU 0", "x" * 80, "Conflict"))
        assert len(updates) == 2
        await pilot.pause()
        assert "Conflict" in str(w.render())
