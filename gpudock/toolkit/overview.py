"""Everything the toolkit screen and `gpudock toolkit status` show, as one JSON-able document.

Owns ``overview()``: config.toml as the toolkit reads it, daemon.json's runtimes and the running
engine's view, with every unusable file reported as an error string instead of raised, so one
broken file does not hide the rest. The caller fetches ``docker info`` (the UI has its own client).
"""

from __future__ import annotations

from collections.abc import Mapping

from gpudock.host.root import HostRoot
from gpudock.toolkit import config as tkconfig
from gpudock.toolkit import daemon_json as dj
from gpudock.toolkit.atomic import AtomicWriteError


def overview(
    config: str | None = None,
    daemon_json: str | None = None,
    root: str | HostRoot = "/",
    docker_info: dict | None = None,
    docker_error: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[dict, list[str]]:
    """(document, errors). ``docker_info`` None: the engine is reported unreachable with
    ``docker_error``. ``environ``: where the toolkit's config lookup reads its overrides."""
    errors: list[str] = []
    loc = tkconfig.locate_config(config, root=root, environ=environ)
    cfg_out: dict = {
        "path": loc.path,
        "source": loc.source,
        "exists": loc.exists,
        "error": None,
        "settings": None,
        "debug": None,
    }
    if loc.error:
        # something is there but it cannot be read as config.toml: a link loop, a FIFO, a device
        cfg_out["error"] = loc.error
        errors.append(loc.error)
    elif loc.exists:
        try:
            st = tkconfig.load_config(loc).status().to_json()
            cfg_out.update(settings=st["settings"], debug=st["debug"])
        except (tkconfig.ConfigError, AtomicWriteError) as e:
            cfg_out["error"] = str(e)
            errors.append(str(e))
    else:
        # not an error: a host without the toolkit configured; the fix is offered
        cfg_out["error"] = (
            f"{loc.path} does not exist; `gpudock toolkit defaults --config {loc.path}` writes the toolkit's defaults"
        )

    dfile = dj.daemon_json_file(daemon_json, root=root)
    doc = None
    try:
        doc = dj.load_daemon_json(dfile)
        dj_out = doc.to_json() | {"error": None}
    except (dj.DaemonJsonError, AtomicWriteError) as e:
        dj_out = {"path": dfile.shown, "exists": True, "error": str(e)}
        errors.append(str(e))

    if docker_info is None:
        engine = {"reachable": False, "error": docker_error or "the Docker engine was not asked"}
    else:
        engine = {"reachable": True, "error": None} | dj.engine_runtimes(docker_info, "nvidia", doc).to_json()
    return {"config": cfg_out, "daemon_json": dj_out, "engine": engine}, errors
