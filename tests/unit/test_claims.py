"""Unit tests for gpudock.host.claims: every way a container asks for a GPU, from inspect dicts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpudock.host.claims import (
    GpuIndex,
    claims_from_inspect,
    env_map,
    gpu_key,
    is_cdi_name,
    is_nvidia_runtime_path,
    nvidia_runtimes,
    parse_requests,
    resolve_requests,
)
from gpudock.model import Container, Gpu, MigDevice


def U(i: int) -> str:
    return f"GPU-{i:08x}-1111-2222-3333-4444{i:08x}"


def MU(g: int, m: int) -> str:
    return f"MIG-{g:02x}{m:06x}-aaaa-bbbb-cccc-dddd{g:04x}{m:04x}"


# 8 GPUs whose minors are NOT their indices (as on many HGX boards): minor = 7 - index.
# GPU 7 has MIG on with two MIG devices.
GPUS = tuple(
    Gpu(
        index=i,
        uuid=U(i),
        minor=7 - i,
        pci_bus_id=f"00000000:{0x10 + i:02X}:00.0",
        mig_devices=(
            (
                MigDevice(0, MU(7, 0), "3g.40gb", None, None, gpu_instance_id=1, compute_instance_id=0),
                MigDevice(1, MU(7, 1), "3g.40gb", None, None, gpu_instance_id=2, compute_instance_id=0),
            )
            if i == 7
            else ()
        ),
    )
    for i in range(8)
)
IX = GpuIndex(GPUS)


def inspect(env=None, runtime="runc", devices=None, device_requests=None, hc_extra=None) -> dict:
    hc = {"Runtime": runtime, "Devices": devices, "DeviceRequests": device_requests}
    hc.update(hc_extra or {})
    return {"Id": "c" * 64, "Config": {"Env": env}, "HostConfig": hc}


def dev(host, cont=None):
    return {"PathOnHost": host, "PathInContainer": cont or host, "CgroupPermissions": "rwm"}


def uuids(claims):
    return [c.gpu_uuid for c in claims]


def claims(ins, runtimes=("nvidia",), default="runc"):
    return claims_from_inspect(ins, GPUS, runtimes, default)


# ---------------------------------------------------------------------------- devices


class TestDevices:
    def test_maps_by_minor_not_index(self):
        c = claims(inspect(devices=[dev("/dev/nvidia3")]))
        assert len(c) == 1
        assert c[0].mechanism == "device"
        assert c[0].selector == "/dev/nvidia3"
        assert c[0].gpu_uuid == U(4)  # minor 3 is index 4
        assert c[0].error is None

    def test_host_path_anywhere_uses_container_path(self):
        c = claims(inspect(devices=[dev("/tmp/x/nvidia5", "/dev/nvidia5")]))
        assert uuids(c) == [U(2)]
        assert c[0].selector == "/tmp/x/nvidia5:/dev/nvidia5"

    def test_host_dev_node_wins_over_container_name(self):
        # --device /dev/nvidia3:/dev/nvidia0: the card is the host's minor 3
        c = claims(inspect(devices=[dev("/dev/nvidia3", "/dev/nvidia0")]))
        assert uuids(c) == [U(4)]

    def test_odd_host_path_and_odd_container_path_uses_host_basename(self):
        c = claims(inspect(devices=[dev("/srv/nodes/nvidia6", "/dev/gpu")]))
        assert uuids(c) == [U(1)]

    def test_odd_host_path_prefers_container_path(self):
        c = claims(inspect(devices=[dev("/tmp/x/nvidia1", "/dev/nvidia6")]))
        assert uuids(c) == [U(1)]

    @pytest.mark.parametrize(
        "node",
        [
            "/dev/nvidiactl",
            "/dev/nvidia-uvm",
            "/dev/nvidia-uvm-tools",
            "/dev/nvidia-modeset",
            "/dev/nvidia-caps/nvidia-cap1",
            "/dev/nvidia-nvswitch0",
            "/dev/nvidia-nvlink",
            "/dev/dri/card0",
            "/dev/fuse",
            "/dev/nvidia",
        ],
    )
    def test_control_devices_hold_no_card(self, node):
        assert claims(inspect(devices=[dev(node)])) == ()

    def test_control_plus_cards(self):
        devs = [dev("/dev/nvidiactl"), dev("/dev/nvidia-uvm"), dev("/dev/nvidia0"), dev("/dev/nvidia7")]
        assert uuids(claims(inspect(devices=devs))) == [U(7), U(0)]

    def test_unknown_minor(self):
        c = claims(inspect(devices=[dev("/dev/nvidia12")]))
        assert c[0].gpu_uuid is None
        assert "minor 12" in c[0].error and "/dev/nvidia12" in c[0].error

    def test_devices_none_or_garbage(self):
        assert claims(inspect(devices=None)) == ()
        assert claims(inspect(devices=[None, "x", {}])) == ()

    def test_devices_count_whatever_the_runtime(self):
        assert uuids(claims(inspect(devices=[dev("/dev/nvidia0")], runtime="runsc"))) == [U(7)]

    def test_cdi_name_in_devices(self):
        d = {"PathOnHost": "nvidia.com/gpu=2", "PathInContainer": "", "CgroupPermissions": "rwm"}
        c = claims(inspect(devices=[d]))
        assert c[0].mechanism == "cdi" and c[0].selector == "nvidia.com/gpu=2"
        assert uuids(c) == [U(2)]


# ---------------------------------------------------------------------------- runtime env


class TestRuntimeEnv:
    def env(self, value, runtime="nvidia", extra=()):
        e = list(extra)
        if value is not None:
            e.append(f"NVIDIA_VISIBLE_DEVICES={value}")
        return claims(inspect(env=e, runtime=runtime))

    def test_indices(self):
        c = self.env("0,2")
        assert uuids(c) == [U(0), U(2)]
        assert [x.selector for x in c] == ["0", "2"]
        assert all(x.mechanism == "runtime-env" for x in c)

    def test_spaces_and_empty_items(self):
        assert uuids(self.env(" 1 , ,3")) == [U(1), U(3)]

    def test_all(self):
        c = self.env("all")
        assert uuids(c) == [g.uuid for g in GPUS]
        assert {x.selector for x in c} == {"all"}

    def test_all_is_case_insensitive(self):
        assert len(self.env("ALL")) == 8

    @pytest.mark.parametrize("value", ["none", "void", "", "0,void", "void,1", "NONE"])
    def test_no_card(self, value):
        assert self.env(value) == ()

    def test_unset_is_no_gpu(self):
        assert self.env(None) == ()

    def test_unset_on_legacy_cuda_image_is_all(self):
        c = self.env(None, extra=["CUDA_VERSION=10.0.130"])
        assert len(c) == 8
        assert "legacy" in c[0].selector

    def test_unset_on_modern_cuda_image_is_none(self):
        assert self.env(None, extra=["CUDA_VERSION=12.2.0", "NVIDIA_REQUIRE_CUDA=cuda>=12.2"]) == ()

    def test_explicit_value_overrides_legacy_default(self):
        assert uuids(self.env("1", extra=["CUDA_VERSION=10.0"])) == [U(1)]

    def test_last_value_wins(self):
        c = claims(inspect(env=["NVIDIA_VISIBLE_DEVICES=all", "NVIDIA_VISIBLE_DEVICES=3"], runtime="nvidia"))
        assert uuids(c) == [U(3)]

    def test_full_uuid_case_insensitive(self):
        assert uuids(self.env(U(5).upper().replace("GPU-", "GPU-"))) == [U(5)]
        assert uuids(self.env(U(5).lower())) == [U(5)]

    def test_uuid_prefix(self):
        assert uuids(self.env("GPU-00000005")) == [U(5)]

    def test_ambiguous_uuid_prefix(self):
        c = self.env("GPU-0000000")
        assert c[0].gpu_uuid is None and "matches 8 GPUs" in c[0].error

    def test_unknown_uuid(self):
        c = self.env("GPU-deadbeef-0000-0000-0000-000000000000")
        assert c[0].gpu_uuid is None
        assert "no GPU with UUID GPU-deadbeef" in c[0].error

    def test_unknown_index(self):
        c = self.env("9")
        assert c[0].gpu_uuid is None
        assert c[0].error == "index 9 does not exist on this host (8 GPUs)"
        assert c[0].selector == "9"

    def test_mixed_good_and_bad(self):
        c = self.env("1,9,GPU-nope")
        assert uuids(c) == [U(1), None, None]

    def test_garbage(self):
        c = self.env("banana")
        assert c[0].gpu_uuid is None and "not a GPU index" in c[0].error

    def test_bus_id_forms(self):
        assert uuids(self.env("0000:13:00.0")) == [U(3)]
        assert uuids(self.env("00000000:13:00.0")) == [U(3)]
        assert uuids(self.env("13:00.0")) == [U(3)]
        c = self.env("0000:99:00.0")
        assert c[0].gpu_uuid is None and "bus id" in c[0].error

    def test_mig_index(self):
        c = self.env("7:1")
        assert c[0].gpu_uuid == U(7) and c[0].mig_uuid == MU(7, 1)

    def test_mig_index_bad(self):
        c = self.env("7:5")
        assert c[0].gpu_uuid is None and "MIG device 7:5 does not exist" in c[0].error
        c = self.env("2:0")
        assert c[0].gpu_uuid is None and "no MIG devices" in c[0].error
        c = self.env("9:0")
        assert "index 9 does not exist" in c[0].error

    def test_mig_uuid(self):
        c = self.env(MU(7, 0))
        assert c[0].gpu_uuid == U(7) and c[0].mig_uuid == MU(7, 0)
        c = self.env(MU(7, 0).lower())
        assert c[0].mig_uuid == MU(7, 0)

    def test_mig_old_style_uuid(self):
        c = self.env(f"MIG-{U(7)}/2/0")
        assert c[0].gpu_uuid == U(7) and c[0].mig_uuid == MU(7, 1)
        c = self.env(f"MIG-{U(7)}/9/0")
        assert c[0].gpu_uuid is None and "GPU instance 9" in c[0].error
        c = self.env(f"MIG-{U(3)[:-1]}f/1/0")
        assert c[0].gpu_uuid is None

    def test_unknown_mig_uuid(self):
        c = self.env("MIG-ffffffff-0000-0000-0000-000000000000")
        assert c[0].gpu_uuid is None and "no MIG device" in c[0].error

    def test_cdi_names_in_env(self):
        c = self.env("nvidia.com/gpu=1,nvidia.com/gpu=GPU-00000002")
        assert uuids(c) == [U(1), U(2)]
        assert c[0].mechanism == "runtime-env"

    def test_not_nvidia_runtime_does_not_count(self):
        assert self.env("all", runtime="runc") == ()
        assert self.env("all", runtime="runsc") == ()

    def test_other_nvidia_runtime_name(self):
        c = claims(
            inspect(env=["NVIDIA_VISIBLE_DEVICES=1"], runtime="nvidia-cdi"),
            runtimes=frozenset({"nvidia", "nvidia-cdi"}),
        )
        assert uuids(c) == [U(1)]

    def test_default_runtime_applies_when_runtime_empty(self):
        ins = inspect(env=["NVIDIA_VISIBLE_DEVICES=1"], runtime="")
        assert uuids(claims(ins, default="nvidia")) == [U(1)]
        assert claims(ins, default="runc") == ()
        ins["HostConfig"].pop("Runtime")
        assert uuids(claims(ins, default="nvidia")) == [U(1)]

    def test_nv_gpu_never_counts(self):
        assert claims(inspect(env=["NV_GPU=0,1"], runtime="nvidia")) == ()
        assert claims(inspect(env=["NV_GPU=0,1"], runtime="runc")) == ()
        assert uuids(claims(inspect(env=["NV_GPU=0,1", "NVIDIA_VISIBLE_DEVICES=2"], runtime="nvidia"))) == [U(2)]

    def test_env_garbage(self):
        assert claims(inspect(env=None, runtime="nvidia")) == ()
        assert claims(inspect(env=["NOEQUALS", 5, "NVIDIA_VISIBLE_DEVICES=0"], runtime="nvidia"))[0].gpu_uuid == U(0)

    def test_device_request_env_wins_over_image_env(self):
        # --gpus device=1 on a CUDA image (NVIDIA_VISIBLE_DEVICES=all) with runtime nvidia
        ins = inspect(
            env=["NVIDIA_VISIBLE_DEVICES=all"],
            runtime="nvidia",
            device_requests=[{"Driver": "", "Count": 0, "DeviceIDs": ["1"], "Capabilities": [["gpu"]]}],
        )
        c = claims(ins)
        assert uuids(c) == [U(1)] and c[0].mechanism == "device-request"


# ---------------------------------------------------------------------------- --gpus


def dr(driver="", count=0, ids=None, caps=(("gpu",),)):
    return {"Driver": driver, "Count": count, "DeviceIDs": ids, "Capabilities": [list(c) for c in caps], "Options": {}}


class TestDeviceRequests:
    def test_count(self):
        c = claims(inspect(device_requests=[dr(count=2)]))
        assert uuids(c) == [U(0), U(1)]
        assert {x.selector for x in c} == {"count=2"}
        assert {x.mechanism for x in c} == {"device-request"}

    def test_count_all(self):
        c = claims(inspect(device_requests=[dr(count=-1)]))
        assert uuids(c) == [g.uuid for g in GPUS]

    def test_count_zero_is_none(self):
        assert claims(inspect(device_requests=[dr(count=0)])) == ()

    def test_count_more_than_gpus(self):
        c = claims(inspect(device_requests=[dr(count=10)]))
        assert uuids(c)[:8] == [g.uuid for g in GPUS]
        assert uuids(c)[8:] == [None]
        assert c[8].error == "10 GPUs asked for; this host has 8 GPUs"

    def test_a_count_of_a_billion_is_one_error_not_a_billion(self):
        c = claims(inspect(device_requests=[dr(count=10**9)]))
        assert len(c) == 9 and c[8].error == "1000000000 GPUs asked for; this host has 8 GPUs"

    def test_ids_indices_and_uuids(self):
        c = claims(inspect(device_requests=[dr(ids=["3", U(6)])]))
        assert uuids(c) == [U(3), U(6)]
        assert [x.selector for x in c] == ["3", U(6)]

    def test_quoted_comma_ids(self):
        assert uuids(claims(inspect(device_requests=[dr(ids=["1,2"])]))) == [U(1), U(2)]

    def test_driver_nvidia(self):
        assert uuids(claims(inspect(device_requests=[dr(driver="nvidia", count=1)]))) == [U(0)]
        assert uuids(claims(inspect(device_requests=[dr(driver="NVIDIA", count=1, caps=())]))) == [U(0)]

    def test_empty_driver_needs_nvidia_capabilities(self):
        assert claims(inspect(device_requests=[dr(count=1, caps=())])) == ()
        assert claims(inspect(device_requests=[dr(count=1, caps=(("tpu",),))])) == ()
        assert uuids(claims(inspect(device_requests=[dr(count=1, caps=(("gpu", "compute", "utility"),))]))) == [U(0)]
        assert uuids(claims(inspect(device_requests=[dr(count=1, caps=(("tpu",), ("gpu",)))]))) == [U(0)]

    def test_other_driver_ignored(self):
        assert claims(inspect(device_requests=[dr(driver="amd", count=-1)])) == ()

    def test_runtime_irrelevant(self):
        assert uuids(claims(inspect(device_requests=[dr(count=1)], runtime="runc"))) == [U(0)]

    def test_bad_id(self):
        c = claims(inspect(device_requests=[dr(ids=["12"])]))
        assert c[0].gpu_uuid is None and "index 12" in c[0].error

    def test_mig_ids(self):
        c = claims(inspect(device_requests=[dr(ids=["7:0", MU(7, 1)])]))
        assert uuids(c) == [U(7), U(7)]
        assert [x.mig_uuid for x in c] == [MU(7, 0), MU(7, 1)]

    def test_garbage(self):
        assert claims(inspect(device_requests=[None, "x", {"Count": "lots", "Capabilities": [["gpu"]]}])) == ()


# ---------------------------------------------------------------------------- CDI


class TestCdi:
    def cdi(self, *names):
        return claims(inspect(device_requests=[{"Driver": "cdi", "DeviceIDs": list(names), "Capabilities": None}]))

    def test_index(self):
        c = self.cdi("nvidia.com/gpu=0")
        assert uuids(c) == [U(0)] and c[0].mechanism == "cdi" and c[0].selector == "nvidia.com/gpu=0"

    def test_uuid(self):
        assert uuids(self.cdi(f"nvidia.com/gpu={U(4)}")) == [U(4)]

    def test_all(self):
        assert len(self.cdi("nvidia.com/gpu=all")) == 8

    def test_mig(self):
        c = self.cdi("nvidia.com/gpu=7:1", f"nvidia.com/gpu={MU(7, 0)}")
        assert [x.mig_uuid for x in c] == [MU(7, 1), MU(7, 0)]
        assert uuids(c) == [U(7), U(7)]

    def test_type_index(self):
        c = self.cdi("nvidia.com/gpu=gpu3", "nvidia.com/gpu=mig7:0")
        assert uuids(c) == [U(3), U(7)]
        assert c[1].mig_uuid == MU(7, 0)

    def test_unknown(self):
        c = self.cdi("nvidia.com/gpu=9")
        assert c[0].gpu_uuid is None and "index 9" in c[0].error

    def test_other_vendors_ignored(self):
        assert self.cdi("intel.com/gpu=0", "vendor.com/device=foo", "nvidia.com/imex-channel=0") == ()

    def test_malformed(self):
        c = self.cdi("not-a-cdi-name")
        assert c[0].gpu_uuid is None and "CDI" in c[0].error

    def test_mixed_mechanisms_order(self):
        ins = inspect(
            env=["NVIDIA_VISIBLE_DEVICES=5"],
            runtime="nvidia",
            devices=[dev("/dev/nvidia0")],
            device_requests=[{"Driver": "cdi", "DeviceIDs": ["nvidia.com/gpu=2"]}],
            hc_extra={"Annotations": {"cdi.k8s.io/x": "nvidia.com/gpu=4"}},
        )
        c = claims(ins)
        assert [x.mechanism for x in c] == ["device", "cdi", "cdi"]
        assert uuids(c) == [U(7), U(2), U(4)]

    def test_cdi_device_request_voids_the_runtime_env(self):
        # NVIDIA's spec sets NVIDIA_VISIBLE_DEVICES=void, which replaces the image's "all" in the OCI spec
        docker26 = {"Driver": "cdi", "Count": 0, "DeviceIDs": ["nvidia.com/gpu=3"], "Capabilities": [], "Options": {}}
        ins = inspect(env=["NVIDIA_VISIBLE_DEVICES=all"], runtime="nvidia", device_requests=[docker26])
        c = claims(ins)
        assert [(x.mechanism, x.selector, x.gpu_uuid) for x in c] == [("cdi", "nvidia.com/gpu=3", U(3))]
        # the legacy CUDA image default ("all" when unset) is voided the same way
        legacy = inspect(env=["CUDA_VERSION=10.0.130"], runtime="nvidia", device_requests=[docker26])
        assert uuids(claims(legacy)) == [U(3)]
        # another vendor's CDI device leaves the NVIDIA env alone
        intel = {"Driver": "cdi", "DeviceIDs": ["intel.com/gpu=0"]}
        assert uuids(claims(inspect(env=["NVIDIA_VISIBLE_DEVICES=1"], runtime="nvidia", device_requests=[intel]))) == [
            U(1)
        ]

    def test_cdi_annotations_with_nvidia_runtime(self):
        ann = {"cdi.k8s.io/gpus": "nvidia.com/gpu=1,nvidia.com/gpu=3", "other": "nvidia.com/gpu=5"}
        c = claims(inspect(runtime="nvidia", hc_extra={"Annotations": ann}))
        assert uuids(c) == [U(1), U(3)] and {x.mechanism for x in c} == {"cdi"}
        assert claims(inspect(runtime="runc", hc_extra={"Annotations": ann})) == ()
        assert claims(inspect(runtime="nvidia", hc_extra={"Annotations": None})) == ()

    def test_is_cdi_name(self):
        assert is_cdi_name("nvidia.com/gpu=all")
        assert not is_cdi_name("/dev/nvidia0")
        assert not is_cdi_name("nvidia0")


# ---------------------------------------------------------------------------- misc


class TestMisc:
    def test_no_gpus_on_host(self):
        c = claims_from_inspect(inspect(device_requests=[dr(count=-1)]), (), ("nvidia",))
        assert c[0].gpu_uuid is None and "no GPUs" in c[0].error
        c = claims_from_inspect(inspect(device_requests=[dr(count=1)]), (), ("nvidia",))
        assert c[0].error == "1 GPU asked for; this host has 0 GPUs"

    def test_gpu_without_uuid(self):
        gpus = (Gpu(index=0, uuid=None, minor=0, error="GPU is lost"),)
        c = claims_from_inspect(inspect(devices=[dev("/dev/nvidia0")], device_requests=[dr(count=-1)]), gpus)
        assert uuids(c) == [None, None]
        assert all("cannot be read by NVML" in x.error for x in c)

    def test_empty_and_garbage_inspect(self):
        assert claims_from_inspect({}, GPUS) == ()
        assert claims_from_inspect({"HostConfig": None, "Config": "x"}, GPUS) == ()

    def test_parse_then_resolve_against_another_host(self):
        reqs = parse_requests(inspect(devices=[dev("/dev/nvidia3")]))
        assert resolve_requests(reqs, IX)[0].gpu_uuid == U(4)
        other = GpuIndex([Gpu(index=0, uuid="GPU-other", minor=3)])
        assert resolve_requests(reqs, other)[0].gpu_uuid == "GPU-other"

    def test_container_gpu_uuids_dedup(self):
        ins = inspect(devices=[dev("/dev/nvidia7")], device_requests=[dr(ids=["0"])])
        c = Container(id="x", name="n", image="i", status="running", claims=claims(ins))
        assert c.gpu_uuids == (U(0),)

    def test_gpu_key_changes(self):
        assert gpu_key(GPUS) == gpu_key(tuple(GPUS))
        moved = (Gpu(index=0, uuid=U(0), minor=1),)
        assert gpu_key(moved) != gpu_key((Gpu(index=0, uuid=U(0), minor=0),))
        # Telemetry does not matter
        assert gpu_key((Gpu(index=0, uuid="u", temperature_c=40),)) == gpu_key(
            (Gpu(index=0, uuid="u", temperature_c=90),)
        )

    def test_runtime_paths(self):
        assert is_nvidia_runtime_path("/usr/bin/nvidia-container-runtime")
        assert is_nvidia_runtime_path("nvidia-container-runtime")
        assert is_nvidia_runtime_path("/usr/bin/nvidia-container-runtime.cdi")
        assert is_nvidia_runtime_path("nvidia-container-runtime-experimental")
        assert not is_nvidia_runtime_path("nvidia-container-runtime-hook")
        assert not is_nvidia_runtime_path("runc")
        assert not is_nvidia_runtime_path(None)
        rts = {
            "runc": {"path": "runc"},
            "nvidia": {"path": "/usr/bin/nvidia-container-runtime", "runtimeArgs": None},
            "nv-cdi": {"path": "nvidia-container-runtime.cdi"},
            "gvisor": {"path": "/usr/bin/runsc"},
            "broken": None,
        }
        assert nvidia_runtimes(rts) == {"nvidia", "nv-cdi"}
        assert nvidia_runtimes(None) == frozenset()

    def test_env_map(self):
        assert env_map(["A=1", "B=", "A=2=3", "C"]) == {"A": "2=3", "B": ""}


# ---------------------------------------------------------------------------- properties

_token = st.one_of(
    st.integers(0, 20).map(str),
    st.sampled_from(["all", "none", "void", "", " ", "7:0", "7:9", "GPU-0000000", "banana", "0000:13:00.0"]),
    st.sampled_from([g.uuid for g in GPUS]),
    st.text(max_size=12),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_token, max_size=6), st.booleans())
def test_env_never_raises_and_claims_are_consistent(tokens, nvidia):
    value = ",".join(tokens)
    c = claims(inspect(env=[f"NVIDIA_VISIBLE_DEVICES={value}"], runtime="nvidia" if nvidia else "runc"))
    known = {g.uuid for g in GPUS}
    for x in c:
        assert (x.gpu_uuid is None) != (x.error is None)
        assert x.gpu_uuid is None or x.gpu_uuid in known
    if not nvidia:
        assert c == ()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=20), max_size=5), st.lists(st.text(max_size=20), max_size=5), st.integers(-3, 12))
def test_devices_and_requests_never_raise(hosts, ids, count):
    ins = inspect(
        devices=[dev(h, h) for h in hosts],
        device_requests=[dr(ids=ids or None, count=count), {"Driver": "cdi", "DeviceIDs": ids}],
    )
    for x in claims(ins):
        assert (x.gpu_uuid is None) != (x.error is None)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 30))
def test_minor_mapping_total(minor):
    c = claims(inspect(devices=[dev(f"/dev/nvidia{minor}")]))
    if minor <= 7:
        assert uuids(c) == [U(7 - minor)]
    else:
        assert c[0].gpu_uuid is None


# ---------------------------------------------------------------------------- --privileged


def priv(**kw) -> dict:
    ins = inspect(**kw)
    ins["HostConfig"]["Privileged"] = True
    return ins


class TestPrivileged:
    def test_reaches_every_gpu_whatever_the_runtime(self):
        for runtime in ("runc", "nvidia"):
            c = claims(priv(runtime=runtime))
            assert [(x.mechanism, x.selector, x.mig_uuid, x.error) for x in c] == [
                ("privileged", "--privileged", None, None)
            ] * 8
            assert uuids(c) == [g.uuid for g in GPUS]  # index order; GPU 7 (MIG) as a whole

    def test_reach_is_not_holding(self):
        c = Container(id="x", name="n", image="i", status="running", claims=claims(priv()))
        assert c.privileged
        assert c.gpu_uuids == ()  # what launch and the container's "gpus" count as held

    @pytest.mark.parametrize("flag", [False, None, "true", 1])
    def test_only_a_true_privileged_flag(self, flag):
        ins = inspect(runtime="nvidia", env=["NVIDIA_VISIBLE_DEVICES=2"], hc_extra={"Privileged": flag})
        c = claims(ins)
        assert [x.mechanism for x in c] == ["runtime-env"] and uuids(c) == [U(2)]
        assert not Container(id="x", name="n", image="i", status="running", claims=c).privileged

    def test_env_selection_still_claims_explicitly(self):
        c = claims(priv(runtime="nvidia", env=["NVIDIA_VISIBLE_DEVICES=1"]))
        assert [x.mechanism for x in c] == ["runtime-env"] + ["privileged"] * 8
        assert uuids(c) == [U(1)] + [g.uuid for g in GPUS]
        assert Container(id="x", name="n", image="i", status="running", claims=c).gpu_uuids == (U(1),)

    def test_gpus_devices_and_cdi_still_claim_explicitly(self):
        ins = priv(
            devices=[dev("/dev/nvidia0")],
            device_requests=[dr(ids=["3"]), {"Driver": "cdi", "DeviceIDs": ["nvidia.com/gpu=5"]}],
        )
        c = claims(ins)
        assert [x.mechanism for x in c] == ["device", "device-request", "cdi"] + ["privileged"] * 8
        assert uuids(c)[:3] == [U(7), U(3), U(5)]
        assert Container(id="x", name="n", image="i", status="running", claims=c).gpu_uuids == (U(7), U(3), U(5))

    @pytest.mark.parametrize("value", ["void", "none", ""])
    def test_no_gpu_env_does_not_take_the_nodes_away(self, value):
        c = claims(priv(runtime="nvidia", env=[f"NVIDIA_VISIBLE_DEVICES={value}"]))
        assert {x.mechanism for x in c} == {"privileged"} and len(c) == 8

    def test_parse_keeps_the_request_and_resolves_per_host(self):
        reqs = parse_requests(priv(device_requests=[dr(count=1)]))
        assert [(r.mechanism, r.selector, r.token) for r in reqs] == [
            ("device-request", "count=1", "count:1"),
            ("privileged", "--privileged", "privileged"),
        ]
        two = GpuIndex([Gpu(index=0, uuid="GPU-a", minor=0), Gpu(index=1, uuid="GPU-b", minor=1)])
        assert uuids(resolve_requests(reqs, two)) == ["GPU-a", "GPU-a", "GPU-b"]

    def test_no_gpus_or_no_uuid_is_nothing_not_an_error(self):
        assert claims_from_inspect(priv(), ()) == ()
        gpus = (Gpu(index=0, uuid=None, minor=0, error="GPU is lost"), Gpu(index=1, uuid=U(1), minor=1))
        c = claims_from_inspect(priv(), gpus)
        assert [(x.gpu_uuid, x.error) for x in c] == [(U(1), None)]
