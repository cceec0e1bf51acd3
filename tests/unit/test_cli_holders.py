"""`gpudock holders` without a Docker engine: the GPU part still prints, and the status says why."""

from __future__ import annotations

import json

from gpudock.cli import main


def test_holders_json_without_engine(tmp_path, capsys):
    rc = main(["holders", "--demo", "--json", "--docker-host", f"unix://{tmp_path}/none.sock"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 2
    assert out["docker"]["state"] == "unavailable"
    assert "does not exist" in out["docker"]["message"] and "DOCKER_HOST" in out["docker"]["message"]
    assert len(out["gpus"]) == 8 and out["containers"] == []
    assert set(out) >= {"docker", "gpus", "containers", "conflicts", "nvml_error", "source"}
    # the demo's own /proc maps the process to a container this engine does not know
    assert out["gpus"][0]["processes"][0]["location"] == "foreign-container"


def test_holders_text_without_permission(tmp_path, capsys):
    sock = tmp_path / "docker.sock"
    sock.write_text("")
    sock.chmod(0)
    rc = main(["holders", "--demo", "--docker-host", f"unix://{sock}"])
    out = capsys.readouterr().out
    assert rc == 2
    assert out.startswith("Docker unavailable: ")
    assert "GPU 0" in out


def test_holders_text_refused(tmp_path, capsys):
    import socket

    path = tmp_path / "d.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))  # bound, not listening: connect() is refused
    try:
        rc = main(["holders", "--demo", "--docker-host", f"unix://{path}"])
    finally:
        s.close()
    out = capsys.readouterr().out
    assert rc == 2
    assert "refused" in out or "Cannot talk" in out


def test_holders_text_privileged():
    from gpudock.commands.holders import render_holders_text
    from gpudock.host.holders import build_holders
    from gpudock.host.procmap import ContainerPid
    from gpudock.model import Claim, Container, Gpu, GpuProcess, HostSnapshot

    u = [f"GPU-{i:08x}-0000-0000-0000-000000000000" for i in range(3)]
    gpus = (
        Gpu(index=0, uuid=u[0], minor=0),
        Gpu(index=1, uuid=u[1], minor=1),
        Gpu(index=2, uuid=u[2], minor=2, processes=(GpuProcess(77, 100, command="python"),)),
    )
    snap = HostSnapshot("550.54", "12.4", "12.550", gpus)
    claims = (Claim("runtime-env", "1", u[1]),) + tuple(Claim("privileged", "--privileged", x) for x in u)
    priv = Container("p" * 64, "prv", "img", "running", claims=claims)
    table = {77: ContainerPid(77, ("p" * 64,), (77, 3))}
    m = build_holders(snap, [priv], pid_mapper=table.get)
    text = render_holders_text(m, snap)
    lines = text.splitlines()
    assert f"GPU 0  {u[0]}  /dev/nvidia0  free" in lines  # reach is not holding
    assert "    held by prv (pppppppppppp, running) via --runtime: 1" in lines
    assert (
        "    process PID 77 in prv as PID 3: python, 100 MiB  [not given this GPU: reached through --privileged]"
        in lines
    )
    row = next(ln for ln in lines if ln.startswith("pppppppppppp"))
    assert row.split() == ["pppppppppppp", "prv", "running", "1", "(+2", "reachable)", "runtime-env,", "privileged"]
    assert any(ln.startswith("  ! [privileged] container prv is privileged") for ln in lines)
