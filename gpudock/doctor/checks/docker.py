"""Docker-side checks: is the toolkit wired into the engine, which running containers lose their
GPUs at the next ``systemctl daemon-reload``, which get none because config.toml refuses
NVIDIA_VISIBLE_DEVICES from unprivileged containers, cgroup v2 with an old toolkit, stale CDI
specs (failures.md §2, §3, §7, §8, §9, §20, §21)."""

from __future__ import annotations

import re

from gpudock.doctor import libview
from gpudock.doctor.facts import CDI_DIRS, HOOK, TOOLKIT_CONFIG, HostFacts, SpecDir
from gpudock.doctor.finding import Evidence, Finding
from gpudock.host import procfs
from gpudock.host.claims import nvidia_runtimes, parse_requests

CONFIGURE_FIX = (
    "Install nvidia-container-toolkit, run 'nvidia-ctk runtime configure --runtime=docker', then "
    "'systemctl restart docker' (the engine registers the runtime and the --gpus driver only at start)."
)


def _unreachable(f: HostFacts) -> str | None:
    if not f.docker_checked:
        return "the Docker engine was not asked"
    if f.docker_info is None:
        # one sentence, without its full stop: the checks put it in brackets or end it themselves
        return f.errors.get("docker", "the Docker engine did not answer").rstrip(".")
    return None


def _toolkit_mode(f: HostFacts) -> tuple[str, Evidence]:
    tc = f.toolkit_config
    if tc is None or tc.text is None:
        return "auto", Evidence(tc.path if tc else TOOLKIT_CONFIG, None, "auto")
    mode = "auto"
    if isinstance(tc.parsed, dict):
        mode = str((tc.parsed.get("nvidia-container-runtime") or {}).get("mode", "auto"))
    line = next((ln.strip() for ln in tc.text.splitlines() if re.match(r"\s*mode\s*=", ln)), "mode not set (auto)")
    return mode, Evidence(tc.path, line, mode)


# -- container-runtime -----------------------------------------------------------------------------------


def container_runtime(f: HostFacts) -> Finding:
    fid = "container-runtime"
    ev: list[Evidence] = []
    dj = f.daemon_json
    dj_names: frozenset[str] = frozenset()
    notes: list[str] = []
    if dj is not None:
        if dj.error:
            ev.append(Evidence(dj.path, dj.error, None))
            return Finding(
                fid,
                "error",
                f"{dj.path} is not valid",
                f"{dj.path}: {dj.error}. dockerd refuses to start with a broken config file "
                f"('unable to configure the Docker daemon with file ...').",
                tuple(ev),
                "Fix the file (compare with backups such as daemon.json.dpkg-old/.bak), validate it with "
                "'python3 -m json.tool', then restart dockerd.",
            )
        if dj.text is None:
            ev.append(Evidence(dj.path, None, None))
        else:
            runtimes = (dj.parsed or {}).get("runtimes") or {}
            dj_names = nvidia_runtimes(runtimes)
            for name in sorted(dj_names) or ["(none)"]:
                spec = runtimes.get(name) or {}
                ev.append(
                    Evidence(
                        dj.path,
                        f'"runtimes": {{"{name}": {{"path": "{spec.get("path", "")}"}}}}'
                        if name != "(none)"
                        else '"runtimes" has no NVIDIA runtime',
                        name if dj_names else None,
                    )
                )
            dflt = (dj.parsed or {}).get("default-runtime")
            if dflt:
                ev.append(Evidence(dj.path, f'"default-runtime": "{dflt}"', dflt))
    engine_names: frozenset[str] = frozenset()
    unreachable = _unreachable(f)
    if unreachable:
        ev.append(Evidence("docker info", unreachable, None))
    else:
        info = f.docker_info or {}
        engine_names = nvidia_runtimes(info.get("Runtimes"))
        rt = info.get("Runtimes") or {}
        if "nvidia" in rt and "nvidia" not in engine_names:
            # Registered under the usual name but pointing elsewhere: '--runtime=nvidia' starts
            # containers, just without the NVIDIA hook (NVIDIA_VISIBLE_DEVICES then does nothing).
            path = (rt.get("nvidia") or {}).get("path")
            notes.append(
                f"the engine's runtime 'nvidia' runs {path}, not nvidia-container-runtime, so "
                f"'--runtime=nvidia' containers get no GPU"
            )
        ev.append(
            Evidence(
                "docker info",
                f"Runtimes: {', '.join(sorted(info.get('Runtimes') or {}))}; "
                f"DefaultRuntime: {info.get('DefaultRuntime')}",
                ", ".join(sorted(engine_names)) or None,
            )
        )
    # The hook on dockerd's PATH decides whether --gpus has a device driver (moby nvidia_linux.go).
    dockerd = f.dockerd[0] if f.dockerd else None
    if dockerd:
        ev.append(
            Evidence(
                f"/proc/{dockerd.pid}/environ",
                f"PATH={dockerd.path_env}" if dockerd.path_env else "PATH not readable (default PATH assumed)",
                None,
            )
        )
    hook = f.hook_paths[0] if f.hook_paths else None
    ev.append(Evidence(hook or "PATH", f"{HOOK} found at {hook}" if hook else f"{HOOK} not on dockerd's PATH", hook))
    if unreachable and not f.dockerd and (dj is None or dj.text is None):
        return Finding(
            fid,
            "info",
            "No Docker engine here",
            f"No dockerd process and no {dj.path if dj else '/etc/docker/daemon.json'}. "
            f"{unreachable[0].upper() + unreachable[1:]}. "
            + (f"{HOOK} is at {hook}." if hook else f"{HOOK} is not installed."),
            tuple(ev),
            "If this host should run GPU containers: install Docker, then "
            + CONFIGURE_FIX[0].lower()
            + CONFIGURE_FIX[1:],
        )
    gpus_ok = bool(hook)
    if hook and dockerd and dockerd.started:
        try:
            hook_mtime = f.root.stat(hook).st_mtime
        except OSError:
            hook_mtime = None
        if hook_mtime and hook_mtime > dockerd.started:
            gpus_ok = False
            notes.append(
                f"{HOOK} was installed after dockerd started, so this dockerd did not register the "
                f"--gpus device driver (restart dockerd)"
            )
    runtime_ok = bool(engine_names) if not unreachable else bool(dj_names)
    if dj_names and not unreachable and not engine_names:
        notes.append(
            f"{dj.path} registers {', '.join(sorted(dj_names))} but the running engine does not know it: "
            f"dockerd was not restarted after the edit, or it reads another config file"
        )
    remarks = []
    if engine_names and not dj_names and dj is not None and dj.text is not None:
        remarks.append(
            "The engine knows an NVIDIA runtime that daemon.json does not list (a dockerd flag or a "
            "systemd drop-in registers it)."
        )
    gpus_txt = (
        ("'docker run --gpus' will work: " + f"{HOOK} is at {hook}")
        if gpus_ok
        else (
            "'docker run --gpus' will fail with 'could not select device driver \"\" with capabilities: [[gpu]]': "
            + (notes[0] if notes and "after dockerd started" in notes[0] else f"{HOOK} is not on dockerd's PATH")
        )
    )
    names = sorted(engine_names or dj_names)
    rt_txt = (
        (
            f"'--runtime={names[0]}' will work"
            + (" (according to daemon.json; the engine was not asked)" if unreachable else "")
        )
        if runtime_ok
        else ("'--runtime=nvidia' will fail with 'unknown or invalid runtime name: nvidia'")
    )
    summary = f"{gpus_txt}. {rt_txt}."
    cdi_dirs = f.engine_cdi_dirs if not unreachable else None
    if cdi_dirs is not None:  # Docker 25+: CDI, on or off
        ev.append(
            Evidence(
                "docker info", f"CDISpecDirs: {', '.join(cdi_dirs) or '[] (CDI off)'}", "on" if cdi_dirs else "off"
            )
        )
        summary += (
            f" '--device nvidia.com/gpu=...' (CDI) reads specs from {', '.join(cdi_dirs)}."
            if cdi_dirs
            else " CDI is off in this engine: '--device nvidia.com/gpu=...' fails with 'could not select device "
            'driver "cdi"\' (to use it: "features": {"cdi": true} in daemon.json, then restart dockerd).'
        )
    if notes:
        summary += " " + "; ".join(n[0].upper() + n[1:] for n in notes if n not in gpus_txt) + "."
    if remarks:
        summary += " " + " ".join(remarks)
    if unreachable:
        summary += f" ({unreachable[0].upper() + unreachable[1:]}.)"
    data = {
        "gpus_flag": gpus_ok,
        "runtime": runtime_ok,
        "runtimes": names,
        "hook": hook,
        "cdi": None if cdi_dirs is None else bool(cdi_dirs),
        "cdi_spec_dirs": list(cdi_dirs or ()),
    }
    if gpus_ok and runtime_ok and not notes:
        return Finding(
            fid,
            "ok" if not unreachable else "info",
            "The NVIDIA runtime is wired into Docker",
            summary,
            tuple(ev),
            "",
            data=data,
        )
    if not gpus_ok and not runtime_ok:
        return Finding(
            fid, "error", "Docker cannot give containers a GPU", summary, tuple(ev), CONFIGURE_FIX, data=data
        )
    return Finding(fid, "warning", "Docker's NVIDIA wiring is incomplete", summary, tuple(ev), CONFIGURE_FIX, data=data)


# -- cgroup-device-loss ------------------------------------------------------------------------------------


def hook_only_gpu_containers(f: HostFacts) -> list[tuple[dict, list[str]]]:
    """Running containers that got their GPUs only through the hook (runtime env or --gpus),
    with no device node in HostConfig.Devices and no CDI device: (inspect dict, selectors).

    A ``--privileged`` container is not one of them: runc gives it an allow-all device rule,
    which the systemd driver turns into a scope with no device restriction, and that is what a
    reload re-applies."""
    info = f.docker_info or {}
    names = nvidia_runtimes(info.get("Runtimes")) or frozenset({"nvidia"})
    out = []
    for c in f.containers:
        if (c.get("HostConfig") or {}).get("Privileged") is True:
            continue
        reqs = parse_requests(c, names, info.get("DefaultRuntime") or "runc")
        mech = {r.mechanism for r in reqs}
        if not mech & {"runtime-env", "device-request"}:
            continue
        devices = (c.get("HostConfig") or {}).get("Devices") or []
        explicit = [
            d for d in devices if isinstance(d, dict) and str(d.get("PathOnHost", "")).startswith("/dev/nvidia")
        ]
        if mech & {"device", "cdi"} or explicit:
            continue
        out.append((c, [r.selector for r in reqs if r.mechanism in ("runtime-env", "device-request")]))
    return out


def _device_paths(c: dict) -> list[str]:
    return [
        str(d.get("PathOnHost", "")) for d in (c.get("HostConfig") or {}).get("Devices") or [] if isinstance(d, dict)
    ]


def explicit_device_containers(f: HostFacts, unlinked: set[str]) -> list[tuple[dict, list[str]]]:
    """Running, unprivileged containers given NVIDIA device nodes with --device whose
    /dev/char/MAJ:MIN link is missing (``unlinked``: host paths): runc's systemd driver writes
    device rules by those links and skips a node without one, so a reload drops even these."""
    out = []
    for c in f.containers:
        hc = c.get("HostConfig") or {}
        if hc.get("Privileged") is True:
            continue
        lost = [p for p in _device_paths(c) if p in unlinked]
        if lost:
            out.append((c, lost))
    return out


def cgroup_device_loss(f: HostFacts) -> Finding:
    fid = "cgroup-device-loss"
    unreachable = _unreachable(f)
    if unreachable:
        return Finding(
            fid,
            "info",
            "Could not check containers for GPU loss",
            unreachable[0].upper() + unreachable[1:] + ".",
            (Evidence("docker info", unreachable, None),),
            "Run the doctor where it can reach the Docker engine (root, or the docker group).",
        )
    info = f.docker_info or {}
    driver = info.get("CgroupDriver")
    ev = [Evidence("docker info", f"CgroupDriver: {driver}; CgroupVersion: {info.get('CgroupVersion')}", driver)]
    mode, mode_ev = _toolkit_mode(f)
    ev.append(mode_ev)
    if driver != "systemd":
        return Finding(
            fid,
            "ok",
            f"cgroup driver {driver}: reloads do not remove GPU access",
            f"The engine uses the {driver} cgroup driver; systemd does not manage container device "
            f"policies, so 'systemctl daemon-reload' does not take GPUs away.",
            tuple(ev),
            "",
        )
    if mode == "cdi":
        return Finding(
            fid,
            "ok",
            "CDI mode: device nodes are in the OCI spec",
            "The toolkit runs in CDI mode, so device nodes are part of each container's spec and survive "
            "'systemctl daemon-reload'.",
            tuple(ev),
            "",
        )
    victims = hook_only_gpu_containers(f)
    # runc translates device rules to /dev/char/MAJ:MIN; missing links drop even explicit devices.
    missing_links = []
    unlinked: set[str] = set()
    for p, n in sorted(f.nodes.items()):
        if n.exists and n.is_char and procfs.dev_char_link(f.root, n.major, n.minor) is None:
            missing_links.append(f"/dev/char/{n.major}:{n.minor} ({p})")
            unlinked.add(p)
    if missing_links:
        ev.append(Evidence("/dev/char", "missing: " + ", ".join(missing_links[:6]), str(len(missing_links))))
    explicit = explicit_device_containers(f, unlinked)
    victims = victims + explicit
    fixes = (
        "Recreate the listed containers to get the GPUs back after a reload. Prevent it with one of: set "
        '\'"exec-opts": ["native.cgroupdriver=cgroupfs"]\' in daemon.json and restart dockerd; pass every '
        "node explicitly (--device /dev/nvidiactl --device /dev/nvidia-uvm --device /dev/nvidia-uvm-tools "
        '--device /dev/nvidiaN); switch the toolkit to CDI (nvidia-ctk cdi generate, mode = "cdi"); and create '
        "the /dev/char links at boot ('nvidia-ctk system create-dev-char-symlinks --create-all', e.g. from a "
        "udev rule)."
    )
    if not victims:
        summary = (
            "The engine uses the systemd cgroup driver and the toolkit injects devices through the hook "
            f"(mode {mode}), but no running container depends on the hook alone."
        )
        if missing_links:
            summary += f" {len(missing_links)} /dev/char link(s) are missing, which also drops explicit devices."
        return Finding(
            fid,
            "ok" if not missing_links else "warning",
            "No running container at risk" if not missing_links else "/dev/char links missing",
            summary,
            tuple(ev),
            "" if not missing_links else fixes,
        )
    names = []
    for c, sel in victims:
        name = (c.get("Name") or "").lstrip("/") or c.get("Id", "")[:12]
        names.append(name)
        env = [e for e in ((c.get("Config") or {}).get("Env") or []) if str(e).startswith("NVIDIA_VISIBLE_DEVICES=")]
        ev.append(
            Evidence(
                f"docker inspect {name}",
                f"Runtime={(c.get('HostConfig') or {}).get('Runtime')} "
                f"DeviceRequests={len((c.get('HostConfig') or {}).get('DeviceRequests') or [])} "
                f"Devices=[{', '.join(_device_paths(c))}] {' '.join(env)}".strip(),
                ",".join(sel),
            )
        )
    hook_names = names[: len(names) - len(explicit)]
    explicit_names = names[len(names) - len(explicit) :]
    parts = []
    if hook_names:
        parts.append(
            f"these running containers got their GPUs only through the toolkit's hook: {', '.join(hook_names)}"
        )
    if explicit_names:
        parts.append(
            f"{', '.join(explicit_names)} got NVIDIA nodes with --device, but {len(missing_links)} /dev/char "
            "link(s) are missing and runc's systemd driver writes device rules through those links"
        )
    summary = (
        f"The engine uses the systemd cgroup driver; {'; '.join(parts)}. The next 'systemctl daemon-reload' "
        f"(package installs run one) makes systemd reapply the device policy without the NVIDIA devices, and "
        f"nvidia-smi inside them then says 'Failed to initialize NVML: Unknown Error'."
    )
    return Finding(
        fid,
        "warning",
        f"{len(names)} container(s) will lose their GPUs at the next daemon-reload",
        summary,
        tuple(ev),
        fixes,
        data={"containers": names},
    )


# -- cgroup-v2-old-toolkit ----------------------------------------------------------------------------------


def _vtuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


def cgroup_v2_old_toolkit(f: HostFacts) -> Finding:
    fid = "cgroup-v2-old-toolkit"
    v2 = f.cgroup_controllers is not None
    ev = [
        Evidence(procfs.CGROUP_CONTROLLERS, " ".join(f.cgroup_controllers) if v2 else None, "cgroup v2" if v2 else None)
    ]
    if f.docker_info and f.docker_info.get("CgroupVersion"):
        v2 = v2 or str(f.docker_info.get("CgroupVersion")) == "2"
        ev.append(
            Evidence(
                "docker info",
                f"CgroupVersion: {f.docker_info.get('CgroupVersion')}",
                str(f.docker_info.get("CgroupVersion")),
            )
        )
    lib = libview.resolve_soname(f, "libnvidia-container.so.1")
    if lib is None:
        ev.append(Evidence("/etc/ld.so.cache", "no libnvidia-container.so.1", None))
        return Finding(
            fid,
            "info" if v2 else "ok",
            "libnvidia-container is not installed",
            "No libnvidia-container in the loader's cache: the legacy hook is not installed, so its "
            "cgroup v2 support does not matter.",
            tuple(ev),
            "",
        )
    path, resolved, version = lib
    ev.append(Evidence("/etc/ld.so.cache", f"libnvidia-container.so.1 => {path} -> {resolved}", version))
    if not v2:
        return Finding(
            fid,
            "ok",
            "cgroup v1: any toolkit works",
            f"The host uses cgroup v1; libnvidia-container {version or '?'} is fine.",
            tuple(ev),
            "",
        )
    if version and _vtuple(version) < (1, 8, 1):
        return Finding(
            fid,
            "error",
            f"cgroup v2 with libnvidia-container {version}",
            f"The host uses the unified cgroup hierarchy (v2) but libnvidia-container is {version}; before "
            f"1.8.1 it fails every GPU container with 'nvidia-container-cli: container error: cgroup "
            f"subsystem devices not found'.",
            tuple(ev),
            "Upgrade the toolkit packages together (libnvidia-container1, libnvidia-container-tools, "
            "nvidia-container-toolkit) to 1.8.1 or newer. Fallback: boot with "
            "systemd.unified_cgroup_hierarchy=0.",
        )
    return Finding(
        fid,
        "ok",
        f"cgroup v2 with libnvidia-container {version or '?'}",
        "libnvidia-container supports cgroup v2 (1.8.1 or newer)."
        if version
        else "libnvidia-container's version could not be read from its file name.",
        tuple(ev),
        "",
    )


# -- cdi-spec-stale ------------------------------------------------------------------------------------------


def _walk_spec(spec) -> tuple[list[str], list[dict]]:
    """hostPaths of mounts and device nodes (dicts with path/major/minor) of a CDI spec."""
    host_paths: list[str] = []
    nodes: list[dict] = []

    def edits(e):
        if not isinstance(e, dict):
            return
        for m in e.get("mounts") or []:
            if isinstance(m, dict) and m.get("hostPath"):
                host_paths.append(str(m["hostPath"]))
        for n in e.get("deviceNodes") or []:
            if isinstance(n, dict) and n.get("path"):
                nodes.append(n)

    if isinstance(spec, dict):
        edits(spec.get("containerEdits"))
        for d in spec.get("devices") or []:
            if isinstance(d, dict):
                edits(d.get("containerEdits"))
    return host_paths, nodes


def _cdi_containers(f: HostFacts) -> list[str]:
    """Names of the running containers given NVIDIA GPUs by CDI names (they resolve them again
    at every start)."""
    info = f.docker_info or {}
    nv = nvidia_runtimes(info.get("Runtimes")) | {"nvidia"}
    out = []
    for ins in f.containers:
        if any(r.mechanism == "cdi" for r in parse_requests(ins, nv, info.get("DefaultRuntime") or "runc")):
            out.append(str(ins.get("Name") or ins.get("Id", "?")[:12]).lstrip("/"))
    return sorted(out)


def _spec_dir_evidence(f: HostFacts) -> list[Evidence]:
    """Where specs were looked for and who reads them there; the engine's CDI state."""
    dirs = f.cdi_spec_dirs or tuple(SpecDir(d, ("CDI default",)) for d in CDI_DIRS)
    ev = [Evidence("CDI spec dirs", "; ".join(f"{d.path} ({', '.join(d.named_by)})" for d in dirs), None)]
    engine = f.engine_cdi_dirs
    if engine is not None:
        ev.append(
            Evidence("docker info", f"CDISpecDirs: {', '.join(engine) or '[] (CDI off)'}", "on" if engine else "off")
        )
    return ev


def cdi_spec_stale(f: HostFacts) -> Finding:
    fid = "cdi-spec-stale"
    specs = [s for s in f.cdi_specs if s.parsed is None or "nvidia.com" in str((s.parsed or {}).get("kind", ""))]
    mode, mode_ev = _toolkit_mode(f)
    users = _cdi_containers(f)
    dirs = ", ".join(d.path for d in f.cdi_spec_dirs) or ", ".join(CDI_DIRS)
    users_txt = (
        f" Running containers that use CDI devices ({', '.join(users)}) cannot start again: the engine "
        "resolves their CDI names at every start."
        if users
        else ""
    )
    data = {"containers": users, "spec_dirs": [d.path for d in f.cdi_spec_dirs]}
    if not specs:
        sev = "warning" if mode == "cdi" or users else "ok"
        why = (
            " although the toolkit is in CDI mode"
            if mode == "cdi"
            else " although running containers use CDI devices"
            if users
            else ""
        )
        return Finding(
            fid,
            sev,
            "No NVIDIA CDI spec" + why,
            f"No nvidia.com CDI spec in {dirs}."
            + (
                " With mode = \"cdi\" every GPU container fails with 'unresolvable CDI devices'."
                if mode == "cdi"
                else ""
            )
            + (users_txt or (" Nothing can be stale." if sev == "ok" else "")),
            (Evidence(dirs, "no nvidia.com spec", None), *_spec_dir_evidence(f), mode_ev),
            "Generate one: 'nvidia-ctk cdi generate --output=/var/run/cdi/nvidia.yaml' (or into a directory "
            "the engine reads: see CDISpecDirs in 'docker info')."
            if sev != "ok"
            else "",
            data=data,
        )
    ev: list[Evidence] = list(_spec_dir_evidence(f))
    problems = []
    kv = f.kernel_version
    for s in specs:
        known = len(problems)
        if s.error or s.parsed is None:
            problems.append(f"{s.path}: {s.error or 'unreadable'}")
            ev.append(Evidence(s.path, s.error, None))
            continue
        paths, nodes = _walk_spec(s.parsed)
        missing = [p for p in paths if not f.root.lexists(p)]
        for p in missing[:6]:
            ev.append(Evidence(s.path, f"hostPath: {p}", "missing"))
        if missing:
            problems.append(f"{s.path} mounts {len(missing)} host path(s) that no longer exist (e.g. {missing[0]})")
        if kv:
            olds = sorted(
                {
                    m.group(1)
                    for p in paths
                    for m in [re.search(r"libcuda\.so\.(\d+\.\d+(?:\.\d+)?)$", p)]
                    if m and m.group(1) != kv
                }
            )
            if olds:
                problems.append(f"{s.path} was generated for driver {', '.join(olds)}, the loaded module is {kv}")
                ev.append(Evidence(s.path, f"libcuda.so.{olds[0]}", olds[0]))
        for n in nodes:
            path = str(n["path"])
            host = str(n.get("hostPath") or path)
            real = f.nodes.get(host) or procfs.device_node(f.root, host)
            if not real.exists:
                problems.append(f"{s.path} lists device {host}, which does not exist")
                ev.append(Evidence(s.path, f"deviceNodes: {host}", "missing"))
            elif n.get("major") is not None and (int(n["major"]), int(n.get("minor") or 0)) != (real.major, real.minor):
                problems.append(
                    f"{s.path} gives {host} as {n['major']}:{n.get('minor')}, the node is {real.major}:{real.minor}"
                )
                ev.append(
                    Evidence(s.path, f"deviceNodes: {host} {n['major']}:{n.get('minor')}", f"{real.major}:{real.minor}")
                )
        if len(problems) == known:
            ev.append(Evidence(s.path, f"{len(paths)} hostPaths, {len(nodes)} deviceNodes", "current"))
    data["specs"] = [s.path for s in specs]
    if not problems:
        return Finding(
            fid,
            "ok",
            "CDI specs match the host",
            "Every host path and device node in the NVIDIA CDI specs exists with the right numbers.",
            tuple(ev),
            "",
            data=data,
        )
    return Finding(
        fid,
        "error" if mode == "cdi" or users else "warning",
        "The NVIDIA CDI spec is stale",
        "; ".join(problems) + ". Containers using CDI names fail with 'unresolvable CDI devices' or "
        "stat errors on missing files." + users_txt,
        tuple(ev),
        "Regenerate it: 'nvidia-ctk cdi generate --output=/var/run/cdi/nvidia.yaml' (or /etc/cdi) after "
        "every driver upgrade, reboot and MIG change; enable nvidia-cdi-refresh.path where available.",
        data=data,
    )


# -- unprivileged-envvar --------------------------------------------------------------------------------------

ENVVAR_KEY = "accept-nvidia-visible-devices-envvar-when-unprivileged"
VOLUME_KEY = "accept-nvidia-visible-devices-as-volume-mounts"
DEVICE_LIST_DIR = "/var/run/nvidia-container-devices/"
_SYS_ADMIN = frozenset({"SYS_ADMIN", "CAP_SYS_ADMIN", "ALL"})


def _config_key(f: HostFacts, key: str, default: bool) -> tuple[object, Evidence]:
    """The top-level ``key`` of config.toml as the toolkit reads it, and the line it was read from."""
    from gpudock.toolkit.config import key_line

    tc = f.toolkit_config
    if tc is None or tc.text is None:
        return default, Evidence(tc.path if tc else TOOLKIT_CONFIG, None, f"{str(default).lower()} (default)")
    value = (tc.parsed or {}).get(key, default) if isinstance(tc.parsed, dict) else default
    where = key_line(tc.text, (key,))
    if where is None:
        line = f"{key} not in the file (default {str(default).lower()})"
    else:
        line = where[1].strip() + (
            f"  (commented out: default {str(default).lower()} applies)" if where[2] == "commented" else ""
        )
    return value, Evidence(tc.path, line, str(value).lower())


def privileged_for_hook(c: dict) -> bool:
    """What the toolkit's hook counts as privileged: CAP_SYS_ADMIN in the container's capabilities
    (``--privileged`` or ``--cap-add SYS_ADMIN``)."""
    hc = c.get("HostConfig") or {}
    if hc.get("Privileged"):
        return True
    return any(str(cap).upper() in _SYS_ADMIN for cap in hc.get("CapAdd") or [])


def _volume_device_list(c: dict) -> bool:
    return any(
        isinstance(m, dict)
        and m.get("Source") == "/dev/null"
        and str(m.get("Destination", "")).startswith(DEVICE_LIST_DIR)
        for m in c.get("Mounts") or []
    )


def unprivileged_envvar(f: HostFacts) -> Finding:
    fid = "unprivileged-envvar"
    tc = f.toolkit_config
    if tc is not None and tc.error:
        return Finding(
            fid,
            "info",
            "config.toml could not be read",
            f"{tc.path}: {tc.error}.",
            (Evidence(tc.path, tc.error, None),),
            "Fix the file; the toolkit cannot use it either.",
        )
    accept, ev0 = _config_key(f, ENVVAR_KEY, True)
    volumes, ev1 = _config_key(f, VOLUME_KEY, False)
    ev = [ev0]
    if f.toolkit_config_source != "default":
        ev.append(
            Evidence(
                f"${f.toolkit_config_source}",
                f"config.toml found through ${f.toolkit_config_source}",
                tc.path if tc else None,
            )
        )
    if accept is not False:
        return Finding(
            fid,
            "ok",
            "Unprivileged containers may select GPUs with NVIDIA_VISIBLE_DEVICES",
            f"{ENVVAR_KEY} is {str(accept).lower()}: '--gpus' and NVIDIA_VISIBLE_DEVICES work for every container.",
            tuple(ev),
            "",
        )
    ev.append(ev1)
    fix = (
        f"Either set '{ENVVAR_KEY} = true' in {tc.path if tc else TOOLKIT_CONFIG} (a new container start reads "
        f"it; no restart needed), or give containers their GPUs without the env var: CDI devices "
        f"('--device nvidia.com/gpu=0' after 'nvidia-ctk cdi generate'), or with '{VOLUME_KEY} = true' the "
        f"device list as /dev/null mounts under {DEVICE_LIST_DIR} (the Kubernetes device plugin's "
        f"deviceListStrategy=volume-mounts), and recreate the affected containers."
    )
    hazard = (
        f"{ENVVAR_KEY} = false: the hook ignores NVIDIA_VISIBLE_DEVICES in containers without CAP_SYS_ADMIN, "
        f"and 'docker run --gpus' is expressed through that variable, so such containers start without any GPU "
        f"(the hook logs 'Ignoring devices ... in unprivileged container')."
    )
    level = "info" if volumes is True else "warning"
    unreachable = _unreachable(f)
    if unreachable:
        ev.append(Evidence("docker info", unreachable, None))
        return Finding(
            fid,
            level,
            "Unprivileged containers get no GPU through NVIDIA_VISIBLE_DEVICES or --gpus",
            f"{hazard} Running containers were not checked: {unreachable}.",
            tuple(ev),
            fix,
        )
    info = f.docker_info or {}
    names = nvidia_runtimes(info.get("Runtimes")) or frozenset({"nvidia"})
    victims = []
    for c in f.containers:
        reqs = [
            r
            for r in parse_requests(c, names, info.get("DefaultRuntime") or "runc")
            if r.mechanism in ("runtime-env", "device-request")
        ]
        if not reqs or privileged_for_hook(c) or (volumes is True and _volume_device_list(c)):
            continue
        name = (c.get("Name") or "").lstrip("/") or c.get("Id", "")[:12]
        victims.append(name)
        hc = c.get("HostConfig") or {}
        env = [e for e in ((c.get("Config") or {}).get("Env") or []) if str(e).startswith("NVIDIA_VISIBLE_DEVICES=")]
        ev.append(
            Evidence(
                f"docker inspect {name}",
                f"Privileged={bool(hc.get('Privileged'))} CapAdd={hc.get('CapAdd') or []} "
                f"DeviceRequests={len(hc.get('DeviceRequests') or [])} {' '.join(env)}".strip(),
                ",".join(r.selector for r in reqs),
            )
        )
    if victims:
        return Finding(
            fid,
            "error",
            f"{len(victims)} running container(s) asked for GPUs and got none",
            f"{hazard} These running containers select GPUs only that way and are not privileged: "
            f"{', '.join(victims)}.",
            tuple(ev),
            fix,
            data={"containers": victims},
        )
    ev.append(
        Evidence(
            "docker inspect",
            f"{len(f.containers)} running container(s), none selecting GPUs by "
            f"NVIDIA_VISIBLE_DEVICES/--gpus without privilege",
            "0",
        )
    )
    return Finding(
        fid,
        level,
        "Unprivileged containers get no GPU through NVIDIA_VISIBLE_DEVICES or --gpus",
        f"{hazard} No running container is affected now.",
        tuple(ev),
        fix,
        data={"containers": []},
    )
