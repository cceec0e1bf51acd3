"""The launch form: start a container on the GPUs marked in the GPU table, in the order marked.

The form holds no launch logic of its own: every keystroke rebuilds a
:class:`~gpudock.launch.spec.LaunchSpec` with :func:`gpudock.launch.spec.build_spec` and shows its
``docker run`` line (or the error that stops it), and the Launch button hands that same spec to
:func:`gpudock.launch.run.launch` in a worker thread. Docker is only ever called from workers: the
local images (offered as completions of the image field) and the holders map (to warn before
launching onto a card another container holds) are fetched when the form opens.

Launching onto a held card takes a second press of Launch, after the warning naming the holder.

A GPU with MIG devices gets a field of its own: the whole GPU, or one of its MIG devices (the
generated arguments then name that MIG device; :mod:`gpudock.launch.selection`). ``ctrl+y`` copies
the ``docker run`` line to the operator's own clipboard, over SSH too (OSC 52:
``App.copy_to_clipboard``); ``ctrl+s`` saves the launch as a compose file (``compose.yaml`` in
the current directory, or a path typed), written atomically (:mod:`gpudock.toolkit.atomic`) and
never over an existing file without asking. After a launch the marks are cleared
(``on_launched``) and the new container is the one selected on the Containers screen. In a
read-only session (``--readonly``) launching and saving say so and do nothing.
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
from gpudock.ui.screens.confirm import ConfirmScreen, refused_readonly
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
    migs: tuple[str, ...] = ()  # parallel to the form's GPUs: the MIG device's UUID chosen, "" the whole GPU


def spec_from_form(snapshot: HostSnapshot, gpus: list[Gpu], v: FormValues, uvm_tools: bool = True) -> LaunchSpec:
    """The spec the form describes; :class:`LaunchError`/:class:`SelectionError` say what is wrong."""
    migs = v.migs or ("",) * len(gpus)
    sel = parse_selection([m or g.uuid or str(g.index) for g, m in zip(gpus, migs)], snapshot)
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
        Binding("ctrl+y", "copy_line", "Copy line", id="launch-copy"),
        Binding("ctrl+s", "save_compose", "Save compose", id="launch-compose"),
        Binding("escape", "close", "Close", id="launch-close"),
    ]

    class EngineFacts(Message):
        def __init__(self, images: list[str], holders: dict[str, tuple[str, ...]], error: str | None) -> None:
            super().__init__()
            self.images, self.holders, self.error = images, holders, error

    class Finished(Message):
        def __init__(
            self,
            title: str,
            warnings: tuple[str, ...],
            logs: list[str],
            error: str | None,
            container_id: str | None = None,
        ) -> None:
            super().__init__()
            self.title, self.warnings, self.logs, self.error = title, warnings, logs, error
            self.container_id = container_id

    class Saved(Message):
        def __init__(self, message: str, error: bool, overwrite: object = None, path: str = "") -> None:
            super().__init__()
            self.message, self.error = message, error
            self.overwrite = overwrite  # the file's snapshot, when it exists: ask before writing over it
            self.path = path

    def __init__(
        self,
        snapshot: HostSnapshot,
        gpus: list[Gpu],
        root: str | HostRoot = "/",
        client_factory: Callable[[], object] | None = None,
        on_launched: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        self.on_launched = on_launched  # called with the new container's id
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
                for i, g in enumerate(self.gpus):
                    if g.mig_devices:
                        yield from _field(f"MIG on GPU {g.index}", _mig_select(g, i))
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
        self._facts = (len(msg.images), msg.error)
        self._show_warnings()

    def _show_warnings(self) -> None:
        if not hasattr(self, "_facts"):
            return  # the engine has not answered yet: its line says so
        n, error = self._facts
        lines = Text()
        if error:
            lines.append(error + "\n", style="bold red")
        else:
            lines.append(f"{n} local image(s); type to complete, → to accept\n", style="dim")
        for w in self._held_warnings():
            lines.append(w + "\n", style="bold yellow")
        self.query_one("#launch-warnings", Static).update(lines)
        self.gpu_summary_refresh()

    def _held_by(self, g: Gpu, mig) -> tuple[str, ...]:
        """Who holds what this launch would take on ``g``: any holder of the whole GPU; with a MIG
        device chosen, only those holding the whole GPU or that MIG device (from the app's holders
        map; without one, every holder of the GPU)."""
        names = self.holders.get(g.uuid or "", ())
        hmap = getattr(self.app, "holders", None)
        gh = hmap.gpu(g.uuid) if mig is not None and hmap is not None and g.uuid else None
        if gh is None:
            return names
        return tuple(sorted(h.name for h in gh.running_holders if h.whole or mig.uuid in h.mig_uuids))

    def _held_map(self) -> dict[str, tuple[str, ...]]:
        """GPU UUID -> the holders of what this launch takes on it (the launch's own warnings)."""
        out: dict[str, tuple[str, ...]] = {}
        for g, m in zip(self.gpus, self._chosen_migs() or [None] * len(self.gpus)):
            who = self._held_by(g, m)
            if who and g.uuid:
                out[g.uuid] = tuple(sorted({*out.get(g.uuid, ()), *who}))
        return out

    def _held_warnings(self) -> list[str]:
        out = []
        for g, m in zip(self.gpus, self._chosen_migs() or [None] * len(self.gpus)):
            who = self._held_by(g, m)
            if who:
                what = f"MIG device {g.index}:{m.index}" if m is not None else f"GPU {g.index}"
                out.append(f"{what} is already held by {', '.join(who)}")
        return out

    # -- preview -------------------------------------------------------------------------------------

    def _gpu_summary(self) -> Text:
        t = Text("Launch on these GPUs, in this order (the UUIDs are in the line below):", style="bold")
        migs = self._chosen_migs()
        for n, g in enumerate(self.gpus, 1):
            t.append(f"\n {n}. GPU {g.index}", style="bold")
            m = migs[n - 1] if n - 1 < len(migs) else None
            if m is not None:
                t.append(f" MIG {g.index}:{m.index} {m.profile or ''}".rstrip(), style="bold cyan")
            t.append(f"  {g.device or 'no minor'}  {short_bus_id(g.pci_bus_id)}")
            who = self._held_by(g, m)
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
            migs=tuple(str(q(f"#f-mig-{i}", Select).value) if g.mig_devices else "" for i, g in enumerate(self.gpus)),
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

    def _chosen_migs(self) -> list:
        """The MIG device chosen on each GPU of the form (None: the whole GPU)."""
        if not self.is_mounted:
            return []
        out = []
        for i, g in enumerate(self.gpus):
            uuid = str(self.query_one(f"#f-mig-{i}", Select).value) if g.mig_devices else ""
            out.append(next((m for m in g.mig_devices if m.uuid == uuid), None))
        return out

    @on(Input.Changed)
    @on(Select.Changed)
    def _changed(self, event) -> None:
        if self._confirmed_held:
            self._confirmed_held = False
            self.refresh_bindings()
        if isinstance(event, Select.Changed) and (event.select.id or "").startswith("f-mig-"):
            self.gpu_summary_refresh()
            self._show_warnings()
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
        if refused_readonly(self, "launching a container"):
            result.update(Text("Not launched: this is a read-only session.", style="bold yellow"))
            return
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
        self._launch(self.spec, self.query_one("#f-force", Checkbox).value, self._held_map())

    @work(thread=True, exclusive=True, exit_on_error=False, group="launch")
    def _launch(self, spec: LaunchSpec, force: bool, holders: dict[str, tuple[str, ...]]) -> None:
        from gpudock.launch.run import launch, wait_for_first_logs
        from gpudock.launch.volume import ensure_driver_volume

        try:
            client = self.client_factory()
            if spec.mode == "legacy" and spec.driver_volume:
                ensure_driver_volume(client, self.root, spec.driver_volume)
            container, warnings = launch(client, spec, self.snapshot, force=force, holders=holders)
            logs = wait_for_first_logs(container, LOG_LINES, 3.0)
            title = f"Started {container.name} ({container.id[:12]}), {container.status}"
            self.post_message(self.Finished(title, warnings, logs, None, container.id))
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
            if msg.container_id:
                from gpudock.ui.screens.containers import select_launched

                select_launched(self.app, msg.container_id)
                if self.on_launched is not None:
                    self.on_launched(msg.container_id)
                t.append(
                    "The marks are cleared; Escape, then c: it is selected on the Containers screen.\n", style="dim"
                )
            for w in msg.warnings:
                t.append(f"warning: {w}\n", style="yellow")
            t.append("First log lines:\n" if msg.logs else "No log lines yet.\n", style="dim")
            for line in msg.logs:
                t.append(f"  {line}\n")
        self.query_one("#launch-result", Static).update(t)

    # -- the docker run line to the clipboard, the launch to a compose file ----------------------

    def action_copy_line(self) -> None:
        if self.spec is None:
            self.notify("Nothing to copy: fix the form first.", severity="error", timeout=4)
            return
        line = self.spec.docker_run_line()
        self.app.copy_to_clipboard(line)
        self.notify(
            "Copied the docker run line to your clipboard (OSC 52: the terminal you are in, over SSH too).", timeout=4
        )

    def action_save_compose(self) -> None:
        if refused_readonly(self, "saving a compose file"):
            return
        if self.spec is None:
            self.notify("Nothing to save: fix the form first.", severity="error", timeout=4)
            return
        spec = self.spec

        def answered(path: str | None) -> None:
            if path:
                self._save(spec, path, None)

        self.app.push_screen(ComposePathScreen(), answered)

    @work(thread=True, group="launch-compose", exit_on_error=False)
    def _save(self, spec: LaunchSpec, path: str, expected) -> None:
        from gpudock.toolkit.atomic import AtomicWriteError, HostFile, atomic_write, read_snapshot

        f = HostFile.of(path)
        try:
            if expected is None:
                snap = read_snapshot(f)
                if snap.exists:  # never over a file without asking
                    self.post_message(self.Saved("", False, overwrite=snap, path=path))
                    return
                expected = snap
            host = getattr(self.app, "host", None)
            if host is not None:
                host.refuse_if_readonly(f"writing {f.shown}")
            res = atomic_write(f, spec.compose_text().encode(), expected)
        except (AtomicWriteError, OSError) as e:
            self.post_message(self.Saved(f"Not saved: {e}", True))
            return
        except Exception as e:  # noqa: BLE001 - read-only, or anything else: said in the form
            self.post_message(self.Saved(f"Not saved: {e}", True))
            return
        kept = f"; the previous version is kept as {res.backup}" if res.backup else ""
        self.post_message(self.Saved(f"Saved the launch as {res.path} (docker compose -f {path} up -d){kept}", False))

    @on(Saved)
    def _on_saved(self, msg: Saved) -> None:
        if msg.overwrite is not None:
            spec, snap, path = self.spec, msg.overwrite, msg.path
            body = Text()
            body.append(f"{path} exists ({snap.size} bytes).\n\n")
            body.append("Write this launch over it? The previous version is kept beside it as .gpudock-bak.")

            def answered(yes: bool | None) -> None:
                if yes and spec is not None:
                    self._save(spec, path, snap)
                else:
                    self.notify("Not saved: the file is as it was.", timeout=4)

            self.app.push_screen(
                ConfirmScreen(f"Overwrite {path}?", body, yes="overwrite", id="compose-confirm"), answered
            )
            return
        self.notify(msg.message, severity="error" if msg.error else "information", timeout=8)


class ComposePathScreen(ModalScreen[str | None]):
    """Where to save the compose file: a path (relative to the current directory); Enter saves."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="compose-path-cancel")]
    DEFAULT = "compose.yaml"

    def compose(self) -> ComposeResult:
        with Vertical(id="compose-path-box"):
            yield Static(Text("Save the launch as a compose file", style="bold"), id="compose-path-title")
            yield Input(self.DEFAULT, id="compose-path-input", compact=True)
            yield Static(
                Text(
                    "A path; a relative one is in the directory gpudock runs in. Enter: save (an existing file "
                    "is not written over without asking); Escape: cancel.",
                    style="dim",
                ),
                id="compose-path-hint",
            )

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        path = event.value.strip()
        if path:
            self.dismiss(path)

    def action_cancel(self) -> None:
        self.dismiss(None)


def _mig_select(g: Gpu, i: int) -> Select:
    options = [(f"the whole GPU {g.index}", "")]
    for m in g.mig_devices:
        mem = f" {m.memory_total_mib} MiB" if m.memory_total_mib is not None else ""
        options.append((f"MIG {g.index}:{m.index}  {m.profile or '?'}{mem}  {m.uuid[:17]}…", m.uuid))
    return Select(options, value="", allow_blank=False, id=f"f-mig-{i}", compact=True)


def _field(label: str, widget) -> ComposeResult:
    with Horizontal(classes="launch-field"):
        yield Label(label)
        yield widget


def _docker_from_env():
    import docker

    return docker.from_env()
