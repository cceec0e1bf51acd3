"""gpudock.host.procfs: the kernel's files in their real layouts, under a HostRoot; never raises."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpudock.host import procfs
from gpudock.host.root import HostRoot
from helpers import kernelroot as K


def test_version_file_proprietary():
    d = procfs.parse_driver_version(K.PROPRIETARY.format(v="535.129.03"))
    assert (d.version, d.flavor) == ("535.129.03", "proprietary")
    assert d.line.startswith("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.129.03")


def test_version_file_open():
    d = procfs.parse_driver_version(K.OPEN.format(v="580.126.09"))
    assert (d.version, d.flavor) == ("580.126.09", "open")


def test_version_file_two_part_version_and_garbage():
    assert (
        procfs.parse_driver_version("NVRM version: NVIDIA UNIX x86_64 Kernel Module  375.26  Thu Dec\n").version
        == "375.26"
    )
    assert procfs.parse_driver_version("GCC version:  gcc 12\n") is None
    assert procfs.parse_driver_version("NVRM version: something else\n") is None


@given(st.text())
@settings(max_examples=200)
def test_parsers_never_raise(text):
    # Any text: a value of the documented type, never an exception.
    v = procfs.parse_driver_version(text)
    assert v is None or isinstance(v, str)
    assert isinstance(procfs.parse_modules(text), dict)
    assert isinstance(procfs.parse_devices(text), dict)
    assert isinstance(procfs.parse_gpu_information(text), procfs.ProcGpu)


@given(st.binary(max_size=512))
@settings(max_examples=300)
def test_modinfo_never_raises(data):
    v = procfs.parse_modinfo(b"\x7fELF" + data)
    assert v is None or isinstance(v, str)


def test_modules_and_devices():
    mods = procfs.parse_modules(K.MODULE_LINES["nvidia"] + "\n" + K.MODULE_LINES["nvidia_uvm"] + "\n")
    assert mods["nvidia"].used_by == ("nvidia_uvm", "nvidia_modeset") and mods["nvidia"].refcount == 12
    assert mods["nvidia_uvm"].used_by == () and mods["nvidia_uvm"].state == "Live"
    majors = procfs.parse_devices(
        "Character devices:\n195 nvidia-frontend\n507 nvidia-uvm\n\nBlock devices:\n259 blkext\n"
    )
    assert majors == {"nvidia-frontend": 195, "nvidia-uvm": 507}


def test_gpu_information_real_layout(tmp_path):
    K.gpu(tmp_path, "0000:3b:00.0", 3)
    (g,) = procfs.proc_gpus(HostRoot(tmp_path))
    assert (g.bdf, g.minor, g.bus_location, g.excluded) == ("0000:3b:00.0", 3, "0000:3b:00.0", False)
    assert g.uuid.startswith("GPU-") and g.model == "NVIDIA A100-SXM4-80GB"
    assert g.source == "/proc/driver/nvidia/gpus/0000:3b:00.0/information"


def test_pci_sysfs_and_driver_link(tmp_path):
    K.pci(tmp_path, "0000:01:00.0", cls=0x030000, driver="nouveau")
    K.pci(tmp_path, "0000:02:00.0", vendor=0x8086, cls=0x020000, driver="e1000e")
    K.pci(tmp_path, "0000:03:00.0", driver=None, config_vendor=0xFFFF)
    devs = procfs.pci_devices(HostRoot(tmp_path))
    assert [(d.bdf, d.driver, d.is_nvidia_gpu) for d in devs] == [
        ("0000:01:00.0", "nouveau", True),
        ("0000:03:00.0", None, True),
    ]
    assert devs[1].config_vendor == 0xFFFF
    assert len(procfs.pci_devices(HostRoot(tmp_path), vendor=None)) == 3


def test_device_nodes_from_mknod(tmp_path):
    K.node(tmp_path, "/dev/nvidia0", 195, 0)
    K.node(tmp_path, "/dev/nvidia-uvm", 511, 0)
    (tmp_path / "dev/nvidia1").write_text("not a node")
    r = HostRoot(tmp_path)
    nodes = procfs.device_nodes(r)
    assert (nodes["/dev/nvidia0"].major, nodes["/dev/nvidia0"].minor, nodes["/dev/nvidia0"].is_char) == (195, 0, True)
    assert nodes["/dev/nvidia0"].mode == 0o666
    assert nodes["/dev/nvidia1"].is_char is False
    assert procfs.device_node(r, "/dev/nvidiactl").exists is False


@pytest.mark.parametrize("compress,version", [(None, "535.129.03"), ("xz", "550.54.15"), ("gz", "470.57.02")])
def test_module_on_disk_modinfo(tmp_path, compress, version):
    host = K.module_ko(tmp_path, version, compress=compress)
    K.write(tmp_path, "/proc/sys/kernel/osrelease", K.RELEASE + "\n")
    m = procfs.module_on_disk(HostRoot(tmp_path))
    assert (m.path, m.version, m.compressed) == (host, version, compress)
    assert m.vermagic.startswith(K.RELEASE)


def test_module_on_disk_zstd_and_preference(tmp_path):
    K.module_ko(tmp_path, "535.104.05", where="kernel/drivers/video")
    K.module_ko(tmp_path, "535.129.03", where="updates/dkms", compress="zst")
    m = procfs.module_on_disk(HostRoot(tmp_path), K.RELEASE)
    assert m.path.endswith("updates/dkms/nvidia.ko.zst")  # updates/ first, like depmod
    assert m.version is None and "zstd" in m.note


def test_missing_and_unreadable_is_none(tmp_path):
    r = HostRoot(tmp_path)
    assert procfs.driver_version(r) is None
    assert procfs.sys_module_version(r) is None
    assert procfs.loaded_modules(r) is None
    assert procfs.char_majors(r) is None
    assert procfs.proc_gpus(r) is None
    assert procfs.pci_devices(r) is None
    assert procfs.module_on_disk(r, "6.1.0") is None
    assert procfs.boot_time(r) is None
    assert procfs.cgroup_controllers(r) is None
    assert procfs.reboot_required(r) is None
    assert procfs.device_nodes(r) == {}
    # A directory where a file should be, and a symlink loop: still None.
    (tmp_path / "proc/driver/nvidia/version").mkdir(parents=True)
    assert procfs.driver_version(r) is None
    (tmp_path / "proc/modules").parent.mkdir(exist_ok=True)
    os.symlink("modules", tmp_path / "proc/modules")
    assert procfs.loaded_modules(r) is None


def test_boot_time_cgroup_reboot(tmp_path):
    K.kernel(tmp_path, "535.129.03")
    K.write(tmp_path, "/sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n")
    K.write(tmp_path, "/var/run/reboot-required", "*** System restart required ***\n")
    r = HostRoot(tmp_path)
    assert procfs.boot_time(r) == 1700000000
    assert procfs.cgroup_controllers(r)[:2] == ("cpuset", "cpu")
    assert procfs.reboot_required(r) == ("*** System restart required ***", ())
    assert procfs.kernel_release(r) == K.RELEASE
