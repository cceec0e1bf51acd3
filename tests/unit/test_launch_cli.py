"""`gpudock args` and `gpudock serve` on the command line (the demo host: index 0 is /dev/nvidia3)."""

from __future__ import annotations

import json

import pytest

from gpudock.cli import main

DEMO_2 = "GPU-1d2e3f40-5a6b-4c7d-8e9f-a0b1c2d3e403"
DEMO_0 = "GPU-4f3a1c2e-9b7d-4e21-8a55-0c1d2e3f4a01"


def run(capsys, *argv):
    rc = main(["--demo", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_args_default_is_runtime_mode_by_uuid_in_order(capsys):
    rc, out, err = run(capsys, "args", "2,0")
    assert (rc, err) == (0, "")
    assert out == (
        f"--runtime=nvidia -e NVIDIA_VISIBLE_DEVICES={DEMO_2},{DEMO_0} -e NVIDIA_DRIVER_CAPABILITIES=compute,utility\n"
    )


def test_args_plugin_format_is_the_plugins_line(capsys, tmp_path):
    # the demo host has /dev/nvidia-uvm-tools, so the plugin's line names it (1.0 added it when present)
    rc, out, _ = run(capsys, "args", "--mode", "legacy", "--format", "plugin", "0", "2")
    assert rc == 0
    assert out == (
        "--volume-driver=nvidia-docker --volume=nvidia_driver_535.129.03:/usr/local/nvidia:ro "
        "--device=/dev/nvidiactl --device=/dev/nvidia-uvm --device=/dev/nvidia-uvm-tools "
        "--device=/dev/nvidia3 --device=/dev/nvidia1\n"
    )


@pytest.mark.parametrize(
    "fmt, expect",
    [
        ("cli", "--gpus '\"device=2,0\"'\n"),
        ("compose", '              device_ids:\n                - "2"\n                - "0"\n'),
        ("k8s", "    nvidia.com/gpu: 2\n"),
        (
            "sdk",
            "device_requests=[docker.types.DeviceRequest(driver='', device_ids=['2', '0'], capabilities=[['gpu']])]",
        ),
        ("run", "docker run --detach --gpus '\"device=2,0\"' busybox:1.36\n"),
    ],
)
def test_args_formats(capsys, fmt, expect):
    rc, out, err = run(
        capsys, "args", "--mode", "gpus", "--ids", "index", "--format", fmt, "--image", "busybox:1.36", "2", "0"
    )
    assert rc == 0, err
    assert expect in out


def test_args_json(capsys):
    rc, out, _ = run(capsys, "args", "--mode", "cdi", "--format", "json", "0000:18:00.0")
    assert rc == 0
    j = json.loads(out)
    assert j["docker_args"] == ["--device", f"nvidia.com/gpu={DEMO_2}"]
    assert j["gpus"][0]["index"] == 2 and j["gpus"][0]["minor"] == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["args", "0", DEMO_0], "are the same card"),
        (["args", "12"], "unknown GPU '12'"),
        (["args", "--format", "plugin", "0"], "only for legacy mode"),
        (["args", "--format", "run", "0"], "--format run needs --image"),
        (["args", "--image", "Up:per", "0"], "invalid image reference"),
        (["args", "--mode", "legacy", "--cap", "video", "0"], "capabilities do not apply in legacy mode"),
        (["args", "--mps", "0", "0"], "MPS thread percentage must be 1-100"),
        (["serve", "--host", "0.0.0.0"], "listens on 127.0.0.1 only"),
        pytest.param(
            ["args", "9" * 5000],
            "unknown GPU '99999999999999999999'… (5000 characters): this host has no GPU with NVML index",
            id="5000-digit index",
        ),
    ],
)
def test_errors_are_one_line_on_stderr_exit_2(capsys, argv, message):
    rc, out, err = run(capsys, *argv)
    assert rc == 2 and out == ""
    assert err.startswith("gpudock: ") and err.count("\n") == 1 and message in err


def test_the_launcher_core_never_imports_textual():
    import subprocess
    import sys

    code = (
        "import sys, gpudock.launch.selection, gpudock.launch.spec, gpudock.launch.engine, gpudock.launch.run, "
        "gpudock.launch.volume, gpudock.launch.plugin_server, gpudock.commands.launch; "
        "print('textual' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_gpudock_serve_answers_the_plugin_paths():
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpudock.cli", "--demo", "serve", "--port", str(port)], stderr=subprocess.PIPE, text=True
    )
    try:
        assert "nvidia-docker-plugin API on http://127.0.0.1:" in proc.stderr.readline()
        url = f"http://127.0.0.1:{port}/v1.0/docker/cli?dev=2+0&vol=nvidia_driver"
        for _ in range(50):
            try:
                body = urllib.request.urlopen(url, timeout=5).read().decode()
                break
            except OSError:
                time.sleep(0.1)
        assert body.endswith("--device=/dev/nvidia-uvm --device=/dev/nvidia1 --device=/dev/nvidia3") or body.endswith(
            "--device=/dev/nvidia-uvm-tools --device=/dev/nvidia1 --device=/dev/nvidia3"
        )
        info = urllib.request.urlopen(f"http://127.0.0.1:{port}/gpu/info/json", timeout=5).read()
        assert b'"Driver":"535.129.03"' in info
    finally:
        proc.terminate()
        proc.wait(10)
