"""The argument generator: every mode, every format, order, minors, validation, engine support."""

from __future__ import annotations

import json
import shlex

import docker.types
import pytest

from gpudock.launch.engine import check_mode_supported, nvidia_runtime_name
from gpudock.launch.selection import parse_selection
from gpudock.launch.spec import LaunchError, build_spec, validate_image
from gpudock.model import Gpu, HostSnapshot
from helpers.gpus import UUIDS, plugin_host, shuffled_host


def spec(gpus, mode="runtime", host=None, **kw):
    snap = host or shuffled_host()
    return build_spec(snap, parse_selection(gpus, snap), mode, **kw)


# -- legacy --------------------------------------------------------------------------------------


def test_plugin_line_byte_for_byte_for_gpus_0_and_2():
    s = spec("0,2", "legacy", host=plugin_host())
    assert s.plugin_line() == (
        "--volume-driver=nvidia-docker --volume=nvidia_driver_387.26:/usr/local/nvidia:ro "
        "--device=/dev/nvidiactl --device=/dev/nvidia-uvm --device=/dev/nvidia-uvm-tools "
        "--device=/dev/nvidia0 --device=/dev/nvidia2"
    )
    assert s.render("plugin") == s.plugin_line()


def test_plugin_json_object_keys_and_order():
    s = spec("0,2", "legacy", host=plugin_host(), uvm_tools=False)
    assert json.dumps(s.plugin_args()) == (
        '{"VolumeDriver": "nvidia-docker", "Volumes": ["nvidia_driver_387.26:/usr/local/nvidia:ro"], '
        '"Devices": ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia0", "/dev/nvidia2"]}'
    )


def test_uvm_tools_only_where_present():
    assert "--device=/dev/nvidia-uvm-tools" not in spec("0", "legacy", uvm_tools=False).gpu_args()
    assert "--device=/dev/nvidia-uvm-tools" in spec("0", "legacy", uvm_tools=True).gpu_args()


def test_legacy_maps_cards_by_minor_never_by_index_and_keeps_order():
    # index 0 is /dev/nvidia3 and index 2 is /dev/nvidia1 on this host
    assert spec("0,2", "legacy", uvm_tools=False).gpu_args() == [
        "--volume=nvidia_driver_535.129.03:/usr/local/nvidia:ro",
        "--device=/dev/nvidiactl",
        "--device=/dev/nvidia-uvm",
        "--device=/dev/nvidia3",
        "--device=/dev/nvidia1",
    ]
    assert spec("2,0", "legacy", uvm_tools=False).gpu_args()[-2:] == ["--device=/dev/nvidia1", "--device=/dev/nvidia3"]


def test_legacy_gpudock_form_uses_the_local_volume_not_the_volume_driver():
    line = spec("0", "legacy").cli_line()
    assert "--volume-driver" not in line
    assert line.startswith("--volume=nvidia_driver_535.129.03:/usr/local/nvidia:ro ")


def test_legacy_with_device_nodes_elsewhere_on_the_docker_host():
    s = spec("1", "legacy", dev_dir="/srv/fake-dev/", uvm_tools=False)
    assert s.gpu_args()[1:] == [
        "--device=/srv/fake-dev/nvidiactl:/dev/nvidiactl",
        "--device=/srv/fake-dev/nvidia-uvm:/dev/nvidia-uvm",
        "--device=/srv/fake-dev/nvidia0:/dev/nvidia0",
    ]
    assert s.sdk_kwargs()["devices"][-1] == "/srv/fake-dev/nvidia0:/dev/nvidia0:rwm"


def test_legacy_needs_minors_and_a_driver_version():
    no_minor = HostSnapshot("535.129.03", "12.2", None, (Gpu(0, UUIDS[0], minor=None),))
    with pytest.raises(LaunchError, match="GPU 0 has no device minor"):
        spec("0", "legacy", host=no_minor)
    no_driver = HostSnapshot(None, None, None, (Gpu(0, UUIDS[0], minor=0),))
    with pytest.raises(LaunchError, match="needs the driver version"):
        spec("0", "legacy", host=no_driver)


# -- runtime -------------------------------------------------------------------------------------


def test_runtime_mode_uuids_in_order_and_default_capabilities():
    assert spec("2,0").gpu_args() == [
        "--runtime=nvidia",
        "-e",
        f"NVIDIA_VISIBLE_DEVICES={UUIDS[2]},{UUIDS[0]}",
        "-e",
        "NVIDIA_DRIVER_CAPABILITIES=compute,utility",
    ]


def test_runtime_mode_indices_all_and_capabilities():
    assert spec("2 0", ids="index").env[0] == ("NVIDIA_VISIBLE_DEVICES", "2,0")
    s = spec("all", capabilities="utility,video graphics")
    assert s.env == (("NVIDIA_VISIBLE_DEVICES", "all"), ("NVIDIA_DRIVER_CAPABILITIES", "utility,video,graphics"))
    assert spec("1", capabilities=["all"]).env[1] == ("NVIDIA_DRIVER_CAPABILITIES", "all")
    assert spec("1", runtime="nvidia-cdi").sdk_kwargs()["runtime"] == "nvidia-cdi"


# -- gpus ----------------------------------------------------------------------------------------


def test_gpus_mode_quotes_the_device_list_for_the_docker_csv_parser():
    s = spec("2,0", "gpus", ids="index")
    assert s.gpu_args() == ["--gpus", '"device=2,0"']
    assert s.cli_line() == "--gpus '\"device=2,0\"'"
    assert [r.to_json() for r in s.device_requests] == [
        {"Driver": "", "Count": 0, "DeviceIDs": ["2", "0"], "Capabilities": [["gpu"]], "Options": {}}
    ]


def test_gpus_mode_all_capabilities_and_sdk_device_request():
    assert spec("all", "gpus").gpu_args() == ["--gpus", "all"]
    s = spec("3", "gpus", capabilities="compute,video")
    assert s.gpu_args() == ["--gpus", f'"device={UUIDS[3]}","capabilities=compute,video"']
    (req,) = s.sdk_kwargs()["device_requests"]
    assert isinstance(req, docker.types.DeviceRequest)
    assert (req.driver, req.count, req.device_ids, req.capabilities) == (
        "",
        0,
        [UUIDS[3]],
        [["compute", "video", "gpu"]],
    )
    all_caps = spec("3", "gpus", capabilities="all").device_requests[0].capabilities
    assert all_caps == (("compute", "compat32", "graphics", "utility", "video", "display", "gpu"),)
    with pytest.raises(LaunchError, match="'ngx' cannot be asked for with --gpus"):
        spec("3", "gpus", capabilities="ngx")


# -- cdi -----------------------------------------------------------------------------------------


def test_cdi_mode_one_device_per_card():
    s = spec("2,0", "cdi", ids="index")
    assert s.gpu_args() == ["--device", "nvidia.com/gpu=2", "--device", "nvidia.com/gpu=0"]
    (req,) = s.sdk_kwargs()["device_requests"]
    assert (req.driver, req.device_ids) == ("cdi", ["nvidia.com/gpu=2", "nvidia.com/gpu=0"])
    assert spec("all", "cdi").gpu_args() == ["--device", "nvidia.com/gpu=all"]
    assert spec("1", "cdi").gpu_args() == ["--device", f"nvidia.com/gpu={UUIDS[1]}"]
    with pytest.raises(LaunchError, match="capabilities do not apply in cdi mode"):
        spec("1", "cdi", capabilities="video")


# -- formats -------------------------------------------------------------------------------------


def test_docker_run_line_round_trips_through_a_shell_parser_and_never_uses_a_shell():
    s = spec(
        "2,0",
        "gpus",
        image="nvidia/cuda:12.2.0-base",
        command="sh -c 'echo $HOME; ls' ; rm -rf /",
        name="train-a",
        env=["MSG=hello world"],
    )
    assert s.command == ("sh", "-c", "echo $HOME; ls", ";", "rm", "-rf", "/")
    argv = shlex.split(s.docker_run_line())
    assert argv == ["docker", "run", *s.run_args()]
    assert s.run_args() == [
        "--detach",
        "--name=train-a",
        *s.gpu_args(),
        "-e",
        "MSG=hello world",
        "nvidia/cuda:12.2.0-base",
        *s.command,
    ]
    assert s.sdk_kwargs()["command"] == list(s.command)
    assert "privileged" not in s.sdk_kwargs()


def test_json_rendering():
    s = spec("2,0", "legacy", image="busybox", uvm_tools=False)
    j = json.loads(s.render("json"))
    assert j["mode"] == "legacy"
    assert [(g["index"], g["minor"]) for g in j["gpus"]] == [(2, 1), (0, 3)]
    assert j["devices"][-1] == {"host": "/dev/nvidia3", "container": "/dev/nvidia3", "permissions": "rwm"}
    assert j["volumes"] == [{"source": "nvidia_driver_535.129.03", "target": "/usr/local/nvidia", "read_only": True}]
    assert j["docker_args"] == s.gpu_args()
    assert j["docker_run"] == s.docker_run_line()


def test_sdk_kwargs_for_legacy_and_runtime():
    kw = spec("0", "legacy", image="busybox", command=["true"], uvm_tools=False).sdk_kwargs()
    assert kw == {
        "image": "busybox",
        "command": ["true"],
        "detach": True,
        "devices": [
            "/dev/nvidiactl:/dev/nvidiactl:rwm",
            "/dev/nvidia-uvm:/dev/nvidia-uvm:rwm",
            "/dev/nvidia3:/dev/nvidia3:rwm",
        ],
        "volumes": {"nvidia_driver_535.129.03": {"bind": "/usr/local/nvidia", "mode": "ro"}},
    }
    kw = spec("0", image="busybox", env={"A": "1"}).sdk_kwargs()
    assert kw["runtime"] == "nvidia"
    assert kw["environment"] == {
        "NVIDIA_VISIBLE_DEVICES": UUIDS[0],
        "NVIDIA_DRIVER_CAPABILITIES": "compute,utility",
        "A": "1",
    }
    text = spec("1", "gpus", image="busybox").render("sdk")
    assert (
        f"device_requests=[docker.types.DeviceRequest(driver='', device_ids=['{UUIDS[1]}'], capabilities=[['gpu']])]"
        in text
    )


def test_compose_runtime_fragment_exact():
    s = spec("2,0", image="nvidia/cuda:12.2.0-base", command=["nvidia-smi", "-L"], name="smi", ids="index")
    assert s.render("compose") == (
        "# gpudock: runtime mode, GPUs 2 (" + UUIDS[2] + "), 0 (" + UUIDS[0] + ")\n"
        "services:\n"
        "  smi:\n"
        '    image: "nvidia/cuda:12.2.0-base"\n'
        "    command:\n"
        '      - "nvidia-smi"\n'
        '      - "-L"\n'
        '    container_name: "smi"\n'
        '    runtime: "nvidia"\n'
        "    environment:\n"
        '      NVIDIA_VISIBLE_DEVICES: "2,0"\n'
        '      NVIDIA_DRIVER_CAPABILITIES: "compute,utility"\n'
    )


def test_compose_gpus_and_legacy_fragments():
    text = spec("2,0", "gpus", ids="index").compose_text()
    assert (
        "    deploy:\n      resources:\n        reservations:\n          devices:\n"
        '            - driver: "nvidia"\n              device_ids:\n                - "2"\n                - "0"\n'
        '              capabilities:\n                - "gpu"\n'
    ) in text
    assert 'count: "all"' in spec("all", "gpus").compose_text()
    legacy = spec("0", "legacy", uvm_tools=False).compose_text()
    assert '      - "/dev/nvidia3:/dev/nvidia3:rwm"\n' in legacy
    assert legacy.endswith("volumes:\n  nvidia_driver_535.129.03:\n    external: true\n")


def test_k8s_fragment_counts_cards_and_says_it_cannot_pin_them():
    text = spec("2,0").render("k8s")
    assert text.endswith("resources:\n  limits:\n    nvidia.com/gpu: 2\n")
    assert "cannot pin specific cards" in text
    assert "NVIDIA_VISIBLE_DEVICES" in text


# -- MPS -----------------------------------------------------------------------------------------


def test_mps_thread_percentage():
    s = spec("1", mps_thread_percentage=33)
    assert ("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE", "33") in s.env
    assert s.gpu_args()[-3:] == ["-e", "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=33", "--ipc=host"]
    assert s.sdk_kwargs()["ipc_mode"] == "host"
    legacy = spec("1", "legacy", mps_thread_percentage=50, uvm_tools=False)
    assert legacy.gpu_args()[-1] == "--volume=/tmp/nvidia-mps:/tmp/nvidia-mps"
    for bad in (0, 101, True):
        with pytest.raises(LaunchError, match="MPS thread percentage must be 1-100"):
            spec("1", mps_thread_percentage=bad)


# -- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ref",
    [
        "busybox",
        "nvidia/cuda:12.2.0-base-ubuntu22.04",
        "localhost:5000/team/img:v1",
        "registry.example.com/a/b",
        "gpudock-test/busybox:latest",
        "a__b/c-d.e:TAG_1",
        "busybox@sha256:" + "a" * 64,
        "[::1]:5000/img",
    ],
)
def test_valid_image_references(ref):
    assert validate_image(ref) == ref


@pytest.mark.parametrize(
    "ref, why",
    [
        ("Busybox", "must be lowercase"),
        ("", "expected"),
        ("a b", "expected"),
        ("img:", "expected"),
        ("-img", "expected"),
        ("img:tag:tag", "expected"),
        ("a//b", "expected"),
        ("img@sha256:abc", "expected"),
        ("x" * 256, "longer than 255"),
    ],
)
def test_invalid_image_references(ref, why):
    with pytest.raises(LaunchError, match=f"invalid image reference .*{why}"):
        validate_image(ref)


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"command": "echo 'unterminated"}, "command does not parse .*No closing quotation"),
        ({"env": ["1A=x"]}, "invalid env name '1A'"),
        ({"env": ["A-B=x"]}, "invalid env name 'A-B'"),
        ({"env": ["NOVALUE"]}, "is not NAME=VALUE"),
        ({"env": ["A=1", "A=2"]}, "env A is given twice"),
        ({"env": ["NVIDIA_VISIBLE_DEVICES=all"]}, "NVIDIA_VISIBLE_DEVICES is set by gpudock"),
        ({"env": ["NVIDIA_DRIVER_CAPABILITIES=all"]}, "NVIDIA_DRIVER_CAPABILITIES is set by gpudock"),
        ({"capabilities": "compute,gpu"}, "unknown driver capability 'gpu'"),
        ({"capabilities": "all,compute"}, "'all' cannot be combined"),
        ({"name": "-x"}, "invalid container name"),
        ({"image": "UPPER"}, "must be lowercase"),
    ],
)
def test_bad_input_is_refused_with_the_reason(kw, message):
    with pytest.raises(LaunchError, match=message):
        spec("1", **kw)


def test_unknown_mode_and_format():
    with pytest.raises(LaunchError, match="unknown mode 'nvidia'"):
        spec("1", "nvidia")
    with pytest.raises(LaunchError, match="unknown format 'yaml'"):
        spec("1").render("yaml")
    with pytest.raises(LaunchError, match="only for legacy mode"):
        spec("1").plugin_line()


def test_spec_is_immutable():
    s = spec("1")
    with pytest.raises(AttributeError):
        s.image = "other"  # type: ignore[misc]


# -- engine support --------------------------------------------------------------------------------


def test_engine_mode_support_from_docker_info():
    plain = {"ServerVersion": "20.10.24", "Runtimes": {"runc": {"path": "runc"}}}
    with pytest.raises(LaunchError, match=r"runtime mode needs the NVIDIA runtime registered .*\(runtimes: runc\)"):
        check_mode_supported("runtime", plain)
    assert check_mode_supported("legacy", plain) is None
    assert check_mode_supported("gpus", plain) is None
    with pytest.raises(LaunchError, match="gpus mode needs Docker 19.03"):
        check_mode_supported("gpus", {"ServerVersion": "18.09.7"})
    with pytest.raises(LaunchError, match=r"cdi mode needs Docker 25 .*this engine is 20.10.24\); use --mode gpus"):
        check_mode_supported("cdi", plain)
    with pytest.raises(LaunchError, match=r"CDI is not enabled .*restart dockerd, or use --mode gpus$"):
        check_mode_supported("cdi", {"ServerVersion": "26.1.0", "CDISpecDirs": []})
    assert check_mode_supported("cdi", {"ServerVersion": "26.1.0", "CDISpecDirs": ["/etc/cdi"]}) is None
    by_path = {"Runtimes": {"runc": {"path": "runc"}, "nv": {"path": "/usr/bin/nvidia-container-runtime"}}}
    assert check_mode_supported("runtime", by_path) == "nv"
    assert nvidia_runtime_name({"Runtimes": {"nvidia": {"path": "/usr/bin/runc"}}}) == "nvidia"
