"""gpudock.host.ldcache: the ld.so.cache reader.

glibc's own ldconfig is the oracle throughout: caches are either written by the real ``ldconfig``
or, for what it cannot produce here (other arches, hwcap values, damage), by
``helpers.ldcache_writer`` and then read back with the real ``ldconfig -C FILE -p``.
"""

from __future__ import annotations

import os
import struct
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpudock.host import ldcache
from gpudock.host.ldcache import LdCacheEntry, LdCacheError, arch_flag, flag_text, parse
from gpudock.host.root import HostRoot
from gpudock.sim.ldcache_writer import Rec, build_cache
from helpers.libroot import add_lib, ldconfig_print, require_tools, run_ldconfig, write_ld_so_conf

# glibc 2.36 (Debian 12) prints the LoongArch arch bits as decimals; later glibc prints the words
# we use. Everything else must match ldconfig to the character.
_LOONGARCH_GLIBC_236 = {0x1100: ",4352", 0x1200: ",4608"}


def _lines(c: ldcache.LdCache) -> list[tuple[str, str, str]]:
    return [(e.soname, e.ldconfig_text, e.path) for e in c]


def _every_flag() -> list[Rec]:
    recs = []
    for arch in range(0, 0x1500, 0x100):
        for t in range(0, 6):
            recs.append(Rec(f"lib{arch:04x}_{t}.so.1", f"/usr/lib/flags/lib{arch:04x}_{t}.so.1", arch | t))
    recs.append(Rec("libneg.so.1", "/x/libneg.so.1", -1))  # int32 flags with the top bit set
    recs.append(Rec("libbig.so.1", "/x/libbig.so.1", 0x7FFF0303))
    return recs


def _compare_with_ldconfig(path: Path, c: ldcache.LdCache, skip_hwcap_names: bool = False) -> None:
    theirs = ldconfig_print(path)
    mine = _lines(c)
    assert len(theirs) == len(mine) == len(c)
    for i, (t, m) in enumerate(zip(theirs, mine)):
        e = c[i]
        if e.arch in _LOONGARCH_GLIBC_236 and t[1].endswith(_LOONGARCH_GLIBC_236[e.arch]):
            assert m[1] == e.flag_text and m[1].endswith(("soft-float", "double-float")), m
            continue
        if skip_hwcap_names and e.hwcap_name is not None:
            continue
        assert t == m, f"entry {i}"


# -- flags: every value, checked against glibc's print_entry ------------------------------------


@pytest.mark.parametrize("fmt", ["new", "compat", "old"])
def test_every_flag_value_matches_ldconfig(tmp_path: Path, fmt: str) -> None:
    require_tools()
    recs = _every_flag()
    data = build_cache(recs, fmt)
    f = tmp_path / f"ld.so.cache.{fmt}"
    f.write_bytes(data)
    c = parse(data)
    assert c.format == fmt
    assert [(e.soname, e.path) for e in c] == [(r.soname, r.path) for r in recs]
    _compare_with_ldconfig(f, c)


@pytest.mark.parametrize(
    "flags, text",
    [
        (0x0303, "libc6,x86-64"),
        (0x0003, "libc6"),
        (0x0001, "ELF"),
        (0x0803, "libc6,x32"),
        (0x0A03, "libc6,AArch64"),
        (0x0503, "libc6,64bit"),
        (0x0903, "libc6,hard-float"),
        (0x0B03, "libc6,soft-float"),
        (0x1003, "libc6,double-float"),
        (0x0603, "libc6,N32"),
        (0x0E03, "libc6,64bit,nan2008"),
        (0x0002, "libc5"),
        (0x0000, "libc4"),
        (0x0007, "unknown"),
        (0x4203, "libc6,16896"),
    ],
)
def test_flag_text(flags: int, text: str) -> None:
    assert flag_text(flags) == text


def test_arch_names() -> None:
    assert arch_flag("x86-64") == arch_flag("x86_64") == 0x0300
    assert arch_flag("i386") == 0 and arch_flag("x32") == 0x0800 and arch_flag("aarch64") == 0x0A00
    assert arch_flag(0x0500) == 0x0500
    with pytest.raises(ValueError):
        arch_flag("vax")
    with pytest.raises(ValueError):
        arch_flag(0x0303)


# -- hwcap and the extension ---------------------------------------------------------------------


def _hwcap_recs() -> list[Rec]:
    return [
        Rec("libhw.so.1", "/usr/lib/glibc-hwcaps/x86-64-v3/libhw.so.1", 0x0303, (1 << 62) | 1),
        Rec("libhw.so.1", "/usr/lib/glibc-hwcaps/x86-64-v2/libhw.so.1", 0x0303, (1 << 62) | (2 << 32) | 0),
        Rec("libhw.so.1", "/usr/lib/libhw.so.1", 0x0303),
        Rec("libhw.so.1", "/usr/lib32/libhw.so.1", 0x0003),
        Rec("libbadidx.so.1", "/usr/lib/libbadidx.so.1", 0x0303, (1 << 62) | 9),  # index past the array
        Rec("libtls.so.1", "/usr/lib/tls/libtls.so.1", 0x0303, 1 << 63),  # legacy hwcap
        Rec("libosv.so.1", "/usr/lib/libosv.so.1", 0x0303, 0, 0x00020612),
    ]


def test_hwcap_and_extension_match_ldconfig(tmp_path: Path) -> None:
    require_tools()
    data = build_cache(_hwcap_recs(), "new", generator="ldconfig (test) 9.99", hwcaps=["x86-64-v2", "x86-64-v3"])
    f = tmp_path / "c"
    f.write_bytes(data)
    c = parse(data)
    assert c.generator == "ldconfig (test) 9.99" and c.warnings == ()
    _compare_with_ldconfig(f, c)
    assert [e.hwcap_name for e in c] == ["x86-64-v3", "x86-64-v2", None, None, None, None, None]
    assert c[0].hwcap_extension and c[1].hwcap_extension and not c[5].hwcap_extension
    assert c[6].osversion == 0x00020612
    # The loader: plain entry unless the caller says the CPU supports a glibc-hwcaps subdir.
    assert c.lookup("libhw.so.1", "x86-64").path == "/usr/lib/libhw.so.1"
    assert c.lookup("libhw.so.1", "x86-64", hwcaps=["x86-64-v2"]).path.endswith("x86-64-v2/libhw.so.1")
    assert c.lookup("libhw.so.1", "x86-64", hwcaps=["x86-64-v2", "x86-64-v3"]).path.endswith("x86-64-v3/libhw.so.1")
    assert c.lookup("libhw.so.1", "i386").path == "/usr/lib32/libhw.so.1"
    assert c.lookup("libtls.so.1", "x86-64") is None  # legacy hwcap dirs: not loaded (glibc >= 2.37)
    assert c.lookup("libbadidx.so.1", "x86-64") is None


def test_compat_with_hwcaps_uses_the_new_header_as_string_base(tmp_path: Path) -> None:
    # glibc 2.36's own ldconfig aborts writing a compat cache with glibc-hwcaps dirs, and its -p
    # then resolves hwcap names against the file start; the loader uses the new header, as we do.
    data = build_cache(_hwcap_recs(), "compat", generator="g", hwcaps=["x86-64-v2", "x86-64-v3"])
    f = tmp_path / "c"
    f.write_bytes(data)
    c = parse(data)
    assert c.format == "compat" and c.generator == "g"
    assert [e.hwcap_name for e in c][:2] == ["x86-64-v3", "x86-64-v2"]
    _compare_with_ldconfig(f, c, skip_hwcap_names=True)


@pytest.mark.parametrize(
    "mangle, warning",
    [
        (lambda d, off: d[:off] + b"\0\0\0\0" + d[off + 4 :], "bad magic"),
        (lambda d, off: d[:off] + struct.pack("<II", 0xEAA42174, 10_000) + d[off + 8 :], "claims 10000 sections"),
        (lambda d, off: d[: off + 16] + struct.pack("<I", 1 << 30) + d[off + 20 :], "runs past the end"),
    ],
)
def test_damaged_extension_is_a_warning_not_an_error(mangle, warning) -> None:
    data = build_cache(_hwcap_recs(), "new", generator="gen", hwcaps=["x86-64-v2", "x86-64-v3"])
    (ext_off,) = struct.unpack_from("<I", data, 32)
    c = parse(mangle(data, ext_off))
    assert any(warning in w for w in c.warnings), c.warnings
    assert len(c) == 7 and c.lookup("libhw.so.1", "x86-64").path == "/usr/lib/libhw.so.1"


def test_misaligned_extension_offset_is_a_warning() -> None:
    data = bytearray(build_cache(_hwcap_recs(), "new", generator="gen"))
    struct.pack_into("<I", data, 32, 3)
    c = parse(bytes(data))
    assert c.generator is None and "misaligned" in c.warnings[0]


# -- byte order ------------------------------------------------------------------------------------


def test_big_endian_cache_reads_the_same() -> None:
    recs = _hwcap_recs() + _every_flag()[:20]
    le = parse(build_cache(recs, "new", hwcaps=["x86-64-v2", "x86-64-v3"]))
    be = parse(build_cache(recs, "new", byte_order="big", hwcaps=["x86-64-v2", "x86-64-v3"]))
    assert be.byte_order == "big" and le.byte_order == "little"
    assert be.entries == le.entries


def test_unset_byte_order_flag_means_native_and_invalid_is_an_error() -> None:
    recs = _hwcap_recs()
    assert parse(build_cache(recs, "new", order_flag=0)).entries == parse(build_cache(recs, "new")).entries
    with pytest.raises(LdCacheError) as ei:
        parse(build_cache(recs, "new", order_flag=1))
    assert ei.value.offset == 28 and "byte order" in str(ei.value)


# -- lookup semantics ------------------------------------------------------------------------------


def test_lookup_takes_the_first_acceptable_entry_in_file_order() -> None:
    recs = [
        Rec("libnvidia-ml.so.1", "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1", 0x0303),
        Rec("libnvidia-ml.so.1", "/usr/lib64/nvidia/libnvidia-ml.so.1", 0x0303),
        Rec("libnvidia-ml.so.1", "/usr/lib/i386-linux-gnu/libnvidia-ml.so.1", 0x0003),
        Rec("libnvidia-ml.so.1", "/usr/libx32/libnvidia-ml.so.1", 0x0803),
        Rec("libplain.so.1", "/usr/lib32/libplain.so.1", 0x0001),  # 32-bit, not linked to libc
        Rec("libplain.so.1", "/usr/lib/libplain.so.1", 0x0301),  # x86-64 loader wants exactly 0x0303
        Rec("libc5.so.1", "/usr/lib/libc5.so.1", 0x0002),
    ]
    c = parse(build_cache(recs))
    assert c.lookup("libnvidia-ml.so.1", "x86-64").path == "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1"
    assert c.lookup("libnvidia-ml.so.1", 0x0300) is c.lookup("libnvidia-ml.so.1", "amd64")
    assert c.lookup("libnvidia-ml.so.1", "i386").path.startswith("/usr/lib/i386")
    assert c.lookup("libnvidia-ml.so.1", "x32").path.startswith("/usr/libx32")
    assert c.lookup("libnvidia-ml.so.1", "aarch64") is None
    assert c.lookup("libplain.so.1", "i386").path == "/usr/lib32/libplain.so.1"
    assert c.lookup("libplain.so.1", "x86-64") is None
    assert c.lookup("libc5.so.1", "i386") is None
    assert c.lookup("libmissing.so.1", "x86-64") is None
    assert [e.path for e in c.all("libnvidia-ml.so.1")] == [r.path for r in recs[:4]]
    assert c.all("nope") == ()
    assert c.sonames() == ["libnvidia-ml.so.1", "libplain.so.1", "libc5.so.1"]
    assert c.lookup("libnvidia-ml.so.1") == c.lookup("libnvidia-ml.so.1", ldcache.native_arch())


def test_entries_are_immutable_and_indexable() -> None:
    c = parse(build_cache(_hwcap_recs(), hwcaps=["x86-64-v2", "x86-64-v3"]))
    e = c[0]
    assert isinstance(e, LdCacheEntry)
    with pytest.raises(AttributeError):
        e.path = "/x"  # type: ignore[misc]
    assert c[-1] == c.entries[-1] and c[2] == list(c)[2]
    with pytest.raises(IndexError):
        c[len(c)]
    assert e.to_json()["hwcap_name"] == "x86-64-v3"
    assert parse(build_cache([])).entries == ()


def test_non_utf8_names_round_trip_as_filesystem_names() -> None:
    name = "libw\udcfeird.so.1"  # a byte that is not UTF-8, as os.fsdecode would give it
    c = parse(build_cache([Rec(name, "/usr/lib/" + name)]))
    assert c[0].soname == name and os.fsencode(c[0].path) == b"/usr/lib/libw\xfeird.so.1"


# -- errors: what and where ----------------------------------------------------------------------


def _new_hdr(nlibs: int, len_strings: int) -> bytes:
    return b"glibc-ld.so.cache1.1" + struct.pack("<II", nlibs, len_strings) + bytes([2]) + b"\0" * 19


@pytest.mark.parametrize(
    "data, match, offset",
    [
        (b"", "empty file", 0),
        (b"\x7fELF\x02\x01\x01" + b"\0" * 60, "bad magic", 0),
        (b"glibc-ld.so.cache1.2" + b"\0" * 40, "unsupported new-format version", 17),
        (b"glibc-ld.so.cache1.1" + b"\0" * 10, "truncated new-format header", 30),
        (b"ld.so-1.7.0", "truncated old-format header", 11),
        (b"ld.so-1.7.0\0" + struct.pack("<I", 0xFFFFFFFF) + b"\0" * 100, "claims 4294967295 entries", 12),
        (_new_hdr(0xFFFFFFFF, 0), "claims 4294967295 entries", 20),
        (_new_hdr(1, 0) + b"\0" * 24, "outside the string table", 52),
        (_new_hdr(0, 100) + b"\0" * 10, "string table of 100 bytes", 24),
        (
            _new_hdr(1, 8) + struct.pack("<iIIIQ", 0x303, 72, 10_000, 0, 0) + b"libx.so\0",
            "path offset 10000",
            56,
        ),
        (
            _new_hdr(1, 8) + struct.pack("<iIIIQ", 0x303, 72, 72, 0, 0) + b"libx.so1",
            "not NUL-terminated",
            52,
        ),
        (
            _new_hdr(1, 8) + struct.pack("<iIIIQ", 0x303, 3, 72, 0, 0) + b"libx.so\0",
            "soname offset 3 points at file offset 3",
            52,
        ),
    ],
)
def test_errors_say_what_and_where(data: bytes, match: str, offset: int) -> None:
    with pytest.raises(LdCacheError) as ei:
        parse(data)
    assert match in str(ei.value)
    assert ei.value.offset == offset
    assert f"at byte offset {offset}" in str(ei.value)


def test_read_missing_and_broken_files(tmp_path: Path) -> None:
    root = HostRoot(tmp_path)
    with pytest.raises(LdCacheError, match="does not exist"):
        ldcache.read(root)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/ld.so.cache").write_bytes(b"garbage")
    with pytest.raises(LdCacheError) as ei:
        ldcache.read(root)
    assert ei.value.path == "/etc/ld.so.cache" and str(ei.value).startswith("/etc/ld.so.cache: bad magic")
    (tmp_path / "etc/ld.so.cache").unlink()
    (tmp_path / "etc/ld.so.cache").mkdir()
    with pytest.raises(LdCacheError, match="cannot read"):
        ldcache.read(root)


def test_accepts_bytearray_and_memoryview() -> None:
    data = build_cache(_hwcap_recs())
    assert parse(bytearray(data)).entries == parse(memoryview(data)).entries == parse(data).entries


# -- real caches written by ldconfig in each format -----------------------------------------------


@pytest.fixture(scope="module")
def real_root(tmp_path_factory) -> Path:
    require_tools()
    r = tmp_path_factory.mktemp("ldroot")
    add_lib(r, "/usr/lib/x86_64-linux-gnu", "libnvidia-ml.so.535.129.03", "libnvidia-ml.so.1")
    add_lib(r, "/usr/lib/x86_64-linux-gnu", "libcuda.so.535.129.03", "libcuda.so.1")
    add_lib(r, "/usr/lib64/nvidia", "libnvidia-ml.so.470.57.02", "libnvidia-ml.so.1")
    add_lib(r, "/usr/lib/i386-linux-gnu", "libnvidia-ml.so.535.129.03", "libnvidia-ml.so.1", arch="i386")
    add_lib(r, "/usr/libx32", "libfoo.so.1.0", "libfoo.so.1", arch="x32")
    add_lib(r, "/usr/lib/x86_64-linux-gnu", "libfoo.so.1.0", "libfoo.so.1")
    for i in range(7):  # an odd count, so compat pads its old table
        add_lib(r, "/opt/many", f"libmany{i}.so.{i}.0", f"libmany{i}.so.{i}")
    write_ld_so_conf(
        r, ["/usr/lib/x86_64-linux-gnu", "/usr/lib64/nvidia", "/usr/lib/i386-linux-gnu", "/usr/libx32", "/opt/many"]
    )
    return r


@pytest.mark.parametrize("fmt", ["new", "compat", "old"])
def test_real_ldconfig_caches_in_every_format(real_root: Path, fmt: str) -> None:
    f = run_ldconfig(real_root, fmt, cache=f"/etc/ld.so.cache.{fmt}")
    c = ldcache.read(HostRoot(real_root), f"/etc/ld.so.cache.{fmt}")
    assert c.format == fmt
    _compare_with_ldconfig(f, c)
    texts = {e.flag_text for e in c}
    assert {"libc6,x86-64", "libc6", "libc6,x32"} <= texts
    if fmt != "old":
        assert c.generator and c.generator.startswith("ldconfig")
    ml = c.lookup("libnvidia-ml.so.1", "x86-64")
    assert ml is not None and ml.path == "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1"
    assert c.lookup("libnvidia-ml.so.1", "i386").path == "/usr/lib/i386-linux-gnu/libnvidia-ml.so.1"
    assert c.lookup("libfoo.so.1", "x32").path == "/usr/libx32/libfoo.so.1"
    assert len(c.all("libnvidia-ml.so.1")) == 3


def test_compat_and_new_hold_the_same_entries(real_root: Path) -> None:
    new = parse(run_ldconfig(real_root, "new", cache="/etc/c.new").read_bytes())
    compat = parse(run_ldconfig(real_root, "compat", cache="/etc/c.compat").read_bytes())
    old = parse(run_ldconfig(real_root, "old", cache="/etc/c.old").read_bytes())
    assert new.entries == compat.entries
    assert [(e.soname, e.path, e.flags) for e in old] == [(e.soname, e.path, e.flags) for e in new]


# -- robustness: random and damaged input --------------------------------------------------------

_SEEDS: dict[str, bytes] = {}


def _seed(kind: str) -> bytes:
    if kind not in _SEEDS:
        if kind == "host":
            _SEEDS[kind] = Path("/etc/ld.so.cache").read_bytes()
        elif kind == "synthetic":
            _SEEDS[kind] = build_cache(
                _hwcap_recs() + _every_flag()[:12], "new", generator="g", hwcaps=["x86-64-v2", "x86-64-v3"]
            )
        else:
            _SEEDS[kind] = build_cache(_every_flag()[:9], kind)
    return _SEEDS[kind]


def _check_total(data: bytes) -> None:
    """parse() gives LdCacheError or a cache whose every entry is readable; bounded in time and
    memory."""
    tracemalloc.start()
    t = time.perf_counter()
    try:
        c = parse(data)
    except LdCacheError as e:
        assert str(e)
        return
    finally:
        elapsed = time.perf_counter() - t
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert elapsed < 1.0
        # parse() copies the data once and splits the entry table into columns: a few times the
        # file, never what a forged count would ask for.
        assert peak < 8 * len(data) + (256 << 10), (peak, len(data))
    for e in c:
        assert isinstance(e.soname, str) and isinstance(e.path, str) and e.ldconfig_text
    if len(c):
        c.lookup(c[0].soname, c[0].arch or "i386")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_random_bytes(data: bytes) -> None:
    _check_total(data)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["new", "old", "compat"]), st.binary(max_size=2048))
def test_random_bytes_after_a_valid_magic(kind: str, tail: bytes) -> None:
    head = {"new": b"glibc-ld.so.cache1.1", "old": b"ld.so-1.7.0", "compat": _seed("compat")[:16]}[kind]
    _check_total(head + tail)


_mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 20), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 20), st.just(0)),
    st.tuples(st.just("u32"), st.integers(0, 1 << 20), st.sampled_from([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 0x80000000])),
    st.tuples(st.just("insert"), st.integers(0, 1 << 20), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.integers(0, 1 << 20), st.integers(1, 64)),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["host", "synthetic", "old", "compat"]), st.lists(_mutation, min_size=1, max_size=6))
def test_mutated_real_caches(kind: str, mutations) -> None:
    data = bytearray(_seed(kind))
    for op, pos, val in mutations:
        if not data:
            break
        # Bias half the positions into the header and entry table, where damage matters most.
        pos = pos % (len(data) if pos & 1 else min(len(data), 200))
        if op == "flip":
            data[pos] ^= val
        elif op == "truncate":
            del data[pos:]
        elif op == "u32":
            data[pos : pos + 4] = struct.pack("<I", val)
        elif op == "insert":
            data[pos:pos] = bytes([val])
        else:
            del data[pos : pos + val]
    _check_total(bytes(data))


def test_every_truncation_of_a_real_cache() -> None:
    data = _seed("synthetic")
    for n in range(len(data)):
        _check_total(data[:n])
    assert len(parse(data)) > 0


# -- the vectorised range check parse() relies on -------------------------------------------------

_u32 = st.integers(0, 0xFFFFFFFF)


@settings(max_examples=500, deadline=None)
@given(st.lists(_u32, max_size=40), _u32, _u32, st.data())
def test_all_within_agrees_with_a_plain_loop(values, a, b, data) -> None:
    from array import array

    from gpudock.host.ldcache import _all_within

    lo, hi = min(a, b), max(a, b)
    # Values near the bounds are where byte-wise comparison can go wrong.
    near = data.draw(
        st.lists(
            st.sampled_from([lo, hi, max(lo - 1, 0), min(hi + 1, 0xFFFFFFFF), lo ^ 0xFF, hi ^ 0x100, hi & 0xFFFF00]),
            max_size=6,
        )
    )
    vals = values + near
    arr = array("I" if array("I").itemsize == 4 else "L", vals)
    assert _all_within(arr, lo, hi) == all(lo <= v <= hi for v in vals)


def test_select_keeps_file_order_and_builds_only_matches() -> None:
    recs = [
        Rec("libb.so.1", "/l/libb.so.1"),
        Rec("liba.so.1", "/l/liba.so.1"),
        Rec("libb.so.1", "/l2/libb.so.1", 0x0003),
        Rec("libc.so.1", "/l/libc.so.1"),
    ]
    c = parse(build_cache(recs))
    got = c.select(lambda s: s != "liba.so.1")
    assert [e.path for e in got] == ["/l/libb.so.1", "/l2/libb.so.1", "/l/libc.so.1"]
    assert got[0] is c[0] and got[-1] is c.entries[3]


def test_lookup_by_scan_equals_lookup_by_index() -> None:
    # Before the soname index exists, lookup()/all() find entries by scanning the string table;
    # both ways must agree on every soname of a real cache (suffix-shared strings included).
    data = Path("/etc/ld.so.cache").read_bytes()
    indexed = parse(data)
    names = indexed.sonames()  # builds the index
    for name in names + ["libc.so", "so.6", "", "x\0y", "libnope.so.1"]:
        scanning = parse(data)
        assert scanning.all(name) == indexed.all(name), name
        assert scanning.lookup(name, "x86-64") == indexed.lookup(name, "x86-64"), name
        assert scanning._index is None
    # A soname that is the tail of another string ("libz.so.1" inside ".../libz.so.1") and of a
    # longer soname ("liblibz.so.1") must not match the longer one.
    c = parse(build_cache([Rec("liblibz.so.1", "/a/liblibz.so.1"), Rec("libz.so.1", "/a/libz.so.1")]))
    assert [e.path for e in c.all("libz.so.1")] == ["/a/libz.so.1"]
