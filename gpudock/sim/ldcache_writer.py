"""A writer of ld.so.cache files: the simulated host's loader cache, and tests that need what
ldconfig cannot produce here (every flag value, osversion and hwcap values, big-endian files,
hand-made damage).

It follows glibc's ``save_cache`` layout: header, entries, one string table (offsets relative to the
new header; in the compat layout the old table comes first, its count rounded up to even by repeating
the last entry, so that the new header is 8-byte aligned), then the extension directory (glibc 2.33+)
rounded up to 4. The real ldconfig reads these files back (``ldconfig -C FILE -p``), which is how the
tests check our reader's flag words against glibc's own. :func:`ldconfig_order` sorts entries the way
ldconfig does, so that the loader's binary search (and "the first entry wins") holds.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

OLD_MAGIC = b"ld.so-1.7.0"
NEW_MAGIC = b"glibc-ld.so.cache1.1"
EXTENSION_MAGIC = 0xEAA42174


@dataclass(frozen=True)
class Rec:
    soname: str
    path: str
    flags: int = 0x0303
    hwcap: int = 0
    osversion: int = 0


def build_cache(
    recs: list[Rec] | tuple[Rec, ...],
    fmt: str = "new",
    *,
    byte_order: str = "little",
    generator: str | None = None,
    hwcaps: list[str] | None = None,
    order_flag: int | None = None,
) -> bytes:
    """Bytes of a cache holding ``recs`` in the given order, in format ``old``, ``new`` or ``compat``.

    ``generator``/``hwcaps`` add the extension directory (new/compat only). ``order_flag`` overrides
    the header's byte-order flag (default: 2 little / 3 big).
    """
    e = "<" if byte_order == "little" else ">"
    # String table: hwcaps names, then soname and path of every record, deduplicated.
    table = bytearray()
    offs: dict[str, int] = {}

    def add(s: str) -> int:
        if s not in offs:
            offs[s] = len(table)
            table.extend(s.encode("utf-8", "surrogateescape") + b"\0")
        return offs[s]

    for h in hwcaps or ():
        add(h)
    for r in recs:
        add(r.soname)
        add(r.path)

    n = len(recs)
    if fmt == "old":
        old = bytearray(OLD_MAGIC + b"\0" + struct.pack(e + "I", n))
        for r in recs:
            old += struct.pack(e + "iII", _s32(r.flags), offs[r.soname], offs[r.path])
        return bytes(old + table)

    new_size = 48 + 24 * n
    prefix = b""
    if fmt == "compat":
        n_old = n + (n & 1)  # glibc rounds up to even, repeating the last entry
        old_recs = list(recs) + ([recs[-1]] if n & 1 else [])
        prefix_b = bytearray(OLD_MAGIC + b"\0" + struct.pack(e + "I", n_old))
        for r in old_recs:
            # Old offsets are relative to the end of the old table, which is where the new header
            # (and, past it, the shared strings) begins.
            prefix_b += struct.pack(e + "iII", _s32(r.flags), new_size + offs[r.soname], new_size + offs[r.path])
        pad = (-len(prefix_b)) % 8
        prefix = bytes(prefix_b) + b"\0" * pad
    elif fmt != "new":
        raise ValueError(fmt)

    ext = b""
    ext_off = 0
    if generator is not None or hwcaps:
        after = len(prefix) + new_size + len(table)
        ext_off = (after + 3) & ~3
        sections = []
        payload = bytearray()
        dir_size = 8 + 16 * ((generator is not None) + bool(hwcaps))
        data_at = ext_off + dir_size
        if generator is not None:
            g = generator.encode()
            sections.append((0, 0, data_at + len(payload), len(g)))
            payload += g
        if hwcaps:
            arr = b"".join(struct.pack(e + "I", new_size + offs[h]) for h in hwcaps)
            sections.append((1, 0, data_at + len(payload), len(arr)))
            payload += arr
        ext = b"\0" * (ext_off - after) + struct.pack(e + "II", EXTENSION_MAGIC, len(sections))
        for s in sections:
            ext += struct.pack(e + "IIII", *s)
        ext += payload

    if order_flag is None:
        order_flag = 2 if byte_order == "little" else 3
    hdr = NEW_MAGIC + struct.pack(e + "II", n, len(table))
    hdr += bytes([order_flag, 0, 0, 0]) + struct.pack(e + "I", ext_off) + b"\0" * 12
    assert len(hdr) == 48
    body = bytearray()
    for r in recs:
        body += struct.pack(
            e + "iIIIQ", _s32(r.flags), new_size + offs[r.soname], new_size + offs[r.path], r.osversion, r.hwcap
        )
    return prefix + hdr + bytes(body) + bytes(table) + ext


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _libcmp_key(name: str) -> tuple:
    """glibc's _dl_cache_libcmp order: runs of digits compare as numbers, the rest bytewise."""
    out: list[tuple[int, int | str]] = []
    i = 0
    while i < len(name):
        j = i
        if name[i].isdigit():
            while j < len(name) and name[j].isdigit():
                j += 1
            out.append((1, int(name[i:j])))
        else:
            while j < len(name) and not name[j].isdigit():
                j += 1
            out.append((0, name[i:j]))
        i = j
    return tuple(out)


def ldconfig_order(recs: list[Rec] | tuple[Rec, ...]) -> list[Rec]:
    """``recs`` in the order ldconfig writes them: sonames in descending library order, higher
    flag words first; entries that tie keep their order (ldconfig's directory order), so the first
    of them is the one the loader picks."""
    by_flags = sorted(recs, key=lambda r: -r.flags)
    return sorted(by_flags, key=lambda r: _libcmp_key(r.soname), reverse=True)
