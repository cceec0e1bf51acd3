"""Driver checks: can NVML start, do the kernel module and the user-space libraries agree, are
there libraries of another driver version, is a reboot pending (failures.md §1, §12, §14)."""

from __future__ import annotations

from collections import defaultdict

from gpudock.doctor import libview
from gpudock.doctor.facts import HostFacts
from gpudock.doctor.finding import Evidence, Finding
from gpudock.host import procfs

KEY_SONAMES = ("libnvidia-ml.so.1", "libcuda.so.1")

RELOAD_FIX = (
    "Reboot the host; or, without a reboot: stop every GPU user (containers, nvidia-persistenced, "
    "DCGM/dcgm-exporter, nvidia-fabricmanager, X), then 'modprobe -r nvidia_uvm nvidia_drm nvidia_modeset "
    "nvidia' and 'modprobe nvidia nvidia_uvm'. Recreate containers started before the upgrade (they keep "
    "bind mounts of the old library files). To avoid a repeat, hold the driver packages (apt-mark hold) or "
    "exclude them from unattended-upgrades, and upgrade driver + reboot in one maintenance window."
)
STRAY_FIX = (
    "Remove the other driver installation: 'nvidia-uninstall' for a .run install, or purge the packages of "
    "the other version; delete stale symlinks and the ld.so.conf.d entry of its directory; run 'ldconfig'; "
    "reinstall one driver consistently. A reboot does not fix this."
)


def module_evidence(f: HostFacts) -> list[Evidence]:
    ev = []
    if f.driver:
        ev.append(Evidence(procfs.VERSION_FILE, f.driver.line, f.driver.version))
    else:
        ev.append(Evidence(procfs.VERSION_FILE, None, None))
    if f.sys_module_version is not None:
        ev.append(Evidence(procfs.SYS_MODULE_VERSION, f.sys_module_version, f.sys_module_version))
    return ev


def _modules_evidence(f: HostFacts, name: str) -> Evidence:
    if f.modules is None:
        return Evidence(procfs.MODULES_FILE, None, None)
    m = f.modules.get(name)
    return Evidence(procfs.MODULES_FILE, m.line if m else f"no line for {name}", "loaded" if m else "not loaded")


def _on_disk_evidence(f: HostFacts) -> Evidence:
    d = f.on_disk
    if d is None:
        where = f"/lib/modules/{f.kernel_release or '<uname -r>'}"
        return Evidence(where, f"no nvidia.ko* for kernel {f.kernel_release or '(unknown)'}", None)
    return Evidence(d.path, f"modinfo version={d.version}" if d.version else (d.note or "unreadable"), d.version)


# -- nvml-init ---------------------------------------------------------------------------------------


def nvml_init(f: HostFacts) -> Finding:
    fid = "nvml-init"
    if not f.nvml_checked:
        return Finding(
            fid,
            "info",
            "NVML was not checked",
            "This run did not try to start NVML.",
            (Evidence("gpudock", "no NVML session given", None),),
            "",
        )
    snap = f.nvml
    lib = f.nvml_library or "libnvidia-ml.so.1 (the loader's pick)"
    if snap is None:
        err = f.errors.get("nvml", "no snapshot")
        return Finding(
            fid,
            "info",
            "NVML could not be asked",
            f"Starting NVML failed inside gpudock: {err}",
            (Evidence("NVML", err, None),),
            "Report this as a gpudock bug.",
        )
    if snap.nvml_failure is None:
        ev = (
            Evidence("NVML", f"nvmlSystemGetDriverVersion() = {snap.driver_version}", snap.driver_version),
            Evidence(
                "NVML", f"nvmlSystemGetCudaDriverVersion() = {snap.cuda_driver_version}", snap.cuda_driver_version
            ),
            Evidence("NVML", f"library {lib}, {len(snap.gpus)} GPU(s), source {snap.source}", str(len(snap.gpus))),
        )
        return Finding(
            fid,
            "ok",
            "NVML starts",
            f"NVML started with driver {snap.driver_version} (CUDA {snap.cuda_driver_version}); "
            f"{len(snap.gpus)} GPU(s).",
            ev,
            "",
        )
    fail = snap.nvml_failure
    ev = [
        Evidence(
            "NVML",
            f"nvmlInit() -> {fail.code} {fail.nvml_text!r} (library {lib})",
            str(fail.code) if fail.code is not None else None,
        )
    ]
    why = ""
    fix = fail.message
    if fail.code == 9:  # NVML_ERROR_DRIVER_NOT_LOADED
        ev += module_evidence(f)
        ev.append(_modules_evidence(f, "nvidia"))
        ev.append(_on_disk_evidence(f))
        nouveau = f.modules is not None and "nouveau" in f.modules
        if nouveau:
            why = " nouveau is loaded and owns the GPU (see the 'nouveau' finding)."
            fix = "Blacklist nouveau, regenerate the initramfs and reboot (see the 'nouveau' finding)."
        elif f.on_disk is None:
            why = (
                f" No nvidia.ko exists for the running kernel {f.kernel_release or '(unknown)'}: the kernel was "
                f"probably updated and the driver module was not built for it."
            )
            fix = (
                "Build the module for the running kernel ('dkms autoinstall', or install the "
                "linux-modules-nvidia package matching this kernel), then 'modprobe nvidia' or reboot. With "
                "Secure Boot on, sign the module and enroll the key (mokutil)."
            )
        else:
            why = (
                f" The module for this kernel exists ({f.on_disk.path}, version {f.on_disk.version or '?'}) "
                f"but is not loaded."
            )
            fix = (
                "Load it: 'modprobe nvidia' (and check 'dmesg | grep -i nvrm' if it fails: Secure Boot "
                "'Key was rejected', a blacklist, or nouveau). Then 'nvidia-modprobe -u -c=0' for uvm."
            )
        if not f.root.is_live:
            why += f" (Read under root {f.root.root}; the kernel module state is that root's /proc.)"
    elif fail.code in (13, 18):  # FUNCTION_NOT_FOUND (an older library), LIB_RM_VERSION_MISMATCH
        ev += module_evidence(f)
        for so in KEY_SONAMES:
            ev.append(libview.pick_evidence(f, so))
        why = " See 'driver-library-mismatch' for the two versions and what to do."
    elif fail.code == 12:  # LIBRARY_NOT_FOUND
        ev.append(libview.pick_evidence(f, "libnvidia-ml.so.1"))
        why = " The loader's cache has no libnvidia-ml.so.1 for this architecture."
    return Finding(
        fid,
        "error",
        f"NVML cannot start: {fail.nvml_text}",
        f'NVML said "{fail.nvml_text}" (code {fail.code}).{why}',
        tuple(ev),
        fix,
        data={"code": fail.code, "nvml_error": fail.nvml_text},
    )


# -- driver-library-mismatch ---------------------------------------------------------------------------


def driver_library_mismatch(f: HostFacts) -> Finding:
    fid = "driver-library-mismatch"
    ev = module_evidence(f)
    kv = f.kernel_version
    if f.driver and f.sys_module_version and f.driver.version != f.sys_module_version:
        # Both describe the module in memory; disagreeing means a half-finished reload.
        return Finding(
            fid,
            "error",
            "The two views of the loaded module disagree",
            f"{procfs.VERSION_FILE} says {f.driver.version}, {procfs.SYS_MODULE_VERSION} says {f.sys_module_version}.",
            tuple(ev),
            RELOAD_FIX,
        )
    lib_err = libview.error(f)
    if lib_err:
        ev.append(Evidence("/etc/ld.so.cache", lib_err, None))
        return Finding(
            fid,
            "info",
            "Could not read the loader's cache",
            f"The libraries could not be compared with the kernel module: {lib_err}",
            tuple(ev),
            "Check that /etc/ld.so.cache exists and is readable (run 'ldconfig' to rebuild it).",
        )
    picks = {so: libview.pick(f, so) for so in KEY_SONAMES}
    for so in KEY_SONAMES:
        ev.append(libview.pick_evidence(f, so))
    versions = {so: (p.version if p else None) for so, p in picks.items()}
    present = {so: v for so, v in versions.items() if v}
    if kv is None:
        sev = "info"
        libs_txt = ", ".join(f"{so} -> {v}" for so, v in present.items()) or "no NVIDIA libraries"
        ev.append(_modules_evidence(f, "nvidia"))
        return Finding(
            fid,
            sev,
            "No NVIDIA kernel module is loaded: nothing to compare",
            f"The loaded module's version is unknown ({procfs.VERSION_FILE} is absent); the loader "
            f"resolves {libs_txt}.",
            tuple(ev),
            "See 'nvml-init' for why the module is not loaded." if present else "",
        )
    if not present:
        return Finding(
            fid,
            "warning",
            "No NVIDIA user-space libraries in the loader's cache",
            f"The kernel module is {kv}, but ld.so.cache has no libnvidia-ml.so.1 or libcuda.so.1 for "
            f"this architecture.",
            tuple(ev),
            "Install the driver's user-space packages of the same version (e.g. libnvidia-compute / "
            "nvidia-utils), make sure their directory is in /etc/ld.so.conf.d, and run 'ldconfig'.",
        )
    wrong = {so: v for so, v in present.items() if v != kv}
    if not wrong:
        return Finding(
            fid,
            "ok",
            f"Kernel module and libraries agree ({kv})",
            "The loaded module and the libraries the loader resolves are the same driver version: "
            + ", ".join(f"{so} -> {v}" for so, v in present.items())
            + ".",
            tuple(ev),
            "",
        )
    lib_v = sorted(set(wrong.values()))
    lib_txt = ", ".join(f"{so} -> {v}" for so, v in wrong.items())
    od = f.on_disk
    ev.append(_on_disk_evidence(f))
    others = libview.paths_with_version(f, kv)
    if od and od.version and od.version in wrong.values() and len(lib_v) == 1:
        summary = (
            f"The loaded kernel module is {kv} but the loader resolves {lib_txt}. The module on disk "
            f"for the running kernel is already {od.version} ({od.path}): the driver was upgraded and a "
            f'reboot or module reload is pending. Until then NVML says "Driver/library version '
            f'mismatch" and GPU containers fail to start.'
        )
        return Finding(
            fid,
            "error",
            f"Driver/library version mismatch: module {kv}, libraries {lib_v[0]} (reboot or module reload pending)",
            summary,
            tuple(ev),
            RELOAD_FIX,
            data={"kernel": kv, "libraries": wrong, "on_disk": od.version, "pending_reboot": True},
        )
    if others:
        summary = (
            f"The loaded kernel module is {kv} but the loader resolves {lib_txt}, while libraries of "
            f"version {kv} exist in {', '.join(sorted({p.rsplit('/', 1)[0] for p in others}))}: another "
            f"driver installation shadows the right one (see 'stray-driver-libraries')."
        )
        for p in others[:4]:
            ev.append(Evidence("/etc/ld.so.cache", p, kv))
        return Finding(
            fid,
            "error",
            f"Driver/library version mismatch: module {kv}, loader picks {', '.join(lib_v)}",
            summary,
            tuple(ev),
            STRAY_FIX,
            data={"kernel": kv, "libraries": wrong, "pending_reboot": False},
        )
    od_txt = (
        f"the module on disk is {od.version} ({od.path})"
        if od and od.version
        else "the module on disk for this kernel could not be read"
    )
    summary = (
        f"The loaded kernel module is {kv} but the loader resolves {lib_txt}; {od_txt}. NVML says "
        f'"Driver/library version mismatch".'
    )
    fix = (
        "Install the user-space libraries of the same version as the kernel module (or the module of the "
        "libraries' version, then reboot). " + STRAY_FIX
    )
    return Finding(
        fid,
        "error",
        f"Driver/library version mismatch: module {kv}, libraries {', '.join(lib_v)}",
        summary,
        tuple(ev),
        fix,
        data={"kernel": kv, "libraries": wrong, "pending_reboot": False},
    )


# -- stray-driver-libraries ----------------------------------------------------------------------------


def stray_driver_libraries(f: HostFacts) -> Finding:
    fid = "stray-driver-libraries"
    lib_err = libview.error(f)
    if lib_err:
        return Finding(
            fid,
            "info",
            "Could not read the loader's cache",
            lib_err,
            (Evidence("/etc/ld.so.cache", lib_err, None),),
            "Check that /etc/ld.so.cache exists and is readable (run 'ldconfig' to rebuild it).",
        )
    recs = libview.records(f)
    if not recs:
        return Finding(
            fid,
            "ok",
            "No NVIDIA driver libraries in the loader's cache",
            "ld.so.cache lists no NVIDIA driver library, so there is nothing stray.",
            (Evidence("/etc/ld.so.cache", "no libnvidia-*/libcuda entries", "0"),),
            "",
        )
    by_version: dict[str, list] = defaultdict(list)
    for r in recs:
        if r.version and libview.is_driver_lib(r.soname):
            by_version[r.version].append(r)
    by_soname: dict[tuple[str, str], list] = defaultdict(list)
    for r in recs:
        by_soname[(r.soname, r.arch)].append(r)
    multi = {k: v for k, v in by_soname.items() if len({r.path for r in v}) > 1}
    dangling = [r for r in recs if r.dangling]
    problems = []
    ev: list[Evidence] = []
    kv = f.kernel_version
    if len(by_version) > 1:
        parts = []
        for v, rs in sorted(by_version.items()):
            dirs = sorted({r.path.rsplit("/", 1)[0] for r in rs})
            parts.append(f"{v} in {', '.join(dirs)}")
            # libnvidia-ml and libcuda first: they decide NVML and CUDA; then a few others.
            for r in sorted(rs, key=lambda r: (r.soname not in KEY_SONAMES, r.soname))[:4]:
                ev.append(Evidence("/etc/ld.so.cache", f"{r.soname} ({r.flag_text}) => {r.path} -> {r.resolved}", v))
        problems.append(f"{len(by_version)} driver versions: " + "; ".join(parts))
    multi_sorted = sorted(multi.items(), key=lambda kv: (kv[0][0] not in KEY_SONAMES, kv[0]))
    for (so, _arch), rs in multi_sorted[:3]:
        problems.append(
            f"{so} ({rs[0].flag_text}) has {len(rs)} paths: "
            + ", ".join(f"{r.path}{' (the loader picks this)' if r.loader_pick else ''}" for r in rs)
        )
        if len(by_version) <= 1:
            for r in rs:
                ev.append(
                    Evidence("/etc/ld.so.cache", f"{r.soname} ({r.flag_text}) => {r.path} -> {r.resolved}", r.version)
                )
    if len(multi_sorted) > 3:
        problems.append(f"{len(multi_sorted) - 3} more sonames have several paths (see 'gpudock libs')")
    for r in dangling:
        problems.append(f"dangling link {r.path} -> {r.resolved} (in {r.path.rsplit('/', 1)[0]})")
        ev.append(Evidence(r.path, f"symlink to {r.resolved} (missing)", None))
    if not problems:
        v = next(iter(by_version), None)
        return Finding(
            fid,
            "ok",
            f"One driver version among the NVIDIA libraries ({v})",
            f"{len(recs)} NVIDIA library entries in ld.so.cache, all version {v}, one path per soname, "
            f"no dangling links.",
            (Evidence("/etc/ld.so.cache", f"{len(recs)} NVIDIA entries", v),),
            "",
        )
    severity = "warning"
    if kv and len(by_version) > 1:
        # Wrong-suffix files are skipped by libnvidia-container, but the host's own loader may pick them.
        # A soname that carries the full version (libnvidia-glcore.so.470.57.02) is only loaded by the
        # libraries of that version, so the loader picking it is harmless.
        picked_bad = [
            r for r in recs if r.loader_pick and r.version and r.version != kv and not r.soname.endswith(r.version)
        ]
        if picked_bad:
            severity = "error"
    summary = "; ".join(problems) + "."
    if kv:
        summary += f" The loaded kernel module is {kv}; only libraries of that version belong on this host."
    return Finding(
        fid,
        severity,
        "Libraries of more than one NVIDIA driver installation"
        if len(by_version) > 1
        else "Stray NVIDIA library entries in the loader's cache",
        summary,
        tuple(ev),
        STRAY_FIX,
        data={
            "versions": {v: sorted({r.path for r in rs}) for v, rs in by_version.items()},
            "dangling": [r.path for r in dangling],
        },
    )


# -- reboot-pending --------------------------------------------------------------------------------------


def reboot_pending(f: HostFacts) -> Finding:
    fid = "reboot-pending"
    ev: list[Evidence] = []
    reasons = []
    rr = f.reboot_required
    if rr is not None:
        text, pkgs = rr
        ev.append(Evidence(procfs.REBOOT_REQUIRED, text.splitlines()[0] if text else "(empty)", "present"))
        if pkgs:
            ev.append(Evidence(procfs.REBOOT_REQUIRED + ".pkgs", ", ".join(pkgs[:10]), str(len(pkgs))))
        nv = [p for p in pkgs if "nvidia" in p or p.startswith(("linux-", "libcuda"))]
        reasons.append(f"the package manager asks for a reboot ({', '.join(nv or pkgs[:5]) or 'no package named'})")
    kv = f.kernel_version
    od = f.on_disk
    if kv and od and od.version and od.version != kv:
        ev += module_evidence(f)
        ev.append(_on_disk_evidence(f))
        reasons.append(f"the loaded nvidia module is {kv} but the next boot loads {od.version} ({od.path})")
    if not reasons:
        ev.append(Evidence(procfs.REBOOT_REQUIRED, None, None))
        if od and od.version:
            ev.append(_on_disk_evidence(f))
        return Finding(
            fid,
            "ok",
            "No reboot pending",
            "No /var/run/reboot-required, and the module on disk is the one loaded."
            if od and od.version
            else "No /var/run/reboot-required.",
            tuple(ev),
            "",
        )
    return Finding(
        fid,
        "warning",
        "A reboot is pending",
        "A reboot is pending: " + "; ".join(reasons) + ".",
        tuple(ev),
        "Plan a reboot (drain GPU workloads first); until then, see 'driver-library-mismatch'.",
    )
