"""A host root with an NVIDIA driver installed (real ELF libraries, a real ld.so.cache), for the
driver-volume tests: the running module is 535.129.03, 470.57.02 leftovers sit in
/usr/lib64/nvidia, a Mesa-style libGL is in the cache too, and nvidia-smi is an absolute symlink
that must be followed inside the root."""

from __future__ import annotations

import os
from pathlib import Path

from helpers.libroot import add_lib, make_driver_root, run_ldconfig

CURRENT, STALE = "535.129.03", "470.57.02"


def driver_host(tmp_path: Path) -> Path:
    dr = make_driver_root(
        tmp_path / "root",
        versions={CURRENT: ["/usr/lib/x86_64-linux-gnu"], STALE: ["/usr/lib64/nvidia"]},
        lib32={CURRENT: ["/usr/lib/i386-linux-gnu"]},
    )
    root = Path(dr.root)
    add_lib(root, "/usr/lib/x86_64-linux-gnu", "libGL.so.1.7.0", "libGL.so.1")  # not NVIDIA's
    run_ldconfig(root)
    (root / "sys/module/nvidia").mkdir(parents=True)
    (root / "sys/module/nvidia/version").write_text(CURRENT + "\n")
    real_bin = root / "usr/lib/nvidia/bin"
    real_bin.mkdir(parents=True)
    (real_bin / "nvidia-smi").write_text("#!/bin/sh\necho smi\n")
    os.chmod(real_bin / "nvidia-smi", 0o755)
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/nvidia-smi").symlink_to("/usr/lib/nvidia/bin/nvidia-smi")  # absolute: inside the root
    (root / "usr/bin/nvidia-cuda-mps-control").write_text("#!/bin/sh\n")
    return root
