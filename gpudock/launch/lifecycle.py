"""What acting on a running container does and checks: stop, restart, remove, logs, a shell.

This module owns the Docker side of the Containers screen's keys and of ``gpudock container``:

* a container is named by the id the operator was shown (or, from the CLI, a name); one that went
  away meanwhile is :class:`ContainerGone` — nothing else is touched, no other container is looked
  up in its place; a name that now belongs to another container than the id shown is refused too;
* :func:`act` stops (the image's stop signal, then SIGKILL after ``timeout`` seconds, as
  ``docker stop``), restarts, or removes (a running container only with ``force``, as ``docker rm
  -f``) and says what it did;
* :func:`holdings` is what the container holds, by GPU index, PCI bus id and device node, so a
  confirmation (or the CLI's report) names what stopping it frees;
* :class:`LogStream` follows a container's output (stdout and stderr) through the Engine API;
* :func:`shell_argv` is the ``docker exec -it CONTAINER sh`` command line for the docker CLI (run
  as a child process with the terminal, never through a host shell); :func:`probe_shell` first
  starts ``sh -c 'exit 0'`` through the API, so that an image without sh is said in the engine's
  words before the terminal is handed over, and :func:`explain_exec` turns what the engine or the
  CLI said into operator words ("the image has no sh").

The client is a docker SDK client the caller made (the session's). Plain Python; no Textual.
"""

from __future__ import annotations

import codecs
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import docker
import docker.errors

__all__ = [
    "ACTIONS",
    "ActionDone",
    "ActionError",
    "ContainerGone",
    "LogStream",
    "act",
    "explain_exec",
    "find",
    "holdings",
    "shell_argv",
]

# action -> the verb for messages, its past tense, its -ing form
ACTIONS: dict[str, tuple[str, str, str]] = {
    "stop": ("stop", "stopped", "stopping"),
    "restart": ("restart", "restarted", "restarting"),
    "remove": ("remove", "removed", "removing"),
}
STOP_TIMEOUT_S = 10  # docker stop's default
SHELL = "sh"


class ActionError(Exception):
    """The action was not done (or not all of it); the message says what happened and what to do."""


class ContainerGone(ActionError):
    """The container is no longer there (removed since it was shown): nothing was done."""


@dataclass(frozen=True, slots=True)
class ActionDone:
    action: str
    id: str
    name: str
    status: str | None  # the container's state afterwards (None: removed)
    message: str

    def to_json(self) -> dict:
        return {"action": self.action, "id": self.id, "name": self.name, "status": self.status, "message": self.message}


def _engine_words(e: docker.errors.APIError) -> str:
    return str(e.explanation or e)


def find(client: docker.DockerClient, ref: str, *, expect_id: str | None = None, shown_as: str | None = None):
    """The container ``ref`` names (an id, an id prefix or a name). ``expect_id``: the id the
    operator was shown; a name that now names another container is refused. ``shown_as``: how to
    name it in messages (default ``ref``)."""
    who = shown_as or ref
    try:
        c = client.containers.get(ref)
    except docker.errors.NotFound:
        raise ContainerGone(f"container {who} is gone (removed since it was shown): nothing was done") from None
    except docker.errors.APIError as e:
        raise ActionError(f"cannot look up container {who}: the Docker engine said: {_engine_words(e)}") from None
    if expect_id is not None and c.id != expect_id:
        raise ContainerGone(
            f"container {who} is now another container (id {c.id[:12]}, the one shown was {expect_id[:12]}): "
            "nothing was done"
        )
    return c


def act(
    client: docker.DockerClient,
    ref: str,
    action: str,
    *,
    expect_id: str | None = None,
    force: bool = False,
    timeout: int = STOP_TIMEOUT_S,
    shown_as: str | None = None,
) -> ActionDone:
    """Stop, restart or remove one container (see the module's notes). Raises
    :class:`ActionError` (:class:`ContainerGone` when it is no longer there)."""
    if action not in ACTIONS:
        raise ActionError(f"unknown container action {action!r}: {', '.join(ACTIONS)}")
    c = find(client, ref, expect_id=expect_id, shown_as=shown_as)
    name = c.name
    verb, done, _ = ACTIONS[action]
    try:
        if action == "stop":
            if c.status not in ("running", "paused", "restarting"):
                return ActionDone(action, c.id, name, c.status, f"{name} was not running ({c.status}): nothing to stop")
            c.stop(timeout=timeout)
        elif action == "restart":
            c.restart(timeout=timeout)
        else:
            if c.status in ("running", "paused", "restarting") and not force:
                raise ActionError(
                    f"{name} is {c.status}: stop it first, or remove it with force (it is killed, then removed)"
                )
            c.remove(force=force)
            return ActionDone(action, c.id, name, None, f"{name} ({c.id[:12]}) {done}")
    except docker.errors.NotFound:
        raise ContainerGone(f"container {name} went away while it was being {done}: nothing else was done") from None
    except docker.errors.APIError as e:
        raise ActionError(f"could not {verb} {name}: the Docker engine said: {_engine_words(e)}") from None
    try:
        c.reload()
        status = c.status
    except docker.errors.NotFound:  # --rm: a stopped container removes itself
        status = None
    except docker.errors.APIError:
        status = "unknown"
    return ActionDone(
        action, c.id, name, status, f"{name} ({c.id[:12]}) {done}" + (f", now {status}" if status else "")
    )


def holdings(cg, hmap) -> list[str]:
    """What a container holds, one line per GPU: "GPU 2  0000:07:00.0  /dev/nvidia1  --gpus",
    its MIG devices, and how many GPU processes run in it. ``cg``: its
    :class:`gpudock.host.holders.ContainerGpus`; ``hmap``: the :class:`HoldersMap` it is from."""
    from gpudock.model import mechanism_label

    out: list[str] = []
    for ref in cg.gpus:
        g = hmap.gpu(ref.uuid) if hmap is not None else None
        bus = (g.pci_bus_id if g is not None else None) or "bus id unknown"
        node = f"/dev/nvidia{ref.minor}" if ref.minor is not None else "no device node"
        line = f"GPU {ref.index if ref.index is not None else '?'}  {bus}  {node}"
        how = ", ".join(dict.fromkeys(mechanism_label(m) for m in ref.mechanisms))
        if how:
            line += f"  ({how})"
        if ref.mig_uuids:
            line += "  MIG " + " ".join(ref.mig_uuids)
        out.append(line)
    if cg.privileged and cg.reachable:
        out.append(f"--privileged: it can open {len(cg.reachable)} more GPU(s) it does not hold")
    if cg.processes:
        n = len(cg.processes)
        out.append(f"{n} GPU process{'es run' if n != 1 else ' runs'} in it")
    return out


class LogStream:
    """A container's output, followed: :meth:`lines` yields whole lines (stdout and stderr, as the
    engine interleaves them) as they come, from the last ``tail`` lines on; it ends when the
    container stops or the stream is closed. :meth:`close` may be called from another thread
    (it unblocks the reader)."""

    def __init__(self, container, tail: int | str = 500, follow: bool = True, on_close=None) -> None:
        self.container = container
        self.name = container.name
        self._on_close = on_close  # e.g. the client made for this stream
        try:
            self._stream = container.logs(stream=True, follow=follow, tail=tail, stdout=True, stderr=True)
        except docker.errors.NotFound:
            raise ContainerGone(f"container {self.name} is gone: no logs to follow") from None
        except docker.errors.APIError as e:
            raise ActionError(
                f"cannot read the logs of {self.name}: the Docker engine said: {_engine_words(e)}"
            ) from None
        self._closed = False

    def lines(self) -> Iterator[str]:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        pending = ""
        try:
            for chunk in self._stream:
                pending += decoder.decode(chunk)
                *whole, pending = pending.split("\n")
                for line in whole:
                    yield line.rstrip("\r")
        except Exception:  # noqa: BLE001 - the stream was closed under us, or the engine went away
            if not self._closed:
                raise
        pending += decoder.decode(b"", final=True)
        if pending:
            yield pending.rstrip("\r")

    def close(self) -> None:
        self._closed = True
        try:
            self._stream.close()
        except Exception:  # noqa: BLE001 - closing twice, or a socket already gone
            pass
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close()


def shell_argv(docker_url: str, container_id: str, shell: str = SHELL, docker_bin: str | None = None) -> list[str]:
    """``docker -H URL exec -it CONTAINER sh``, for a child process that gets the terminal. Raises
    :class:`ActionError` when the docker CLI is not installed."""
    found = docker_bin or shutil.which("docker")
    if not found:
        raise ActionError(
            "the docker command is not installed here, and a shell needs it (docker exec -it): install the "
            "Docker CLI (Debian: apt-get install docker.io; Docker's repository: docker-ce-cli)"
        )
    return [found, "-H", docker_url, "exec", "-it", container_id, shell]


def probe_shell(client: docker.DockerClient, container, shell: str = SHELL) -> None:
    """Start ``sh -c 'exit 0'`` in the container, through the Engine API, before the terminal is
    handed over: where the image has no sh, the engine's own refusal (``exec: "sh": executable
    file not found in $PATH``) comes back here, in words, and the dashboard is never suspended for
    nothing (with ``-t`` the docker CLI prints that refusal on the terminal it is about to give back).
    Raises :class:`ActionError`."""
    api = client.api
    try:
        ex = api.exec_create(container.id, [shell, "-c", "exit 0"], stdout=True, stderr=True)
        out = api.exec_start(ex["Id"])
        code = api.exec_inspect(ex["Id"]).get("ExitCode")
    except docker.errors.NotFound:
        raise ContainerGone(
            f"container {container.name} is gone (removed since it was shown): nothing was done"
        ) from None
    except docker.errors.APIError as e:
        raise ActionError(explain_exec(container.name, 1, _engine_words(e), shell) or _engine_words(e)) from None
    if code not in (0, None):
        text = out.decode("utf-8", "replace") if isinstance(out, bytes) else str(out)
        raise ActionError(
            explain_exec(container.name, code, text, shell)
            or f"{shell} in {container.name} would not start (exit status {code}): {_cut(' '.join(text.split()))}"
        )


def explain_exec(name: str, returncode: int, stderr: str, shell: str = SHELL) -> str | None:
    """What went wrong with ``docker exec``, in operator words, or None when the shell ran (the
    exit status is then the shell's own: the operator's last command). The docker CLI's own
    messages are all that reaches stderr with ``-t`` (the container's stderr comes through the
    terminal)."""
    text = " ".join(stderr.split())
    if not text:
        return None
    if "executable file not found" in text or ("no such file or directory" in text.lower() and shell in text):
        return (
            f"{name} has no {shell}: its image has no shell to open (the engine said: {_cut(text)}). "
            f"Run a program the image has: docker exec -it {name} PROGRAM"
        )
    if "is not running" in text:
        return f"{name} is not running: start it first (the engine said: {_cut(text)})"
    if "No such container" in text:
        return f"container {name} is gone (removed since it was shown): nothing was done"
    return f"docker exec into {name} failed (exit status {returncode}): {_cut(text)}"


def _cut(text: str, n: int = 240) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
