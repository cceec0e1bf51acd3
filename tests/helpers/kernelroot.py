"""Kernel-side pieces of fake host roots for the doctor's tests: procfs/sysfs files in their real
layouts, device nodes made with os.mknod, an nvidia.ko built by gcc with a real .modinfo section,
and the real Debian NVIDIA user-space packages unpacked with dpkg -x.

Libraries and ld.so.cache come from ``tests/helpers/libroot.py``; this file adds what the kernel
would show. Everything fails (never skips) when a tool is missing.
"""

from __future__ import annotations

import glob
import gzip
import lzma
import os
import shutil
import subprocess
from pathlib import Path

from helpers.libroot import run_ldconfig, write_ld_so_conf

RELEASE = "6.1.0-13-amd64"
REPO = Path(__file__).resolve().parents[2]
DEBS = REPO / ".test-run" / "debs"

# Real first lines, as the two module flavours print them (nvidia-stack.md §10.2).
PROPRIETARY = (
    "NVRM version: NVIDIA UNIX x86_64 Kernel Module  {v}  Thu Oct 19 18:56:32 UTC 2023\n"
    "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14) \n"
)
OPEN = (
    "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  {v}  Release Build  "
    "(dvs-builder@U16-I3-B03-4-3)  Tue May  7 03:27:42 UTC 2024\n"
    "GCC version:  gcc version 12.3.0 (Ubuntu 12.3.0-1ubuntu1~22.04) \n"
)

MODULE_LINES = {
    "nvidia": "nvidia 56823808 12 nvidia_uvm,nvidia_modeset, Live 0xffffffffc0e00000 (POE)",
    "nvidia_uvm": "nvidia_uvm 1368064 0 - Live 0xffffffffc0c80000 (POE)",
    "nvidia_modeset": "nvidia_modeset 1249280 1 nvidia_drm, Live 0xffffffffc0b40000 (POE)",
    "nvidia_drm": "nvidia_drm 77824 0 - Live 0xffffffffc0b20000 (POE)",
    "nouveau": "nouveau 2433024 0 - Live 0xffffffffc1a00000",
    "ext4": "ext4 1003520 1 - Live 0xffffffffc0400000",
}


def write(root, path: str, text: str) -> Path:
    p = Path(root, path.lstrip("/"))
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def kernel(
    root,
    version: str | None,
    *,
    flavor: str = "proprietary",
    modules=("nvidia", "nvidia_uvm", "nvidia_modeset", "nvidia_drm"),
    uvm_major: int | None = 511,
    release: str = RELEASE,
) -> None:
    """/proc/driver/nvidia/version, /sys/module/nvidia/version, /proc/modules, /proc/devices,
    /proc/sys/kernel/osrelease for a loaded module ``version`` (None: no module loaded)."""
    write(root, "/proc/sys/kernel/osrelease", release + "\n")
    write(root, "/proc/modules", "".join(MODULE_LINES[m] + "\n" for m in ("ext4", *modules)))
    write(root, "/proc/stat", "cpu  1 2 3 4\nbtime 1700000000\nprocesses 42\n")
    chars = ["  1 mem", "  4 tty", "  5 /dev/tty"]
    if version is not None:
        write(root, "/proc/driver/nvidia/version", (OPEN if flavor == "open" else PROPRIETARY).format(v=version))
        write(root, "/sys/module/nvidia/version", version + "\n")
        chars += ["195 nvidia", "195 nvidiactl"]
        if uvm_major is not None and "nvidia_uvm" in modules:
            chars.append(f"{uvm_major} nvidia-uvm")
    write(root, "/proc/devices", "Character devices:\n" + "\n".join(chars) + "\n\nBlock devices:\n  8 sd\n")


def gpu(
    root,
    bdf: str,
    minor: int,
    uuid: str = "GPU-0a1b2c3d-0000-1111-2222-333344445555",
    model: str = "NVIDIA A100-SXM4-80GB",
    driver: str | None = "nvidia",
) -> None:
    """/proc/driver/nvidia/gpus/<bdf>/information (real layout) and the PCI function in sysfs."""
    write(
        root,
        f"/proc/driver/nvidia/gpus/{bdf}/information",
        f"Model: \t\t {model}\nIRQ:   \t\t 150\nGPU UUID: \t {uuid}\nVideo BIOS: \t 92.00.45.00.06\n"
        f"Bus Type: \t PCIe\nDMA Size: \t 47 bits\nDMA Mask: \t 0x7fffffffffff\nBus Location: \t {bdf}\n"
        f"Device Minor: \t {minor}\nGPU Excluded:\t No\n",
    )
    pci(root, bdf, driver=driver)


def pci(
    root,
    bdf: str,
    *,
    vendor: int = 0x10DE,
    cls: int = 0x030200,
    driver: str | None = "nvidia",
    config_vendor: int | None = None,
) -> None:
    """A PCI function laid out as sysfs does: devices/<bdf> -> ../../../devices/pci0000:00/<bdf>,
    driver -> ../../../bus/pci/drivers/<name>."""
    real = Path(root, f"sys/devices/pci0000:00/{bdf}")
    real.mkdir(parents=True, exist_ok=True)
    (real / "vendor").write_text(f"0x{vendor:04x}\n")
    (real / "device").write_text("0x20b2\n")
    (real / "class").write_text(f"0x{cls:06x}\n")
    (real / "config").write_bytes(
        (config_vendor if config_vendor is not None else vendor).to_bytes(2, "little") + b"\xb2\x20" + b"\0" * 60
    )
    if driver:
        Path(root, f"sys/bus/pci/drivers/{driver}").mkdir(parents=True, exist_ok=True)
        link = real / "driver"
        if link.is_symlink():
            link.unlink()
        link.symlink_to(f"../../../bus/pci/drivers/{driver}")
    devs = Path(root, "sys/bus/pci/devices")
    devs.mkdir(parents=True, exist_ok=True)
    if not (devs / bdf).is_symlink():
        (devs / bdf).symlink_to(f"../../../devices/pci0000:00/{bdf}")


def node(root, path: str, major: int, minor: int, mode: int = 0o666) -> None:
    p = Path(root, path.lstrip("/"))
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.exists() or p.is_symlink():
        p.unlink()
    os.mknod(p, 0o020000 | mode, os.makedev(major, minor))  # S_IFCHR
    os.chmod(p, mode)  # mknod is subject to the umask


def nodes(root, minors=(0,), uvm_major: int | None = 511) -> None:
    """The nodes a healthy host has: nvidiactl, nvidia-modeset, nvidia<minor>, uvm and uvm-tools."""
    node(root, "/dev/nvidiactl", 195, 255)
    node(root, "/dev/nvidia-modeset", 195, 254)
    for m in minors:
        node(root, f"/dev/nvidia{m}", 195, m)
    if uvm_major is not None:
        node(root, "/dev/nvidia-uvm", uvm_major, 0)
        node(root, "/dev/nvidia-uvm-tools", uvm_major, 1)


def char_major(root, major: int, name: str) -> None:
    """Add a character device line ("509 nvidia-nvswitch") to the root's /proc/devices."""
    p = Path(root, "proc/devices")
    text = p.read_text()
    head, sep, tail = text.partition("\n\nBlock devices:")
    p.write_text(f"{head}\n{major:3d} {name}{sep}{tail}")


def process(root, pid: int, comm: str, cmdline: list[str] | None = None) -> None:
    """/proc/<pid>/comm (cut to 15 bytes, as the kernel keeps it) and cmdline (NUL-separated)."""
    write(root, f"/proc/{pid}/comm", comm[:15] + "\n")
    Path(root, f"proc/{pid}/cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in (cmdline or [])))


def nvswitch(root, bdf: str) -> None:
    """An NVSwitch chip on the PCI bus: vendor 0x10de, class 0x068000 (bridge), nvidia-nvswitch bound."""
    pci(root, bdf, cls=0x068000, driver="nvidia-nvswitch")


def module_ko(
    root, version: str, *, release: str = RELEASE, where: str = "updates/dkms", compress: str | None = None
) -> str:
    """A real ELF relocatable object with a .modinfo section as kbuild writes it (gcc -c), installed
    as /lib/modules/<release>/<where>/nvidia.ko[.xz|.gz|.zst]. Returns the host path."""
    gcc = shutil.which("gcc")
    assert gcc, "gcc is needed to build the fake nvidia.ko"
    work = Path(root).parent / f".ko-build-{version}"
    work.mkdir(parents=True, exist_ok=True)
    src = work / "nvidia.mod.c"
    src.write_text(
        'static const char a[] __attribute__((section(".modinfo"), used)) = "license=NVIDIA";\n'
        f'static const char b[] __attribute__((section(".modinfo"), used)) = "version={version}";\n'
        f'static const char c[] __attribute__((section(".modinfo"), used)) = "vermagic={release} SMP mod_unload";\n'
        "int init_module(void) { return 0; }\n"
    )
    obj = work / "nvidia.ko"
    subprocess.run([gcc, "-c", "-o", str(obj), str(src)], check=True, capture_output=True)
    data = obj.read_bytes()
    name = "nvidia.ko"
    if compress == "xz":
        data, name = lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32), "nvidia.ko.xz"
    elif compress == "gz":
        data, name = gzip.compress(data), "nvidia.ko.gz"
    elif compress == "zst":
        data, name = b"\x28\xb5\x2f\xfd" + data[:64], "nvidia.ko.zst"  # zstd magic; we never decode it
    host = f"/lib/modules/{release}/{where}/{name}"
    p = Path(root, host.lstrip("/"))
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return host


def debian_driver_root(root) -> str:
    """Debian 12's real libnvidia-ml1 and libcuda1 (non-free) unpacked with dpkg -x into ``root``,
    their directory in /etc/ld.so.conf and a real cache from ldconfig -r. Returns the version.

    The .debs come from scripts/test (apt-get download into .test-run/debs/); if they are not
    there, this downloads them the same way."""
    debs = sorted(glob.glob(str(DEBS / "libnvidia-ml1_*.deb"))) + sorted(glob.glob(str(DEBS / "libcuda1_*.deb")))
    if len(debs) < 2:
        fetch_debs()
        debs = sorted(glob.glob(str(DEBS / "libnvidia-ml1_*.deb"))) + sorted(glob.glob(str(DEBS / "libcuda1_*.deb")))
    assert len(debs) >= 2, f"the Debian NVIDIA packages are not in {DEBS} (run scripts/test)"
    for deb in debs[-2:] if len(debs) > 2 else debs:
        subprocess.run(["dpkg", "-x", deb, str(root)], check=True, capture_output=True)
    lib_dir = "/usr/lib/x86_64-linux-gnu/nvidia/current"
    write_ld_so_conf(root, [lib_dir, "/usr/lib/x86_64-linux-gnu"])
    run_ldconfig(root, "new", update_links=True)
    v = os.path.basename(debs[0]).split("_")[1].split("-")[0]
    return v


def fetch_debs() -> None:
    """apt-get download of the three packages from Debian's non-free component (no install)."""
    DEBS.mkdir(parents=True, exist_ok=True)
    src = Path("/etc/apt/sources.list.d/gpudock-nonfree.sources")
    if not src.exists():
        src.write_text(
            "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\n"
            "Components: contrib non-free\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        )
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
    subprocess.run(
        ["apt-get", "download", "-qq", "libnvidia-ml1", "libcuda1", "nvidia-smi"],
        cwd=DEBS,
        check=True,
        capture_output=True,
    )
