"""`gpudock nvidia-docker`: where the wrapper finds the sub-command and the image in a docker
command line, as nvidia-docker 1.0 did (and where it did better)."""

from __future__ import annotations

import pytest

from gpudock.launch.wrapper import docker_command, parse_docker_line, wrapped_args


@pytest.mark.parametrize(
    "argv, command, image",
    [
        (["run", "cuda", "nvidia-smi"], "run", "cuda"),
        (["run", "--rm", "-it", "cuda"], "run", "cuda"),
        (["run", "-e", "A=1", "--name", "x", "cuda", "-e"], "run", "cuda"),  # options after the image are CMD's
        (["run", "-v", "/a:/b", "-itd", "cuda"], "run", "cuda"),
        (["run", "-v/a:/b", "cuda"], "run", "cuda"),  # value attached to the short option
        (["run", "-itv", "/a:/b", "cuda"], "run", "cuda"),  # booleans, then one taking the next argument
        (["run", "--sig-proxy=false", "--rm", "cuda"], "run", "cuda"),
        (["run", "--gpus", "all", "--rm", "cuda"], "run", "cuda"),
        (["run", "--rm", "--", "cuda", "--rm"], "run", "cuda"),
        (["create", "--rm", "cuda"], "create", "cuda"),
        (["create", "--detach", "cuda"], "create", None),  # not a create flag: taken to take the next argument
        (["container", "run", "-d", "cuda"], "run", "cuda"),
        (["container", "create", "-i", "cuda"], "create", "cuda"),
        (["-H", "unix:///x.sock", "run", "cuda"], "run", "cuda"),
        (["--debug", "run", "cuda"], "run", "cuda"),
        (["ps", "-a"], "ps", None),
        (["container", "ls"], "container", None),
        (["version"], "version", None),
        (["run"], "run", None),
        (["--debug"], None, None),
    ],
)
def test_the_command_and_the_image(argv, command, image):
    line = parse_docker_line(argv)
    assert (line.command, line.image) == (command, image)


def test_global_host_is_seen():
    assert parse_docker_line(["-H", "unix:///x.sock", "ps"]).host == "unix:///x.sock"
    assert parse_docker_line(["--host=tcp://h:2375", "run", "i"]).host == "tcp://h:2375"


def test_the_gpu_arguments_go_immediately_before_the_image():
    line = parse_docker_line(["run", "--rm", "-e", "A=1", "cuda", "sh", "-c", "ls -l"])
    assert wrapped_args(line, ["--device=/dev/nvidiactl", "--volume=v:/usr/local/nvidia:ro"]) == [
        "run",
        "--rm",
        "-e",
        "A=1",
        "--device=/dev/nvidiactl",
        "--volume=v:/usr/local/nvidia:ro",
        "cuda",
        "sh",
        "-c",
        "ls -l",
    ]
    ps = parse_docker_line(["ps", "-a"])
    assert wrapped_args(ps, ["--device=/dev/x"]) == ["ps", "-a"]


def test_nv_docker_replaces_the_command():
    assert docker_command({}) == ["docker"]
    assert docker_command({"NV_DOCKER": "sudo docker -D"}) == ["sudo", "docker", "-D"]
    assert docker_command({"NV_DOCKER": "  "}) == ["docker"]
