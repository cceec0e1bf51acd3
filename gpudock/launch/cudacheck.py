"""Can this host's driver run this image's CUDA? The one parser of an image's CUDA requirement.

Owned here, shared by the doctor (``cuda-compat``, every local image) and the launcher (one image,
before ``docker run``), so both say the same thing the toolkit's hook would say.

An image states its requirement three ways (nvidia-stack.md §2.1, §6.1, §6.3):
- ``NVIDIA_REQUIRE_CUDA`` in Config.Env, e.g.
  ``cuda>=12.2 brand=tesla,driver>=470,driver<471 brand=unknown,driver>=470,driver<471``:
  space-separated clauses are ORed, comma-separated terms ANDed. The ``brand=...,driver...``
  clauses are the forward-compatibility escape hatches for data-center GPUs.
- ``CUDA_VERSION`` alone (legacy images): the hook adds ``cuda>=<major.minor>``.
- the label ``com.nvidia.cuda.version`` (nvidia-docker 1.0 images).
``NVIDIA_DISABLE_REQUIRE`` (a boolean) turns the check off.

Plain Python, no Docker or Textual import: callers pass ``docker image inspect`` dicts (``attrs``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["CudaRequirement", "image_cuda_requirement", "check", "parse_version", "driver_branch_cuda"]

_TERM = re.compile(r"^\s*([A-Za-z]+)\s*(>=|<=|!=|==|=|<|>)\s*([A-Za-z0-9][A-Za-z0-9._\-]*)\s*$")
_TRUE = {"1", "t", "true", "y", "yes", "on"}


def parse_version(text: str | None) -> tuple[int, ...] | None:
    """``"12.2.0"`` -> (12, 2); trailing ``.0``s dropped (the toolkit compares that way)."""
    if not text:
        return None
    m = re.match(r"^\s*v?(\d+(?:\.\d+)*)", text)
    if not m:
        return None
    parts = [int(x) for x in m.group(1).split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def _mm(text: str | None) -> str | None:
    """major.minor of a version string ("12.2.140" -> "12.2")."""
    v = parse_version(text)
    if v is None:
        return None
    return f"{v[0]}.{v[1] if len(v) > 1 else 0}"


@dataclass(frozen=True, slots=True)
class Term:
    key: str  # cuda, driver, arch, brand (lowercase)
    op: str
    value: str

    def __str__(self) -> str:
        return f"{self.key}{self.op}{self.value}"


@dataclass(frozen=True, slots=True)
class CudaRequirement:
    """What an image asks of the driver.

    ``min_cuda`` is the plain ``cuda>=X`` floor ("12.2"), None when the image states none.
    ``clauses`` is the whole OR-of-ANDs expression; ``source`` names where it came from
    ("NVIDIA_REQUIRE_CUDA", "CUDA_VERSION", "label com.nvidia.cuda.version"); ``raw`` is the
    value verbatim (for evidence).
    """

    min_cuda: str | None
    source: str
    raw: str
    clauses: tuple[tuple[Term, ...], ...] = ()
    disabled: bool = False  # NVIDIA_DISABLE_REQUIRE is true: the hook will not check
    cuda_version: str | None = None  # CUDA_VERSION env, the toolkit inside the image ("12.2.0")
    error: str | None = None  # the expression did not parse ("invalid expression" in the hook)

    @property
    def forward_compat(self) -> tuple[tuple[Term, ...], ...]:
        """Clauses that can pass without ``cuda>=`` (brand/driver branches)."""
        return tuple(c for c in self.clauses if not any(t.key == "cuda" for t in c))

    def to_json(self) -> dict:
        return {
            "min_cuda": self.min_cuda,
            "source": self.source,
            "raw": self.raw,
            "disabled": self.disabled,
            "cuda_version": self.cuda_version,
            "error": self.error,
        }


def _env(attrs: dict) -> dict[str, str]:
    cfg = (attrs or {}).get("Config") or {}
    out: dict[str, str] = {}
    for item in cfg.get("Env") or ():
        k, _, v = str(item).partition("=")
        out[k] = v
    return out


def _parse_expr(expr: str) -> tuple[tuple[tuple[Term, ...], ...], str | None]:
    clauses = []
    for clause in expr.split():
        terms = []
        for t in clause.split(","):
            if not t:
                continue
            m = _TERM.match(t)
            if not m:
                return tuple(clauses), f"invalid expression: {t!r}"
            terms.append(Term(m.group(1).lower(), "=" if m.group(2) == "==" else m.group(2), m.group(3)))
        if terms:
            clauses.append(tuple(terms))
    return tuple(clauses), None


def image_cuda_requirement(image_attrs: dict) -> CudaRequirement | None:
    """The CUDA requirement an image states, or None when it states none (any driver will do)."""
    env = _env(image_attrs)
    labels = ((image_attrs or {}).get("Config") or {}).get("Labels") or {}
    disabled = env.get("NVIDIA_DISABLE_REQUIRE", "").strip().lower() in _TRUE
    cuda_version = env.get("CUDA_VERSION") or None
    req = env.get("NVIDIA_REQUIRE_CUDA", "").strip()
    if req:
        clauses, err = _parse_expr(req)
        floors = [t.value for c in clauses for t in c if t.key == "cuda" and t.op in (">=", ">")]
        floor = max(floors, key=lambda v: parse_version(v) or (0,)) if floors else None
        return CudaRequirement(_mm(floor), "NVIDIA_REQUIRE_CUDA", req, clauses, disabled, cuda_version, err)
    if cuda_version and parse_version(cuda_version):
        mm = _mm(cuda_version)
        return CudaRequirement(mm, "CUDA_VERSION", cuda_version, ((Term("cuda", ">=", mm),),), disabled, cuda_version)
    label = labels.get("com.nvidia.cuda.version")
    if label and parse_version(label):
        mm = _mm(label)
        return CudaRequirement(mm, "label com.nvidia.cuda.version", label, ((Term("cuda", ">=", mm),),), disabled)
    return None


def _cmp(a: tuple[int, ...], op: str, b: tuple[int, ...]) -> bool:
    n = max(len(a), len(b))
    a = a + (0,) * (n - len(a))
    b = b + (0,) * (n - len(b))
    return {"=": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def _term_ok(t: Term, cuda: tuple[int, ...] | None, driver: tuple[int, ...] | None, brand: str | None) -> bool | None:
    """True/False, or None when the host fact is unknown (brand without NVML, say)."""
    if t.key == "cuda":
        v = parse_version(t.value)
        return None if cuda is None or v is None else _cmp(cuda, t.op, v)
    if t.key == "driver":
        v = parse_version(t.value)
        return None if driver is None or v is None else _cmp(driver, t.op, v)
    if t.key == "brand":
        if brand is None:
            return None
        same = brand.lower() == t.value.lower()
        return same if t.op == "=" else not same
    return None  # arch: per selected GPU, not known before a container is started


def check(
    requirement: CudaRequirement | None,
    driver_cuda: str | None,
    driver_version: str | None = None,
    brand: str | None = None,
) -> tuple[bool, str]:
    """(ok, message naming both versions). ``driver_cuda`` is what the driver supports ("12.2",
    nvmlSystemGetCudaDriverVersion); ``driver_version``/``brand`` let forward-compat clauses pass.

    Unknown host facts never fail the check on their own: the message says what was not known.
    """
    if requirement is None:
        return True, "the image states no CUDA requirement"
    need = requirement.min_cuda
    if requirement.disabled:
        return True, (
            f"the image needs CUDA {need or '?'} but sets NVIDIA_DISABLE_REQUIRE, so the hook will "
            f"not check it (driver supports CUDA {driver_cuda or 'unknown'}); the application may fail "
            f"with 'CUDA driver version is insufficient' instead"
        )
    if requirement.error:
        return False, f"the image's NVIDIA_REQUIRE_CUDA does not parse ({requirement.error}); the hook will refuse it"
    if driver_cuda is None:
        return (
            True,
            f"the image needs CUDA {need or '?'}; the driver's CUDA version is unknown, so this was not checked",
        )
    cuda = parse_version(driver_cuda)
    drv = parse_version(driver_version)
    results = []
    for clause in requirement.clauses or ((Term("cuda", ">=", need or "0"),),):
        vals = [_term_ok(t, cuda, drv, brand) for t in clause]
        if all(v is True for v in vals):
            results.append(True)
        elif any(v is False for v in vals):
            results.append(False)
        else:
            results.append(None)
    if any(r is True for r in results):
        if need and cuda is not None and parse_version(need) and _cmp(cuda, "<", parse_version(need)):
            return True, (
                f"the image needs CUDA {need}, the driver supports CUDA {driver_cuda}; allowed by a "
                f"forward-compatibility clause (brand/driver) of NVIDIA_REQUIRE_CUDA"
            )
        return True, f"the image needs CUDA {need or '(no floor)'}, the driver supports CUDA {driver_cuda}"
    fc = requirement.forward_compat
    if any(r is None for r in results) and fc:
        return False, (
            f"the image needs CUDA {need}, the driver supports only CUDA {driver_cuda}; it may still "
            f"start through a forward-compatibility clause ({' '.join(','.join(map(str, c)) for c in fc[:2])}"
            f"{' ...' if len(fc) > 2 else ''}) on a data-center GPU with the cuda-compat package"
        )
    return False, (
        f"the image needs CUDA {need}, the driver supports only CUDA {driver_cuda}: the hook will refuse "
        f"it with 'unsatisfied condition: cuda>={need}'"
    )


# Driver branch -> newest CUDA it supports (CUDA toolkit release notes, "minimum required driver"
# table). Used only when NVML cannot say (driver not loaded, mismatch): the doctor then still
# compares images against the libcuda the loader would give containers.
_BRANCH_CUDA = (
    (580, "13.0"),
    (575, "12.9"),
    (570, "12.8"),
    (565, "12.7"),
    (560, "12.6"),
    (555, "12.5"),
    (550, "12.4"),
    (545, "12.3"),
    (535, "12.2"),
    (530, "12.1"),
    (525, "12.0"),
    (520, "11.8"),
    (515, "11.7"),
    (510, "11.6"),
    (495, "11.5"),
    (470, "11.4"),
    (465, "11.3"),
    (460, "11.2"),
    (455, "11.1"),
    (450, "11.0"),
    (440, "10.2"),
    (418, "10.1"),
    (410, "10.0"),
)


def driver_branch_cuda(driver_version: str | None) -> str | None:
    """The CUDA version a driver branch supports ("535.129.03" -> "12.2"); None if unknown/too old."""
    v = parse_version(driver_version)
    if not v:
        return None
    for branch, cuda in _BRANCH_CUDA:
        if v[0] >= branch:
            return cuda
    return None
