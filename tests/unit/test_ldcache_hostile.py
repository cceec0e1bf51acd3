"""Hostile ld.so.caches: reading one costs time and memory linear in its size (issue 16).

Each cache is parsed, and every entry built, in a child process that ``resource.setrlimit``
gives a CPU-time and an address-space budget: a reader whose cost grows with the square of the
file (a directory of 32,768 extension sections each spanning the file: 8.5 s; 16,384 hwcap names
all pointing at one 1 MiB string: about 16 GiB) is killed (SIGXCPU) or gets MemoryError, and the
test fails on the child's exit status, not on a stopwatch.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from gpudock.host import ldcache

CPU_SECONDS = 5  # each of these takes well under a second
MEMORY = 1 << 30  # 1 GiB of address space for the interpreter, the file and what it decodes

NEW_MAGIC = b"glibc-ld.so.cache1.1"
EXT_MAGIC = 0xEAA42174
HWCAP_EXT = 1 << 62

_CHILD = r"""
import json, resource, sys
resource.setrlimit(resource.RLIMIT_CPU, ({cpu}, {cpu}))
resource.setrlimit(resource.RLIMIT_AS, ({mem}, {mem}))
from gpudock.host import ldcache
from gpudock.host.root import HostRoot
out = {{}}
try:
    c = ldcache.read(HostRoot(sys.argv[1]))
    entries = c.entries
    out = {{"entries": len(entries), "warnings": list(c.warnings), "generator": c.generator,
           "hwcap_names": sorted({{e.hwcap_name for e in entries if e.hwcap_name}}),
           "sonames": len(c.sonames()), "lookup": bool(c.lookup("libx.so.1"))}}
except ldcache.LdCacheError as e:
    out = {{"error": str(e)}}
print(json.dumps(out))
"""


def bounded_read(tmp_path: Path, data: bytes) -> dict:
    """Read and fully materialise ``data`` as <root>/etc/ld.so.cache under the budgets."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/ld.so.cache").write_bytes(data)
    code = _CHILD.format(cpu=CPU_SECONDS, mem=MEMORY)
    p = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, (
        f"the reader went over its budget ({CPU_SECONDS} s of CPU, {MEMORY >> 20} MiB): exit {p.returncode}\n"
        + p.stderr[-2000:]
    )
    return json.loads(p.stdout)


def _header(nlibs: int, len_strings: int, ext_off: int) -> bytes:
    hdr = NEW_MAGIC + struct.pack("<II", nlibs, len_strings) + bytes([2, 0, 0, 0])
    hdr += struct.pack("<I", ext_off) + b"\0" * 12
    assert len(hdr) == 48
    return hdr


def _entry(key: int, value: int, hwcap: int = 0) -> bytes:
    return struct.pack("<iIIIQ", 0x0303, key, value, 0, hwcap)


def sections_spanning_the_file(count: int = 32768) -> bytes:
    """One entry, then an extension directory of ``count`` sections (generator and glibc-hwcaps
    in turn), each one claiming the whole file."""
    table = b"libx.so.1\0/usr/lib/libx.so.1\0"
    strings_at = 48 + 24
    ext_off = (strings_at + len(table) + 3) & ~3
    n = ext_off + 8 + 16 * count
    n += (-n) % 4
    out = bytearray(_header(1, len(table), ext_off) + _entry(strings_at, strings_at + 10) + table)
    out += b"\0" * (ext_off - len(out))
    out += struct.pack("<II", EXT_MAGIC, count)
    for i in range(count):
        out += struct.pack("<IIII", i % 2, 0, 0, n)
    out += b"\0" * (n - len(out))
    return bytes(out)


def hwcap_names_into_one_long_string(names: int = 16384, length: int = 1 << 20) -> bytes:
    """``names`` glibc-hwcaps names, every one pointing at the same ``length``-byte string, and an
    entry that uses name 0."""
    table = b"libx.so.1\0/usr/lib/libx.so.1\0" + b"h" * length + b"\0"
    strings_at = 48 + 24
    long_at = strings_at + table.index(b"h")
    ext_off = (strings_at + len(table) + 3) & ~3
    data_at = ext_off + 8 + 16
    out = bytearray(_header(1, len(table), ext_off) + _entry(strings_at, strings_at + 10, HWCAP_EXT | 0) + table)
    out += b"\0" * (ext_off - len(out))
    out += struct.pack("<II", EXT_MAGIC, 1) + struct.pack("<IIII", 1, 0, data_at, 4 * names)
    out += struct.pack(f"<{names}I", *([long_at] * names))
    return bytes(out)


def entries_into_one_long_string(entries: int = 10000, length: int = 256 << 10, distinct: bool = True) -> bytes:
    """``entries`` entries whose soname and path point into one ``length``-byte string: at
    successive offsets (each a different, long suffix: quadratic text) or all at its start."""
    strings_at = 48 + 24 * entries
    table = b"s" * length + b"\0"
    body = bytearray()
    for i in range(entries):
        k = strings_at + (i % length if distinct else 0)
        body += _entry(k, k + 1 if distinct else k)
    return _header(entries, len(table), 0) + bytes(body) + table


def test_a_directory_of_32768_file_sized_sections(tmp_path):
    data = sections_spanning_the_file()
    assert 512 << 10 <= len(data) < 520 << 10
    got = bounded_read(tmp_path, data)
    assert got["entries"] == 1 and got["lookup"]
    assert any(f"lists 32768 sections; only the first {ldcache.MAX_EXTENSION_SECTIONS}" in w for w in got["warnings"])
    assert any("repeats an earlier one" in w for w in got["warnings"])


def test_16384_hwcap_names_pointing_at_one_1_mib_string(tmp_path):
    got = bounded_read(tmp_path, hwcap_names_into_one_long_string())
    assert got["entries"] == 1 and got["hwcap_names"] == []  # longer than any directory name
    assert any(f"longer than {ldcache.MAX_HWCAP_NAME} bytes" in w for w in got["warnings"])


def test_hwcap_names_decoded_once_each(tmp_path):
    # the same hostile shape with a name short enough to be one: decoded once, shared
    data = hwcap_names_into_one_long_string(length=200)
    got = bounded_read(tmp_path, data)
    assert got["hwcap_names"] == ["h" * 200]
    c = ldcache.parse(data)
    names = c._hwcap_names
    assert len(names) == 16384 and len({id(x) for x in names}) == 1


def test_entries_pointing_at_successive_suffixes_of_one_string_are_refused(tmp_path):
    got = bounded_read(tmp_path, entries_into_one_long_string())
    assert "point again and again into long strings" in got["error"]


def test_entries_sharing_one_long_string_are_read_with_it_decoded_once(tmp_path):
    got = bounded_read(tmp_path, entries_into_one_long_string(entries=10000, length=100 << 10, distinct=False))
    assert got["entries"] == 10000 and got["sonames"] == 1


@pytest.mark.parametrize("size", [64 << 10, 512 << 10, 4 << 20])
def test_a_big_but_honest_cache_stays_cheap(tmp_path, size):
    """Many short, distinct strings (what ldconfig writes), up to 4 MiB: read in full."""
    n = size // 64
    strings_at = 48 + 24 * n
    table = bytearray()
    body = bytearray()
    for i in range(n):
        so = f"lib{i}.so.1".encode()
        path = f"/usr/lib/x86_64-linux-gnu/lib{i}.so.1".encode()
        body += _entry(strings_at + len(table) + len(path) - len(so), strings_at + len(table))
        table += path + b"\0"
    data = _header(n, len(table), 0) + bytes(body) + bytes(table)
    got = bounded_read(tmp_path, data)
    assert got["entries"] == n and got["sonames"] == n
