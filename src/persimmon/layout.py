"""On-PM layout constants shared by the pool, the undo log and the heap.

Everything the heap stores is addressed by its byte offset in the pool file (a *ref*).
A *slot* is one signed 64-bit word that holds either a ref or an immediate value:

======================  =======================================================
slot value              meaning
======================  =======================================================
0                       empty (no value; never a Python value)
ref (multiple of 32)    offset of an object in the pool
``(i << 3) | 1``        small int ``i`` (|i| < 2**60)
2, 10, 18               None, False, True
26                      deleted dict/set entry (internal)
======================  =======================================================

Every object starts with a 16-byte header:
``[u8 type][u8 size class][u16 flags][u32 refcount][u64 aux]`` where ``aux`` is the length,
count or, for floats, the value itself.  Chunks are 32-byte aligned multiples of 32 bytes,
so a 32-byte undo block never straddles two objects.
"""

from __future__ import annotations

import struct
import sys
from array import array

if sys.byteorder != "little":  # pragma: no cover
    raise ImportError("persimmon pools are little-endian; this machine is big-endian")

LAYOUT_VERSION = 1
MAGIC = b"PERSIMMN"

BLOCK_SHIFT = 5  # undo-log block: 32 bytes
BLOCK = 1 << BLOCK_SHIFT
LINE = 64  # cache line
PAGE = 4096

# Slot encodings
EMPTY = 0
NONE = 2
FALSE = 10
TRUE = 18
DUMMY = 26
SMALL_MIN = -(1 << 60)
SMALL_MAX = (1 << 60) - 1

# Object types (u8 at offset 0 of an object)
T_FREE = 0
T_STR = 1
T_BYTES = 2
T_INT = 3
T_FLOAT = 4
T_TUPLE = 5
T_FROZENSET = 6
T_LIST = 7
T_DICT = 8
T_SET = 9
T_DEQUE = 10
T_OBJECT = 11
T_OPAQUE = 12
T_ARRAY = 13  # slot array backing a list/deque
T_RAW = 14  # raw bytes backing a dict/set (index table or entries)
T_META = 15  # heap metadata block
T_UNDOSEG = 16  # undo-log spill segment
T_COMPLEX = 17

TYPE_NAMES = {
    T_FREE: "free", T_STR: "str", T_BYTES: "bytes", T_INT: "int", T_FLOAT: "float",
    T_TUPLE: "tuple", T_FROZENSET: "frozenset", T_LIST: "list", T_DICT: "dict",
    T_SET: "set", T_DEQUE: "deque", T_OBJECT: "object", T_OPAQUE: "opaque",
    T_ARRAY: "array", T_RAW: "raw", T_META: "meta", T_UNDOSEG: "undo-segment",
    T_COMPLEX: "complex",
}

HDR = 16
AUX = 8  # the header's aux field: a container's length or count, a blob's length
SLOT = 8  # bytes of a slot
ENT_HASH = 0  # a hash-table entry: the key's phash
ENT_KEY = 8  # a hash-table entry: the key slot (DUMMY: deleted)
ENT_VALUE = 16  # a dict entry: the value slot

# Field offsets of the containers (from the object's start; the header is bytes 0..16) and
# the size of each container's own chunk.
LIST_CAP = 16  # list: slot capacity
LIST_ITEMS = 24  # list: ref of the slot array (T_ARRAY)
LIST_SIZE = 32
HT_NENT = 16  # dict/set: entries used (live and deleted) in the entries array
HT_ITAB = 24  # dict/set: ref of the index table (T_RAW, u32 per slot)
HT_ENTS = 32  # dict/set: ref of the entries array (T_RAW)
HT_SIZE = 48
DQ_CAP = 16  # deque: ring capacity
DQ_ITEMS = 24  # deque: ref of the ring (T_ARRAY)
DQ_HEAD = 32  # deque: index of the first item
DQ_MAXLEN = 40  # deque: maxlen, or -1
DQ_SIZE = 48
OBJ_CLASS = 16  # user-class instance: ref of the class name (T_STR)
OBJ_DICT = 24  # user-class instance: ref of its __dict__ (T_DICT)
OBJ_SIZE = 32
OPQ_BLOB = 16  # opaque value: ref of the pickle (T_BYTES)
OPQ_SIZE = 24
HT_ENTRY_DICT = 24  # a dict entry: hash, key slot, value slot
HT_ENTRY_SET = 16  # a set entry: hash, key slot


def entry_size(t: int) -> int:
    """Bytes of an entry of a hash table of type ``t`` (T_DICT or T_SET)."""
    return HT_ENTRY_DICT if t == T_DICT else HT_ENTRY_SET


IX_EMPTY = 0  # an index-table slot: no entry
IX_DUMMY = 0xFFFFFFFF  # an index-table slot: a deleted entry
PERTURB_SHIFT = 5  # of the probe sequence (CPython's dict scheme)

S_HDR = struct.Struct("<BBHIQ")  # type, class, flags, refcount, aux
S_Q = struct.Struct("<Q")
S_q = struct.Struct("<q")
S_I = struct.Struct("<I")
S_d = struct.Struct("<d")
S_QQ = struct.Struct("<QQ")
S_qq = struct.Struct("<qq")
S_Qqq = struct.Struct("<Qqq")
S_Qq = struct.Struct("<Qq")


def struct_pack_q(values: list[int]) -> bytes:
    """Pack signed 64-bit ints (bulk)."""
    return array("q", values).tobytes()


def struct_pack_I(values: list[int]) -> bytes:
    """Pack unsigned 32-bit ints (bulk)."""
    return array("I", values).tobytes()


# Size classes: multiples of 32 up to 512, then four steps per doubling.
def _size_classes() -> list[int]:
    sizes = list(range(32, 513, 32))
    base = 512
    while base < (1 << 44):
        for step in (1, 2, 3, 4):
            s = base + base * step // 4
            sizes.append(s)
        base *= 2
    return sizes


CLASS_SIZES: list[int] = _size_classes()
NCLASSES = len(CLASS_SIZES)
_SMALL_LIMIT = 4096
# index by (size + 31) >> 5 for sizes <= _SMALL_LIMIT
_SMALL_TABLE: list[int] = []
for _n in range(0, _SMALL_LIMIT // 32 + 1):
    _need = _n * 32
    for _i, _s in enumerate(CLASS_SIZES):
        if _s >= _need:
            _SMALL_TABLE.append(_i)
            break


# Leaf types (objects holding no refs) and the types a reachable slot may refer to
LEAVES = frozenset({T_STR, T_BYTES, T_INT, T_FLOAT, T_COMPLEX})
VALUE_TYPES = frozenset(TYPE_NAMES) - {T_FREE, T_META, T_UNDOSEG, T_ARRAY, T_RAW}


def size_class(nbytes: int) -> int:
    """Index of the smallest size class holding ``nbytes``."""
    if nbytes <= _SMALL_LIMIT:
        return _SMALL_TABLE[(nbytes + 31) >> 5]
    lo, hi = 0, NCLASSES - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if CLASS_SIZES[mid] >= nbytes:
            hi = mid
        else:
            lo = mid + 1
    if CLASS_SIZES[lo] < nbytes:
        raise MemoryError(f"object of {nbytes} bytes is larger than the largest size class")
    return lo


# ---------------------------------------------------------------------------
# Pool file header (first page)
#   0  magic[8]
#   8  u32 layout version, u32 flags
#  16  u64 oplog offset, u64 oplog size
#  32  u64 undo offset,  u64 undo size
#  48  u64 arena offset, u64 created (ns since epoch)
#  64  u64 header checksum (xxh3_64 of bytes 0..64)
# 128  commit slot 0 (64 bytes), 192 commit slot 1
# Commit slot: u64 seq, u64 position, u64 heap top, u64 reserved x4, u64 checksum
S_POOLHDR = struct.Struct("<8sIIQQQQQQ")
POOLHDR_CHECK = 64
COMMIT_SLOTS = (128, 192)
S_COMMIT = struct.Struct("<QQQQQQQ")  # seq, position, top, r, r, r, r ; checksum follows at +56
HEADER_SIZE = PAGE

# Undo log: a header line then 64-byte entries.
# header line: u64 magic-ish tag, u64 next segment, u64 batch of link, u64 checksum of link
# entry: u64 addr, u64 batch, u64 checksum, u64 reserved, 32 bytes old data
S_UNDOENT = struct.Struct("<QQQQ")
S_UNDOLINK = struct.Struct("<QQQQ")
UNDO_TAG = 0x474F4C4F444E55  # "UNDOLOG"

# Meta block at the arena start: header, root slot, reserved.
META_ROOT = HDR
META_SIZE = HDR + 16
