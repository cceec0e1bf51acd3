"""cuda-compat: local images whose CUDA requirement exceeds what the driver supports
(failures.md §10, §11). The requirement parser is shared with the launcher:
``gpudock.launch.cudacheck``."""

from __future__ import annotations

from gpudock.doctor import libview
from gpudock.doctor.facts import HostFacts
from gpudock.doctor.finding import Evidence, Finding
from gpudock.launch.cudacheck import check, driver_branch_cuda, image_cuda_requirement


def driver_cuda(f: HostFacts) -> tuple[str | None, Evidence]:
    """The CUDA version the host driver supports: NVML's answer, else from the driver branch of
    the libcuda the loader resolves (what containers get), else of the kernel module."""
    if f.nvml and not f.nvml.nvml_failure and f.nvml.cuda_driver_version:
        v = f.nvml.cuda_driver_version
        return v, Evidence("NVML", f"nvmlSystemGetCudaDriverVersion() = {v}", v)
    pick = libview.pick(f, "libcuda.so.1")
    if pick and pick.version:
        v = driver_branch_cuda(pick.version)
        return v, Evidence(
            "/etc/ld.so.cache", f"libcuda.so.1 => {pick.resolved} (driver branch {pick.version.split('.')[0]})", v
        )
    if f.kernel_version:
        v = driver_branch_cuda(f.kernel_version)
        return v, Evidence("/proc/driver/nvidia/version", f"driver {f.kernel_version}", v)
    return None, Evidence("NVML", "the driver's CUDA version is unknown", None)


def _name(img: dict) -> str:
    tags = img.get("RepoTags") or []
    return tags[0] if tags else (img.get("Id") or "")[7:19]


def cuda_compat(f: HostFacts) -> Finding:
    fid = "cuda-compat"
    if not f.docker_checked or f.docker_info is None:
        why = f.errors.get("docker", "the Docker engine was not asked")
        return Finding(
            fid,
            "info",
            "Could not list local images",
            why[0].upper() + why[1:] + ".",
            (Evidence("docker images", why, None),),
            "",
        )
    cuda, cuda_ev = driver_cuda(f)
    ev = [cuda_ev]
    bad, checked = [], 0
    brand = None
    drv = f.nvml.driver_version if f.nvml and not f.nvml.nvml_failure else f.kernel_version
    for img in f.images:
        req = image_cuda_requirement(img)
        if req is None:
            continue
        checked += 1
        ok, msg = check(req, cuda, drv, brand)
        if not ok:
            bad.append(_name(img))
            ev.append(Evidence(f"docker image inspect {_name(img)}", f"{req.source}={req.raw}", req.min_cuda))
    if cuda is None:
        return Finding(
            fid,
            "info",
            "The driver's CUDA version is unknown",
            f"{checked} local image(s) state a CUDA requirement, but the driver's CUDA version could not be "
            f"read (NVML failed and no driver version is known).",
            tuple(ev),
            "See 'nvml-init'.",
        )
    trunc = " (only the first images were checked)" if f.images_truncated else ""
    if not bad:
        return Finding(
            fid,
            "ok",
            f"Every local CUDA image runs on this driver (CUDA {cuda})",
            f"{checked} local image(s) state a CUDA requirement; none exceeds CUDA {cuda}{trunc}.",
            tuple(ev),
            "",
        )
    return Finding(
        fid,
        "warning",
        f"{len(bad)} local image(s) need a newer CUDA than the driver's {cuda}",
        f"These images need more than CUDA {cuda} and the hook will refuse them with 'unsatisfied "
        f"condition: cuda>=...': {', '.join(bad)}{trunc}.",
        tuple(ev),
        "Upgrade the host driver to a branch that supports the images' CUDA version, or use image tags "
        "built for CUDA " + cuda + " or older; on data-center GPUs an LTS driver plus the cuda-compat "
        "package is an option. NVIDIA_DISABLE_REQUIRE=true only hides the check.",
        data={"images": bad, "driver_cuda": cuda},
    )
