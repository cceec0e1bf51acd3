"""The launch form: start a container on the GPUs marked in the GPU table, in the order marked.

The form holds no launch logic of its own: every keystroke rebuilds a
:class:`~gpudock.launch.spec.LaunchSpec` with :func:`gpudock.launch.spec.build_spec` and shows its
``docker run`` line (or the error that stops it), and the Launch button hands that same spec to
:func:`gpudock.launch.run.launch` in a worker thread. Docker is only ever called from workers: the
local images (offered as completions of the image field) and the holders map (to warn before
launching onto a card another container holds) are fetched when the form opens.

Launching onto a held card takes a second press of Launch, after the warning naming the holder.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from gpudock.host.root import HostRoot
from gpudock.launch.selection import SelectionError, parse_selection
from gpudock.launch.spec import DEFAULT_CAPABILITIES, MODES, LaunchError, LaunchSpec, build_spec
from gpudock.model import Gpu, HostSnapshot, short_bus_id
from gpudock.ui.widgets.footer import Footer

__all__ = ["FormValues", "LaunchScreen", "spec_from_form"]

LOG_LINES = 12


@dataclass(frozen=True)
class FormValues:
    image: str = ""
    command: str = ""
    name: str = ""
    mode: str = "runtime"
    capabilities: str = ",".join(DEFAULT_CAPABILITIES)
    env: str = ""
    mps: str = ""


def spec_from_form(snapshot: HostSnapshot, gpus: list[Gpu], v: FormValues, uvm_tools: bool = True) -> LaunchSpec:
    """The spec the form describes; :class:`LaunchError`/:class:`SelectionError` say what is wrong."""
    sel = parse_selection([g.uuid or str(g.index) for g in gpus], snapshot)
    if not v.image.strip():
        raise LaunchError("choose an image")
    try:
        env = shlex.split(v.env)
    except ValueError as e:
        raise LaunchError(f"env does not parse ({e})") from None
    mps = None
    if v.mps.strip():
        if not v.mps.strip().isdigit():
            raise LaunchError("MPS thread percentage must be a whole number 1-100")
        mps = int(v.mps)
    caps = v.capabilities if v.mode in ("runtime", "gpus") else None
    return build_spec(
        snapshot,
        sel,
        v.mode,
        image=v.image.strip(),
        command=v.command or None,
        name=v.name.strip() or None,
        capabilities=caps,
        env=env,
        mps_thread_percentage=mps,
        uvm_tools=uvm_tools,
    )


class FormInput(Input):
    """A field of the form: Enter launches, and the footer says so (Input's own Enter is hidden)."""

    BINDINGS = [Binding("enter", "submit", "Launch", id="launch-submit")]


FORCE_LABEL = "Launch even if the image needs a newer CUDA than the driver's"


class LaunchScreen(ModalScreen[None]):
    """The form, its live preview, and the result of the launch."""

    BINDINGS = [
        Binding("enter", "launch", "Launch", id="launch-go-key"),
        Binding("y", "confirm", "Launch anyway", id="launch-confirm"),
        Binding("escape", "close", "Close", id="launch-close"),
    ]

    class EngineFacts(Message):
        def __init__(self, images: list[str], holders: dict[str, tuple[str, ...]], error: str | None) -> None:
            super().__init__()
            self.images, self.holders, self.error = images, holders, error

    class Finished(Message):
        def __init__(self, title: str, warnings: tuple[str, ...], logs: list[str], error: str | None) -> None:
            super().__init__()
            self.title, self.warnings, self.logs, self.error = title, warnings, logs, error

    def __init__(
        self,
        snapshot: HostSnapshot,
        gpus: list[Gpu],
        root: str | HostRoot = "/",
        client_factory: Callable[[], object] | None = None,
    ) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.gpus = gpus
        self.root = root if isinstance(root, HostRoot) else HostRoot(root)
        self.client_factory = client_factory or _docker_from_env
        self.holders: dict[str, tuple[str, ...]] = {}
        self.spec: LaunchSpec | None = None
        self._confirmed_held = False
        self._uvm_tools = self.root.exists("/dev/nvidia-uvm-tools")

    def compose(self) -> ComposeResult:
        with Vertical(id="launch-box"):
            yield Static(self._gpu_summary(), id="launch-gpus")
            yield Static("", id="launch-preview")
            yield Static("Asking Docker for local images and holders…", id="launch-warnings")
            with VerticalScroll(id="launch-fields"):
                yield from _field(
                    "Image", FormInput(placeholder="repository[:tag] of a local image", id="f-image", compact=True)
                )
                yield from _field(
                    "Command",
                    FormInput(
                        placeholder="e.g. nvidia-smi -L (split like a shell, never run by one)",
                        id="f-command",
                        compact=True,
                    ),
                )
                yield from _field("Name", FormInput(placeholder="optional", id="f-name", compact=True))
                yield from _field(
                    "Mode",
                    Select([(m, m) for m in MODES], value="runtime", allow_blank=False, id="f-mode", compact=True),
                )
                yield from _field(
                    "Capabilities", FormInput(value=",".join(DEFAULT_CAPABILITIES), id="f-caps", compact=True)
                )
                yield from _field("Environment", FormInput(placeholder="K=V K2='a b'", id="f-env", compact=True))
                yield from _field(
                    "MPS threads %",
                    FormInput(placeholder="optional, 1-100", restrict=r"\d{0,3}", id="f-mps", compact=True),
                )
                yield Checkbox(FORCE_LABEL, id="f-force", compact=True)
            # Always in sight, however small the terminal: the buttons and what the launch did.
            with Vertical(id="launch-bottom"):
                with Horizontal(id="launch-buttons"):
                    yield Button("Launch", variant="primary", id="launch-go", compact=True)
                    yield Button("Close", id="launch-cancel", compact=True)
                with VerticalScroll(id="launch-result-box"):
                    yield Static("Enter in any field launches; Escape closes.", id="launch-result")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#f-image", Input).focus()
        self._update_preview()
        self._fetch_engine_facts()

    # -- engine facts (worker) ---------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="launch-facts")
    def _fetch_engine_facts(self) -> None:
        from gpudock.launch.run import holders_by_gpu

        # The app may offer its own holders source (its live watcher; a fake in tests).
        holders_fn = getattr(self.app, "holders_for_launch", None) or holders_by_gpu
        try:
            client = self.client_factory()
            images = sorted({t for img in client.images.list() for t in img.tags})
            holders = holders_fn(self.snapshot)
        except Exception as e:  # noqa: BLE001 - shown in the form; the operator can still preview
            explain = getattr(getattr(self.app, "host", None), "explain_engine_error", None)
            self.post_message(self.EngineFacts([], {}, explain(e) if explain else f"Docker engine unreachable: {e}"))
            return
        self.post_message(self.EngineFacts(images, holders, None))

    @on(EngineFacts)
    def _on_engine_facts(self, msg: EngineFacts) -> None:
        self.holders = msg.holders
        image = self.query_one("#f-image", Input)
        image.suggester = SuggestFromList(msg.images, case_sensitive=True)
        lines = Text()
        if msg.error:
            lines.append(msg.error + "\n", style="bold red")
        else:
            lines.append(f"{len(msg.images)} local image(s); type to complete, → to accept\n", style="dim")
        for w in self._held_warnings():
            lines.append(w + "\n", style="bold yellow")
        self.query_one("#launch-warnings", Static).update(lines)
        self.gpu_summary_refresh()

    def _held_warnings(self) -> list[str]:
        out = []
        for g in self.gpus:
            who = self.holders.get(g.uuid or "", ())
            if who:
                out.append(f"GPU {g.index} is already held by {', '.join(who)}")
        return out

    # -- preview -------------------------------------------------------------------------------------

    def _gpu_summary(self) -> Text:
        t = Text("Launch on these GPUs, in this order (the UUIDs are in the line below):", style="bold")
        for n, g in enumerate(self.gpus, 1):
            t.append(f"\n {n}. GPU {g.index}", style="bold")
            t.append(f"  {g.device or 'no minor'}  {short_bus_id(g.pci_bus_id)}")
            who = self.holders.get(g.uuid or "", ())
            if who:
                t.append(f"  held by {', '.join(who)}", style="bold yellow")
        return t

    def gpu_summary_refresh(self) -> None:
        self.query_one("#launch-gpus", Static).update(self._gpu_summary())

    def values(self) -> FormValues:
        q = self.query_one
        return FormValues(
            image=q("#f-image", Input).value,
            command=q("#f-command", Input).value,
            name=q("#f-name", Input).value,
            mode=str(q("#f-mode", Select).value),
            capabilities=q("#f-caps", Input).value,
            env=q("#f-env", Input).value,
            mps=q("#f-mps", Input).value,
        )

    def _update_preview(self) -> None:
        preview = self.query_one("#launch-preview", Static)
        try:
            self.spec = spec_from_form(self.snapshot, self.gpus, self.values(), self._uvm_tools)
        except (LaunchError, SelectionError) as e:
            self.spec = None
            preview.update(Text(str(e), style="bold red"))
            return
        preview.update(Text(self.spec.docker_run_line(), style="bold"))

    @on(Input.Changed)
    @on(Select.Changed)
    def _changed(self) -> None:
        if self._confirmed_held:
            self._confirmed_held = False
            self.refresh_bindings()
        self._update_preview()

    # -- launching -------------------------------------------------------------------------------------

    @on(Button.Pressed, "#launch-cancel")
    def action_close(self) -> None:
        self.dismiss(None)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "confirm":
            return self._confirmed_held  # only while a held card waits for the answer
        return True

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self._go()  # Enter in a field launches, as a web form submits

    def action_launch(self) -> None:
        self._go()

    def action_confirm(self) -> None:
        if self._confirmed_held:
            self._go()

    @on(Button.Pressed, "#launch-go")
    def _go(self) -> None:
        result = self.query_one("#launch-result", Static)
        if self.spec is None:
            result.update(
                Text("Nothing to launch: fix the form first (the line above says what is wrong)", style="bold red")
            )
            return
        held = self._held_warnings()
        if held and not self._confirmed_held:
            self._confirmed_held = True
            self.refresh_bindings()
            result.update(
                Text("; ".join(held) + ". Press Enter (or y) to launch anyway, Escape to close.", style="bold yellow")
            )
            self.query_one("#launch-go", Button).focus()  # so that Enter and y answer, not a field
            return
        self._confirmed_held = False
        self.refresh_bindings()
        self.query_one("#launch-go", Button).disabled = True
        result.update(Text("Launching…", style="dim"))
        self._launch(self.spec, self.query_one("#f-force", Checkbox).value)

    @work(thread=True, exclusive=True, exit_on_error=False, group="launch")
    def _launch(self, spec: LaunchSpec, force: bool) -> None:
        from gpudock.launch.run import launch, wait_for_first_logs
        from gpudock.launch.volume import ensure_driver_volume

        try:
            client = self.client_factory()
            if spec.mode == "legacy" and spec.driver_volume:
                ensure_driver_volume(client, self.root, spec.driver_volume)
            container, warnings = launch(client, spec, self.snapshot, force=force, holders=self.holders)
            logs = wait_for_first_logs(container, LOG_LINES, 3.0)
            title = f"Started {container.name} ({container.id[:12]}), {container.status}"
            self.post_message(self.Finished(title, warnings, logs, None))
        except LaunchError as e:
            hint = f" (tick “{FORCE_LABEL}” to launch anyway)" if e.forcible else ""
            self.post_message(self.Finished("", (), [], f"{e}{hint}"))
        except Exception as e:  # noqa: BLE001 - every failure is shown in the form, in words
            explain = getattr(getattr(self.app, "host", None), "explain_engine_error", None)
            self.post_message(self.Finished("", (), [], explain(e) if explain else str(e)))

    @on(Finished)
    def _on_finished(self, msg: Finished) -> None:
        self.query_one("#launch-go", Button).disabled = False
        t = Text()
        if msg.error:
            t.append(f"Not launched: {msg.error}", style="bold red")
        else:
            t.append(msg.title + "\n", style="bold green")
            for w in msg.warnings:
                t.append(f"warning: {w}\n", style="yellow")
            t.append("First log lines:\n" if msg.logs else "No log lines yet.\n", style="dim")
            for line in msg.logs:
                t.append(f"  {line}\n")
        self.query_one("#launch-result", Static).update(t)


def _field(label: str, widget) -> ComposeResult:
    with Horizontal(classes="launch-field"):
        yield Label(label)
        yield widget


def _docker_from_env():
    import docker

    return docker.from_env()
