"""gpudock.launch.cudacheck: an image's CUDA requirement (as docker image inspect gives it) vs the driver."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gpudock.launch.cudacheck import check, driver_branch_cuda, image_cuda_requirement

REAL = (
    "cuda>=12.2 brand=tesla,driver>=470,driver<471 brand=unknown,driver>=470,driver<471 "
    "brand=nvidia,driver>=470,driver<471 brand=tesla,driver>=525,driver<526"
)


def img(env=(), labels=None):
    return {"Config": {"Env": list(env), "Labels": labels}}


def test_require_cuda_real_value():
    r = image_cuda_requirement(img(["PATH=/bin", f"NVIDIA_REQUIRE_CUDA={REAL}", "CUDA_VERSION=12.2.2"]))
    assert (r.min_cuda, r.source, r.cuda_version, r.disabled) == ("12.2", "NVIDIA_REQUIRE_CUDA", "12.2.2", False)
    assert len(r.clauses) == 5 and len(r.forward_compat) == 4


def test_legacy_cuda_version_and_label():
    assert image_cuda_requirement(img(["CUDA_VERSION=11.8.0"])).min_cuda == "11.8"
    r = image_cuda_requirement(img([], {"com.nvidia.cuda.version": "8.0"}))
    assert (r.min_cuda, r.source) == ("8.0", "label com.nvidia.cuda.version")
    assert image_cuda_requirement(img(["PATH=/bin"])) is None
    assert image_cuda_requirement({}) is None


def test_check_messages_name_both_versions():
    r = image_cuda_requirement(img([f"NVIDIA_REQUIRE_CUDA={REAL}"]))
    ok, msg = check(r, "12.4")
    assert ok and "12.2" in msg and "12.4" in msg
    ok, msg = check(r, "12.0", driver_version="525.147.05", brand="GeForce")
    assert not ok and "needs CUDA 12.2" in msg and "supports only CUDA 12.0" in msg
    ok, msg = check(r, "12.0", driver_version="525.147.05", brand="Tesla")
    assert ok and "forward-compatibility" in msg
    ok, msg = check(r, "12.0")  # brand unknown: might pass through forward compat
    assert not ok and "may still start" in msg
    ok, msg = check(image_cuda_requirement(img(["NVIDIA_REQUIRE_CUDA=cuda>=12.8"])), "12.2")
    assert not ok and "unsatisfied condition: cuda>=12.8" in msg


def test_disabled_and_invalid_and_unknown_driver():
    r = image_cuda_requirement(img(["NVIDIA_REQUIRE_CUDA=cuda>=12.8", "NVIDIA_DISABLE_REQUIRE=true"]))
    ok, msg = check(r, "12.2")
    assert ok and r.disabled and "NVIDIA_DISABLE_REQUIRE" in msg
    bad = image_cuda_requirement(img(["NVIDIA_REQUIRE_CUDA=cuda>>12"]))
    assert bad.error and check(bad, "12.2")[0] is False
    assert check(image_cuda_requirement(img(["CUDA_VERSION=12.2.0"])), None)[0] is True
    assert check(None, "12.2") == (True, "the image states no CUDA requirement")


def test_version_compare_ignores_trailing_zero():
    r = image_cuda_requirement(img(["NVIDIA_REQUIRE_CUDA=cuda>=12.0.0"]))
    assert check(r, "12.0")[0] and check(r, "12")[0] and not check(r, "11.8")[0]


def test_driver_branch_cuda():
    assert driver_branch_cuda("535.129.03") == "12.2"
    assert driver_branch_cuda("470.57.02") == "11.4"
    assert driver_branch_cuda("580.126.09") == "13.0"
    assert driver_branch_cuda("390.1") is None and driver_branch_cuda(None) is None


@given(st.lists(st.text(), max_size=6), st.one_of(st.none(), st.text(max_size=8)))
def test_never_raises(env, cuda):
    r = image_cuda_requirement(img(env))
    ok, msg = check(r, cuda)
    assert isinstance(ok, bool) and isinstance(msg, str)
