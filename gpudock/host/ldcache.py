"""Our own reader of the binary ``/etc/ld.so.cache`` (what ``ldconfig -p`` prints, without ldconfig).

This module owns the file format and nothing NVIDIA-specific (that is ``gpudock.host.driverlibs``).
It reads all three layouts glibc's ldconfig writes:

* ``old``    -- ``ld.so-1.7.0`` header, 12-byte entries, strings relative to the end of the entries;
* ``new``    -- ``glibc-ld.so.cache1.1`` header (48 bytes), 24-byte entries, strings relative to the
  header, optional extension directory (glibc 2.33+: generator string, glibc-hwcaps names);
* ``compat`` -- an old table whose string area hides a complete new cache; like glibc, the loader and
  NVIDIA's tools, we then use only the new part.

Design, and why:

* A damaged cache must never crash a probe, hang, or allocate more than the file: every count and
  offset is checked against the data length before use, and every problem is an
  :class:`LdCacheError` that says what is wrong and at which byte offset.
* :func:`parse` validates the whole file up front (header, counts, each string offset, string
  termination) using C-speed operations on integer columns; Python objects for the entries are
  built only when first asked for. After a successful :func:`parse` nothing can fail any more.
  :meth:`LdCache.lookup` finds a soname by scanning the string table, decoding nothing else.
  That keeps the common probe ("which file does libnvidia-ml.so.1 resolve to?") 10-30 times
  cheaper than running ``ldconfig -p`` (bench/bench_ldcache.py).
* Entries keep file order, which is the loader's order: for a soname and an architecture the
  loader takes the *first* acceptable entry (:meth:`LdCache.lookup`).

No Textual import here, ever.
"""

from __future__ import annotations

import platform
import struct
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from itertools import compress, repeat
from typing import TYPE_CHECKING, Literal, NamedTuple

if TYPE_CHECKING:
    from gpudock.host.root import HostRoot

__all__ = [
    "LdCache",
    "LdCacheEntry",
    "LdCacheError",
    "parse",
    "read",
    "flag_text",
    "arch_flag",
    "native_arch",
    "DEFAULT_PATH",
]

DEFAULT_PATH = "/etc/ld.so.cache"

OLD_MAGIC = b"ld.so-1.7.0"
NEW_MAGIC = b"glibc-ld.so.cache"
NEW_VERSION = b"1.1"
EXTENSION_MAGIC = 0xEAA42174  # (uint32_t) -358342284, glibc dl-cache.h cache_extension_magic

OLD_HEADER_SIZE = 16  # magic[11], pad to 4, uint32 nlibs
OLD_ENTRY_SIZE = 12  # int32 flags, uint32 key, uint32 value
NEW_HEADER_SIZE = 48
NEW_ENTRY_SIZE = 24  # int32 flags, uint32 key, value, osversion, uint64 hwcap

# Largest cache we agree to read. Real ones are tens of KiB; this only bounds a hostile file.
MAX_CACHE_SIZE = 64 << 20
# What decoding every entry's soname and path may cost, in bytes of text, for a file of n bytes:
# ldconfig shares suffixes (a soname is the tail of its path), which stays far below this; a file
# whose offsets point again and again into one long string (quadratic) is refused.
_STRING_BUDGET_FACTOR = 8
_STRING_BUDGET_BASE = 1 << 20
# glibc's ldconfig writes two extension sections (generator, glibc-hwcaps); each tag is read once
# and at most this many sections are looked at, so a directory of 32,768 file-sized sections
# costs nothing.
MAX_EXTENSION_SECTIONS = 16
# A glibc-hwcaps name is a subdirectory name (NAME_MAX), the generator a one-line string.
MAX_HWCAP_NAME = 255
MAX_GENERATOR = 4096

# -- flags (glibc elf/ldconfig.h / dl-cache.h) ---------------------------------------------------

FLAG_TYPE_MASK = 0x00FF
FLAG_LIBC4 = 0x0000
FLAG_ELF = 0x0001
FLAG_ELF_LIBC5 = 0x0002
FLAG_ELF_LIBC6 = 0x0003
FLAG_REQUIRED_MASK = 0xFF00

ARCH_NONE = 0x0000  # i386, 32-bit ARM/MIPS/s390/ppc: "no arch flag"
ARCH_SPARC_LIB64 = 0x0100
ARCH_IA64_LIB64 = 0x0200
ARCH_X8664_LIB64 = 0x0300
ARCH_S390_LIB64 = 0x0400
ARCH_POWERPC_LIB64 = 0x0500
ARCH_MIPS64_LIBN32 = 0x0600
ARCH_MIPS64_LIBN64 = 0x0700
ARCH_X8664_LIBX32 = 0x0800
ARCH_ARM_LIBHF = 0x0900
ARCH_AARCH64_LIB64 = 0x0A00
ARCH_ARM_LIBSF = 0x0B00
ARCH_MIPS_LIB32_NAN2008 = 0x0C00
ARCH_MIPS64_LIBN32_NAN2008 = 0x0D00
ARCH_MIPS64_LIBN64_NAN2008 = 0x0E00
ARCH_RISCV_FLOAT_ABI_SOFT = 0x0F00
ARCH_RISCV_FLOAT_ABI_DOUBLE = 0x1000
ARCH_LARCH_FLOAT_ABI_SOFT = 0x1100
ARCH_LARCH_FLOAT_ABI_DOUBLE = 0x1200

# The words glibc's print_cache/print_entry use, so that flag_text() == what `ldconfig -p` prints
# between the parentheses (checked against the real ldconfig in tests/unit/test_ldcache.py).
_TYPE_TEXT = {FLAG_LIBC4: "libc4", FLAG_ELF: "ELF", FLAG_ELF_LIBC5: "libc5", FLAG_ELF_LIBC6: "libc6"}
_ARCH_TEXT = {
    ARCH_NONE: "",
    ARCH_SPARC_LIB64: ",64bit",
    ARCH_IA64_LIB64: ",IA-64",
    ARCH_X8664_LIB64: ",x86-64",
    ARCH_S390_LIB64: ",64bit",
    ARCH_POWERPC_LIB64: ",64bit",
    ARCH_MIPS64_LIBN32: ",N32",
    ARCH_MIPS64_LIBN64: ",64bit",
    ARCH_X8664_LIBX32: ",x32",
    ARCH_ARM_LIBHF: ",hard-float",
    ARCH_AARCH64_LIB64: ",AArch64",
    ARCH_ARM_LIBSF: ",soft-float",
    ARCH_MIPS_LIB32_NAN2008: ",nan2008",
    ARCH_MIPS64_LIBN32_NAN2008: ",N32,nan2008",
    ARCH_MIPS64_LIBN64_NAN2008: ",64bit,nan2008",
    ARCH_RISCV_FLOAT_ABI_SOFT: ",soft-float",
    ARCH_RISCV_FLOAT_ABI_DOUBLE: ",double-float",
    ARCH_LARCH_FLOAT_ABI_SOFT: ",soft-float",
    ARCH_LARCH_FLOAT_ABI_DOUBLE: ",double-float",
}

# Names a caller may pass as ``arch=``; several spellings each because uname, Debian multiarch and
# NVIDIA's tools all differ.
ARCH_BY_NAME: dict[str, int] = {
    "none": ARCH_NONE,
    "i386": ARCH_NONE,
    "i686": ARCH_NONE,
    "x86": ARCH_NONE,
    "32": ARCH_NONE,
    "sparc64": ARCH_SPARC_LIB64,
    "ia64": ARCH_IA64_LIB64,
    "x86-64": ARCH_X8664_LIB64,
    "x86_64": ARCH_X8664_LIB64,
    "amd64": ARCH_X8664_LIB64,
    "64": ARCH_X8664_LIB64,
    "s390x": ARCH_S390_LIB64,
    "ppc64": ARCH_POWERPC_LIB64,
    "ppc64le": ARCH_POWERPC_LIB64,
    "mips64-n32": ARCH_MIPS64_LIBN32,
    "mips64": ARCH_MIPS64_LIBN64,
    "x32": ARCH_X8664_LIBX32,
    "armhf": ARCH_ARM_LIBHF,
    "aarch64": ARCH_AARCH64_LIB64,
    "arm64": ARCH_AARCH64_LIB64,
    "armel": ARCH_ARM_LIBSF,
    "mips-nan2008": ARCH_MIPS_LIB32_NAN2008,
    "mips64-n32-nan2008": ARCH_MIPS64_LIBN32_NAN2008,
    "mips64-nan2008": ARCH_MIPS64_LIBN64_NAN2008,
    "riscv-soft-float": ARCH_RISCV_FLOAT_ABI_SOFT,
    "riscv64": ARCH_RISCV_FLOAT_ABI_DOUBLE,
    "riscv-double-float": ARCH_RISCV_FLOAT_ABI_DOUBLE,
    "loongarch-soft-float": ARCH_LARCH_FLOAT_ABI_SOFT,
    "loongarch64": ARCH_LARCH_FLOAT_ABI_DOUBLE,
    "loongarch-double-float": ARCH_LARCH_FLOAT_ABI_DOUBLE,
}

# hwcap (new format only). glibc 2.33+: bit 62 marks an entry from a glibc-hwcaps/<name>/ subdir;
# the low 32 bits index the extension's name array, bits 32..41 hold an ISA level.
HWCAP_EXTENSION = 1 << 62
_HWCAP_ISA_LEVEL_MASK = (1 << 10) - 1

EXT_TAG_GENERATOR = 0
EXT_TAG_GLIBC_HWCAPS = 1

_NATIVE_ORDER = sys.byteorder


class LdCacheError(Exception):
    """The cache cannot be read: says what is wrong and, where it applies, the byte ``offset``.

    ``reason`` is the bare description, ``offset`` the byte offset (or None), ``path`` the file
    when known; ``str()`` combines them.
    """

    def __init__(self, reason: str, offset: int | None = None, path: str | None = None) -> None:
        self.reason = reason
        self.offset = offset
        self.path = path
        msg = reason if offset is None else f"{reason} (at byte offset {offset})"
        super().__init__(f"{path}: {msg}" if path else msg)


def flag_text(flags: int) -> str:
    """``flags`` in the words ``ldconfig -p`` prints: ``libc6,x86-64``, ``libc6``, ``ELF``,
    ``libc6,x32``, ``libc6,AArch64`` ... (type, then the arch suffix; unknown arch bits as
    ``,<decimal>``, an unknown type as ``unknown``, exactly as glibc's print_entry does)."""
    t = _TYPE_TEXT.get(flags & FLAG_TYPE_MASK, "unknown")
    a = _ARCH_TEXT.get(flags & FLAG_REQUIRED_MASK)
    if a is None:
        a = f",{flags & FLAG_REQUIRED_MASK}"
    return t + a


def arch_flag(arch: int | str) -> int:
    """The arch bits (``flags & 0xff00``) for ``arch``: an int, or a name from :data:`ARCH_BY_NAME`
    (``"x86-64"``, ``"i386"``, ``"x32"``, ``"aarch64"`` ...)."""
    if isinstance(arch, int):
        if arch & ~FLAG_REQUIRED_MASK:
            raise ValueError(f"arch flag {arch:#x} has bits outside {FLAG_REQUIRED_MASK:#x}")
        return arch
    try:
        return ARCH_BY_NAME[arch.lower()]
    except KeyError:
        raise ValueError(f"unknown arch {arch!r}; known: {', '.join(sorted(ARCH_BY_NAME))}") from None


def native_arch() -> int:
    """The arch bits of this machine's own libraries (what its loader accepts)."""
    m = platform.machine().lower()
    return ARCH_BY_NAME.get(m, ARCH_X8664_LIB64 if m.startswith("x86") else ARCH_NONE)


def _loader_accepts_type(flags: int) -> bool:
    # glibc's _dl_cache_check_flags: 64-bit (and x32) loaders take exactly libc6 of their arch;
    # the generic 32-bit check also takes plain ELF (flags 1), e.g. a library not linked to libc.
    t = flags & FLAG_TYPE_MASK
    return t == FLAG_ELF_LIBC6 or (t == FLAG_ELF and not flags & FLAG_REQUIRED_MASK)


class LdCacheEntry(NamedTuple):
    """One entry, immutable. A NamedTuple rather than a dataclass because a cache holds thousands
    of them and tuples are built at C speed; treat it like a frozen dataclass."""

    soname: str
    path: str
    flags: int
    flag_text: str  # "libc6,x86-64", as ldconfig -p prints it
    hwcap: int = 0  # raw 64-bit value; 0 for a plain entry (and always in the old format)
    osversion: int = 0
    hwcap_name: str | None = None  # the glibc-hwcaps subdir ("x86-64-v3") for extension entries

    @property
    def type(self) -> int:
        return self.flags & FLAG_TYPE_MASK

    @property
    def arch(self) -> int:
        return self.flags & FLAG_REQUIRED_MASK

    @property
    def is_elf(self) -> bool:
        return bool(self.flags & FLAG_ELF)

    @property
    def hwcap_extension(self) -> bool:
        """True for an entry from a glibc-hwcaps/<name>/ subdirectory (glibc 2.33+)."""
        return ((self.hwcap >> 32) & ~_HWCAP_ISA_LEVEL_MASK) == (HWCAP_EXTENSION >> 32)

    @property
    def ldconfig_text(self) -> str:
        """Everything ``ldconfig -p`` prints between the parentheses, hwcap included."""
        if self.hwcap_name is not None:
            return f'{self.flag_text}, hwcap: "{self.hwcap_name}"'
        if self.hwcap:
            return f"{self.flag_text}, hwcap: {self.hwcap:#018x}"
        return self.flag_text

    def to_json(self) -> dict:
        return {
            "soname": self.soname,
            "path": self.path,
            "flags": self.flags,
            "flag_text": self.flag_text,
            "hwcap": self.hwcap,
            "hwcap_name": self.hwcap_name,
            "osversion": self.osversion,
        }


CacheFormat = Literal["old", "new", "compat"]

_U32 = "I" if array("I").itemsize == 4 else "L"  # the 4-byte unsigned typecode on this build


def _u32_words(data: bytes, start: int, nbytes: int, swap: bool) -> array:
    """The entry table as one array of uint32 in this machine's order.

    array() copies the bytes once (so alignment does not matter); a column is then ``a[k::stride]``,
    a C loop, so no Python-level loop over the entries is needed to validate them.
    """
    a = array(_U32, data[start : start + nbytes])
    if swap:
        a.byteswap()
    return a


class LdCache:
    """A parsed, fully validated ld.so.cache. Entries are in file order (the loader's order).

    Holds the raw entry words; :class:`LdCacheEntry` objects are built on demand (one at a time
    for :meth:`lookup` / ``cache[i]``, all at once for :attr:`entries`) and kept.
    """

    __slots__ = (
        "format",
        "byte_order",
        "size",
        "generator",
        "warnings",
        "_data",
        "_base",
        "_words",
        "_stride",
        "_lo_first",
        "_keys",
        "_values",
        "_str_lo",
        "_str_hi",
        "_hwcap_names",
        "_strings",
        "_entries",
        "_some",
        "_index",
        "_text_by_flags",
        "_dedupe",
    )

    def __init__(self) -> None:  # built by parse(); not a public constructor
        self._entries: tuple[LdCacheEntry, ...] | None = None
        self._some: dict[int, LdCacheEntry] = {}  # entries built one at a time, before .entries
        self._index: dict[str, tuple[int, ...]] | None = None
        self._strings: dict[int, str] = {}
        self._text_by_flags: dict[int, str] = {}
        self._dedupe = False  # decode each offset once (set when offsets repeat into long strings)

    # -- whole-cache views ----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"<LdCache format={self.format} entries={len(self)} size={self.size}>"

    def __iter__(self) -> Iterator[LdCacheEntry]:
        return iter(self.entries)

    def __getitem__(self, i: int) -> LdCacheEntry:
        if self._entries is not None:
            return self._entries[i]
        n = len(self._keys)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("ld.so.cache entry index out of range")
        e = self._some.get(i)
        if e is None:
            e = self._some[i] = self._entry(i)
        return e

    @property
    def entries(self) -> tuple[LdCacheEntry, ...]:
        """Every entry, in file order (built on first use, then kept)."""
        if self._entries is None:
            self._entries = self._build_all()
        return self._entries

    # -- lookups --------------------------------------------------------------------------------

    def all(self, soname: str) -> tuple[LdCacheEntry, ...]:
        """Every entry for ``soname`` (any arch, any hwcap), in file order."""
        return tuple(map(self.__getitem__, self._indices(soname)))

    def lookup(self, soname: str, arch: int | str | None = None, *, hwcaps: Iterable[str] = ()) -> LdCacheEntry | None:
        """The entry the dynamic loader would use for ``soname``, or None.

        Like glibc's loader: the *first* entry in file order whose flags the loader accepts for
        ``arch`` (default: this machine's; ``"i386"`` for the 32-bit loader) and whose hwcap it
        accepts. Plain entries (hwcap 0) always qualify; a glibc-hwcaps entry only when its
        subdirectory name is in ``hwcaps`` (which depends on the CPU, so the caller decides; by
        default none, which is also what NVIDIA's tools see). Legacy hwcap entries (``tls/``,
        ``haswell/`` ...) are skipped: glibc 2.37 stopped loading them.
        """
        want = native_arch() if arch is None else arch_flag(arch)
        accepted = frozenset(hwcaps)
        for i in self._indices(soname):
            e = self[i]
            if e.arch != want or not _loader_accepts_type(e.flags):
                continue
            if e.hwcap == 0 or (e.hwcap_name is not None and e.hwcap_name in accepted):
                return e
        return None

    def _indices(self, soname: str) -> tuple[int, ...]:
        if self._index is None:
            return self._scan(soname)  # a few lookups are cheaper than decoding every soname
        return self._index.get(soname, ())

    def _build_index(self) -> dict[str, tuple[int, ...]]:
        if self._index is None:
            index: dict[str, list[int]] = {}
            names = self._decode_all(self._keys) if self._entries is None else [e.soname for e in self._entries]
            for i, k in enumerate(names):
                got = index.get(k)
                if got is None:
                    index[k] = [i]
                else:
                    got.append(i)
            self._index = {k: tuple(v) for k, v in index.items()}
        return self._index

    def _scan(self, soname: str) -> tuple[int, ...]:
        """Indices of entries whose soname is ``soname``, without decoding any string: the key at
        offset k equals it iff ``soname + NUL`` occurs at file offset base + k, so find every
        occurrence in the string table (C), then keep the entries whose key is one of them (C)."""
        try:
            needle = soname.encode("utf-8", "surrogateescape") + b"\0"
        except UnicodeEncodeError:
            return ()
        if b"\0" in needle[:-1]:
            return ()
        find, base = self._data.find, self._base
        hits: set[int] = set()
        pos = find(needle, self._str_lo, self._str_hi)
        while pos >= 0:
            hits.add(pos - base)
            pos = find(needle, pos + 1, self._str_hi)
        if not hits:
            return ()
        return tuple(compress(range(len(self._keys)), map(hits.__contains__, self._keys)))

    def select(self, want: Callable[[str], bool]) -> tuple[LdCacheEntry, ...]:
        """The entries whose soname satisfies ``want``, in file order. Decodes the sonames once
        and builds entry objects only for the matches (cheaper than filtering :attr:`entries`)."""
        hits = sorted(i for name, idx in self._build_index().items() if want(name) for i in idx)
        return tuple(map(self.__getitem__, hits))

    def sonames(self) -> list[str]:
        """Distinct sonames, in first-seen file order."""
        return list(self._build_index())

    # -- materialisation ------------------------------------------------------------------------

    def _str(self, off: int) -> str:
        s = self._strings.get(off)
        if s is None:
            start = self._base + off
            # parse() proved a NUL follows every offset it accepted, inside the string table.
            end = self._data.find(b"\0", start)
            s = self._strings[off] = self._data[start:end].decode("utf-8", "surrogateescape")
        return s

    def _raw(self, i: int) -> tuple[int, int, int]:
        """(flags, hwcap, osversion) of entry ``i``."""
        w = self._words
        st = self._stride
        j = i * st
        flags = w[j]
        if flags & 0x80000000:  # glibc declares it int32
            flags -= 1 << 32
        if st == 3:
            return flags, 0, 0
        a, b = w[j + 4], w[j + 5]
        return flags, (a | (b << 32)) if self._lo_first else ((a << 32) | b), w[j + 3]

    def _hwcap_name(self, hwcap: int) -> str | None:
        if ((hwcap >> 32) & ~_HWCAP_ISA_LEVEL_MASK) == (HWCAP_EXTENSION >> 32):
            idx = hwcap & 0xFFFFFFFF
            if idx < len(self._hwcap_names):
                return self._hwcap_names[idx]
        return None

    def _flag_text(self, flags: int) -> str:
        text = self._text_by_flags.get(flags)
        if text is None:
            text = self._text_by_flags[flags] = flag_text(flags)
        return text

    def _entry(self, i: int) -> LdCacheEntry:
        flags, hwcap, osversion = self._raw(i)
        return LdCacheEntry(
            self._str(self._keys[i]),
            self._str(self._values[i]),
            flags,
            self._flag_text(flags),
            hwcap,
            osversion,
            self._hwcap_name(hwcap) if hwcap else None,
        )

    def _decode_all(self, offsets: array) -> list[str]:
        """The strings at ``offsets``, in order, without per-string method calls where possible."""
        if self._dedupe:
            # parse() found offsets that repeat into long strings: one str per distinct offset,
            # shared, so the text decoded stays within the budget parse() checked
            return list(map(self._str, offsets))
        base, lo = self._base, self._str_lo
        table = self._data[lo : self._str_hi]
        if table.isascii():
            # The usual case: one decode for the whole table, then str slices.
            text = table.decode("ascii")
            find = text.find
            return [text[p : find("\0", p)] for p in map((base - lo).__add__, offsets)]
        data = self._data
        findb = data.find
        return [data[p : findb(b"\0", p)].decode("utf-8", "surrogateescape") for p in map(base.__add__, offsets)]

    def _build_all(self) -> tuple[LdCacheEntry, ...]:
        # Column by column with C-level map/zip: this is what `gpudock libs --all` and the
        # benchmark pay for, and per-entry Python calls are what cost in CPython.
        n = len(self._keys)
        sonames = self._decode_all(self._keys)
        paths = self._decode_all(self._values)
        words, st = self._words, self._stride
        flags: Iterable[int] = words[0::st]
        if not _all_within(flags, 0, 0x7FFFFFFF):  # int32 in glibc; only a damaged file goes negative
            flags = [f - (1 << 32) if f & 0x80000000 else f for f in flags]
        text_of = {f: self._flag_text(f) for f in set(flags)}
        texts = map(text_of.__getitem__, flags)
        hwcaps: Iterable[int] = repeat(0, n)
        names: Iterable[str | None] = repeat(None, n)
        osv: Iterable[int] = repeat(0, n)
        if st == 6:
            osv_col = words[3::6]
            if osv_col.tobytes().strip(b"\0"):
                osv = osv_col
            a_col, b_col = words[4::6], words[5::6]
            if a_col.tobytes().strip(b"\0") or b_col.tobytes().strip(b"\0"):
                lo_col, hi_col = (a_col, b_col) if self._lo_first else (b_col, a_col)
                hw = [lo | (hi << 32) for lo, hi in zip(lo_col, hi_col)]
                hwcaps = hw
                names = [self._hwcap_name(h) if h else None for h in hw]
        out = list(map(_new_entry, zip(sonames, paths, flags, texts, hwcaps, osv, names)))
        for i, e in self._some.items():  # keep handing out the same objects
            out[i] = e
        self._some = {}
        return tuple(out)


# Builds an LdCacheEntry from a 7-tuple at C speed (LdCacheEntry(*t) would run Python code).
_new_entry = partial(tuple.__new__, LdCacheEntry)


# -- parsing ------------------------------------------------------------------------------------


def parse(data: bytes | bytearray | memoryview) -> LdCache:
    """Parse and validate a whole ld.so.cache image. Raises :class:`LdCacheError`, nothing else."""
    if not isinstance(data, bytes):
        data = bytes(data)
    n = len(data)
    if n > MAX_CACHE_SIZE:
        raise LdCacheError(f"file is {n} bytes, more than the {MAX_CACHE_SIZE} an ld.so.cache can sensibly be")
    if data.startswith(OLD_MAGIC):
        if n < OLD_HEADER_SIZE:
            raise LdCacheError(f"truncated old-format header: {n} bytes, need {OLD_HEADER_SIZE}", n)
        (nlibs_old,) = struct.unpack_from("=I", data, 12)
        room = (n - OLD_HEADER_SIZE) // OLD_ENTRY_SIZE
        if nlibs_old > room:
            raise LdCacheError(
                f"old-format header claims {nlibs_old} entries ({nlibs_old * OLD_ENTRY_SIZE} bytes) but only "
                f"{n - OLD_HEADER_SIZE} bytes follow the header",
                12,
            )
        old_end = OLD_HEADER_SIZE + OLD_ENTRY_SIZE * nlibs_old
        new_at = (old_end + 7) & ~7  # glibc ALIGN_CACHE: the new header is 8-byte aligned
        if n >= new_at + NEW_HEADER_SIZE and data.startswith(NEW_MAGIC + NEW_VERSION, new_at):
            return _parse_new(data, new_at, "compat")
        return _parse_old(data, nlibs_old, old_end)
    if data.startswith(NEW_MAGIC):
        if not data.startswith(NEW_VERSION, len(NEW_MAGIC)):
            raise LdCacheError(
                f"unsupported new-format version {data[len(NEW_MAGIC) : len(NEW_MAGIC) + 3]!r} (expected b'1.1')",
                len(NEW_MAGIC),
            )
        return _parse_new(data, 0, "new")
    if n == 0:
        raise LdCacheError("empty file, not an ld.so.cache", 0)
    raise LdCacheError(
        f"bad magic {data[:20]!r}: neither {OLD_MAGIC.decode()!r} nor {(NEW_MAGIC + NEW_VERSION).decode()!r}", 0
    )


# -- range check without a Python loop -----------------------------------------------------------
#
# min()/max() over an array box every element into an int: for a 2000-entry cache that alone costs
# more than the rest of parse(). Instead each uint32 is compared with a bound byte by byte, most
# significant first, like long comparison on paper: per byte lane, bytes.translate turns the lane
# into 0/1 masks ("greater than the bound's byte", "equal"), the masks become big ints, and
# bitwise & and | combine the lanes for all words at once. All of it runs in C.


def _masks(b: int, last: bool, upper: bool) -> tuple[bytes, bytes]:
    """(decides-outside, ties) translate tables for one lane of bound byte ``b``."""
    if upper:  # outside when greater
        out = b"\x00" * (b + 1) + b"\x01" * (255 - b)
    else:  # outside when smaller
        out = b"\x01" * b + b"\x00" * (256 - b)
    # The bounds are inclusive, so a tie in the last lane is inside; earlier ties defer.
    tie = b"\x00" * 256 if last else b"\x00" * b + b"\x01" + b"\x00" * (255 - b)
    return out, tie


def _any_outside(lanes: list[bytes], bound: int, upper: bool) -> bool:
    outside = 0
    undecided = -1  # all ones: every word still tied with the bound
    frm = int.from_bytes
    for k, b in enumerate(bound.to_bytes(4, "big")):
        lane = lanes[k]
        last = k == 3
        if b == 0 and not lane.strip(b"\0"):
            continue  # an all-zero lane ties with 0 everywhere (the high lanes, usually)
        out_t, tie_t = _masks(b, last, upper)
        if b or upper:  # (nothing is below 0)
            outside |= undecided & frm(lane.translate(out_t), "little")
        if not last:
            undecided &= frm(lane.translate(tie_t), "little")
            if not undecided:
                break
    return outside != 0


def _all_within(values: array, lo: int, hi: int) -> bool:
    """True when every uint32 in ``values`` is in [lo, hi] (0 <= lo <= hi < 2**32)."""
    raw = values.tobytes()
    if _NATIVE_ORDER == "little":
        lanes = [raw[3::4], raw[2::4], raw[1::4], raw[0::4]]  # most significant first
    else:
        lanes = [raw[0::4], raw[1::4], raw[2::4], raw[3::4]]
    if lo and _any_outside(lanes, lo, upper=False):
        return False
    return not _any_outside(lanes, hi, upper=True)


def _check_strings(
    data: bytes,
    what: str,
    base: int,
    lo: int,
    hi: int,
    keys: array,
    values: array,
    entries_at: int,
    entry_size: int,
) -> None:
    """Every key/value offset (relative to ``base``) must start inside [lo, hi) and be NUL-terminated
    before ``hi``: one rfind plus a range check over all offsets at C speed (:func:`_all_within`)."""
    if not len(keys):
        return
    last_nul = data.rfind(b"\0", lo, hi)  # a string starting after this has no terminator
    bad_lo = lo - base
    bad_hi = last_nul - base  # inclusive upper bound for a valid start
    if bad_hi >= bad_lo and _all_within(keys + values, bad_lo, bad_hi):
        return
    # Slow path, errors only: name the first offending entry.
    for i, (k, v) in enumerate(zip(keys, values)):
        for field, off, rel in (("soname", k, 4), ("path", v, 8)):
            if bad_lo <= off <= bad_hi:
                continue
            at = entries_at + i * entry_size + rel
            pos = base + off
            if lo <= pos < hi:
                raise LdCacheError(
                    f"{what} entry {i}: {field} string at file offset {pos} is not NUL-terminated before the "
                    f"end of the string table ({hi})",
                    at,
                )
            raise LdCacheError(
                f"{what} entry {i}: {field} offset {off} points at file offset {pos}, outside the string table "
                f"[{lo}, {hi})",
                at,
            )
    raise AssertionError("unreachable")  # pragma: no cover


def _short_strings(data: bytes, lo: int, last_nul: int, count: int, budget: int) -> bool:
    """Cheap sufficient test that ``count`` strings starting in [lo, last_nul] decode to at most
    ``budget`` bytes: every aligned block of ``b`` bytes holds a NUL, so no string is longer than
    ``2b <= budget / count``. A few memchr calls per KiB; real caches pass it."""
    if count == 0 or last_nul < lo:
        return True
    per = budget // count
    if per >= last_nul - lo + 1:
        return True
    b = per // 2
    if b < 1:
        return False
    find = data.find
    return all(find(b"\0", i, i + b) >= 0 for i in range(lo, last_nul + 1 - b, b))


def _decoded_size(data: bytes, base: int, lo: int, hi: int, offsets: Iterable[int], budget: int) -> int:
    """The exact text that decoding each distinct offset once gives (stops counting past
    ``budget``): the NUL positions once (one split), then one bisect per distinct offset."""
    from bisect import bisect_left
    from itertools import accumulate
    from operator import add

    # piece i of the split ends at a NUL; all at C speed, however many pieces there are
    ends = accumulate(map(add, map(len, data[lo:hi].split(b"\0")), repeat(1)))
    nuls = list(map(add, ends, repeat(lo - 1)))
    total = 0
    for off in set(offsets):
        pos = base + off
        total += nuls[bisect_left(nuls, pos)] - pos
        if total > budget:
            break
    return total


def _check_string_budget(c: LdCache, data: bytes, what: str) -> None:
    n = len(data)
    budget = _STRING_BUDGET_FACTOR * n + _STRING_BUDGET_BASE
    lo, hi = c._str_lo, c._str_hi
    last_nul = data.rfind(b"\0", lo, hi)
    count = 2 * len(c._keys)
    if _short_strings(data, lo, last_nul, count, budget):
        return
    size = _decoded_size(data, c._base, lo, hi, c._keys + c._values, budget)
    if size > budget:
        raise LdCacheError(
            f"{what} entries point again and again into long strings: decoding them would take more than "
            f"{budget} bytes for a {n}-byte file; the cache is damaged (ldconfig writes each string once)",
            lo,
        )
    c._dedupe = True


def _parse_old(data: bytes, nlibs: int, old_end: int) -> LdCache:
    # Old-only layout: strings start right after the entries and run to the end of the file.
    n = len(data)
    words = _u32_words(data, OLD_HEADER_SIZE, OLD_ENTRY_SIZE * nlibs, swap=False)
    keys, values = words[1::3], words[2::3]
    _check_strings(data, "old-format", old_end, old_end, n, keys, values, OLD_HEADER_SIZE, OLD_ENTRY_SIZE)
    c = LdCache()
    c.format = "old"
    c.byte_order = _NATIVE_ORDER
    c.size = n
    c.generator = None
    c.warnings = ()
    c._data = data
    c._base = old_end
    c._words = words
    c._stride = 3
    c._lo_first = True
    c._keys = keys
    c._values = values
    c._str_lo, c._str_hi = old_end, n
    c._hwcap_names = ()
    _check_string_budget(c, data, "old-format")
    return c


def _parse_new(data: bytes, base: int, fmt: CacheFormat) -> LdCache:
    n = len(data)
    if n < base + NEW_HEADER_SIZE:
        raise LdCacheError(f"truncated new-format header: {n - base} bytes, need {NEW_HEADER_SIZE}", n)
    # Byte order: newer ldconfig records it in the header flags (2 little, 3 big); 0 means an
    # older one that did not say, i.e. this machine's order (glibc's loader reads it the same way).
    order_flag = data[base + 28] & 3
    if order_flag == 1:
        raise LdCacheError("header flags mark the cache as written with an invalid byte order", base + 28)
    order = {0: _NATIVE_ORDER, 2: "little", 3: "big"}[order_flag]
    e = "<" if order == "little" else ">"
    nlibs, len_strings = struct.unpack_from(e + "II", data, base + 20)
    (extension_offset,) = struct.unpack_from(e + "I", data, base + 32)
    entries_at = base + NEW_HEADER_SIZE
    room = (n - entries_at) // NEW_ENTRY_SIZE
    if nlibs > room:
        raise LdCacheError(
            f"header claims {nlibs} entries ({nlibs * NEW_ENTRY_SIZE} bytes) but only {n - entries_at} bytes "
            "follow the header",
            base + 20,
        )
    entries_end = entries_at + NEW_ENTRY_SIZE * nlibs
    strings_end = entries_end + len_strings
    if strings_end > n:
        raise LdCacheError(
            f"string table of {len_strings} bytes at offset {entries_end} runs past the end of the file ({n} bytes)",
            base + 24,
        )
    words = _u32_words(data, entries_at, NEW_ENTRY_SIZE * nlibs, swap=order != _NATIVE_ORDER)
    keys, values = words[1::6], words[2::6]
    _check_strings(data, "new-format", base, entries_end, strings_end, keys, values, entries_at, NEW_ENTRY_SIZE)

    c = LdCache()
    c.format = fmt
    c.byte_order = order
    c.size = n
    c._data = data
    c._base = base
    c._words = words
    c._stride = 6
    # hwcap is one uint64: after the per-word swap its low half is the first word only when the
    # file is little-endian.
    c._lo_first = order == "little"
    c._keys = keys
    c._values = values
    c._str_lo, c._str_hi = entries_end, strings_end
    _check_string_budget(c, data, "new-format")
    c.generator, c._hwcap_names, c.warnings = _parse_extension(
        data, e, base, entries_end, strings_end, extension_offset
    )
    return c


def _parse_extension(
    data: bytes, e: str, base: int, lo: int, hi: int, ext_off: int
) -> tuple[str | None, tuple[str | None, ...], tuple[str, ...]]:
    """The glibc 2.33+ extension directory: generator string and glibc-hwcaps names.

    Lenient on purpose: the entries are valid without it (older loaders and NVIDIA's tools never
    read it), so a damaged extension becomes a warning and hwcap names stay unknown. Bounded on
    purpose: at most MAX_EXTENSION_SECTIONS sections are looked at, each tag only the first time,
    each name offset decoded once and only up to MAX_HWCAP_NAME bytes, so the cost is linear in
    the file whatever its directory says.
    """
    if ext_off == 0:
        return None, (), ()
    n = len(data)
    if ext_off % 4 or ext_off + 8 > n:
        return None, (), (f"extension directory offset {ext_off} is misaligned or past the end ({n} bytes)",)
    magic, count = struct.unpack_from(e + "II", data, ext_off)
    if magic != EXTENSION_MAGIC:
        return None, (), (f"extension directory at offset {ext_off} has bad magic {magic:#010x}",)
    if count > (n - ext_off - 8) // 16:
        return None, (), (f"extension directory at offset {ext_off} claims {count} sections, past the end",)
    generator: str | None = None
    names: tuple[str | None, ...] = ()
    warnings: list[str] = []
    if count > MAX_EXTENSION_SECTIONS:
        warnings.append(
            f"extension directory at offset {ext_off} lists {count} sections; only the first "
            f"{MAX_EXTENSION_SECTIONS} were read (ldconfig writes 2)"
        )
        count = MAX_EXTENSION_SECTIONS
    seen: set[int] = set()
    for tag, _flags, off, size in struct.iter_unpack(e + "IIII", data[ext_off + 8 : ext_off + 8 + 16 * count]):
        if tag in seen and tag in (EXT_TAG_GENERATOR, EXT_TAG_GLIBC_HWCAPS):
            warnings.append(f"extension section tag {tag} at offset {off} repeats an earlier one; ignored")
            continue
        seen.add(tag)
        if off + size > n:
            warnings.append(f"extension section tag {tag} at offset {off} (+{size}) runs past the end ({n} bytes)")
            continue
        if tag == EXT_TAG_GENERATOR:
            if size > MAX_GENERATOR:
                warnings.append(f"generator string at offset {off} is {size} bytes long; only {MAX_GENERATOR} read")
            generator = data[off : off + min(size, MAX_GENERATOR)].decode("utf-8", "replace")
        elif tag == EXT_TAG_GLIBC_HWCAPS:
            if size % 4:
                warnings.append(f"glibc-hwcaps section at offset {off} has size {size}, not a multiple of 4")
                continue
            names = _hwcap_names(data, e, base, lo, hi, off, size, warnings)
        # Unknown tags are skipped, as glibc does.
    return generator, names, tuple(warnings)


def _hwcap_names(
    data: bytes, e: str, base: int, lo: int, hi: int, off: int, size: int, warnings: list[str]
) -> tuple[str | None, ...]:
    last_nul = data.rfind(b"\0", lo, hi)
    decoded: dict[int, str | None] = {}
    outside = too_long = 0
    find = data.find
    for (str_off,) in struct.iter_unpack(e + "I", data[off : off + size]):
        if str_off in decoded:
            continue
        pos = base + str_off
        name: str | None = None
        if not lo <= pos <= last_nul:
            outside += 1
        else:
            end = find(b"\0", pos, pos + MAX_HWCAP_NAME + 1)
            if end < 0:
                too_long += 1
            else:
                name = data[pos:end].decode("utf-8", "surrogateescape")
        decoded[str_off] = name
    if outside:
        warnings.append(f"{outside} glibc-hwcaps name offset(s) are outside the string table")
    if too_long:
        warnings.append(f"{too_long} glibc-hwcaps name(s) are longer than {MAX_HWCAP_NAME} bytes; left unnamed")
    get = decoded.__getitem__
    return tuple(get(o) for (o,) in struct.iter_unpack(e + "I", data[off : off + size]))


def read(root: HostRoot | None = None, path: str = DEFAULT_PATH) -> LdCache:
    """Read and parse the cache at host ``path`` under ``root`` (default: this machine).

    A missing or unreadable file is an :class:`LdCacheError` too, so callers handle one exception.
    """
    if root is None:
        from gpudock.host.root import HostRoot

        root = HostRoot("/")
    try:
        data = root.read_bytes(path, limit=MAX_CACHE_SIZE + 1)
    except OSError as e:
        raise LdCacheError(f"cannot read it under {root.root}: {e.strerror or e}", None, path) from e
    if data is None:
        raise LdCacheError(f"does not exist under {root.root}", None, path)
    try:
        return parse(data)
    except LdCacheError as e:
        raise LdCacheError(e.reason, e.offset, path) from None
