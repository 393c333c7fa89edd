"""The heap as the proxies see it: everything :mod:`persimmon.proxies` uses of a heap.

A proxy holds its heap and the offset of its object, and does all its work through the
members declared here (``tests/test_proxy_interface.py`` holds proxies.py to them, and
:class:`persimmon.heap.Heap` to providing them).  Offsets are byte offsets into ``buf``;
a *slot* is a stored value (docs/heap.md, "Values"); ``es`` is a hash table's entry size
(24 for a dict, 16 for a set).  Every store named here is undo-logged by the heap.

The other direction, what the heap's conversion uses of the proxies, is the section "For
the heap" at the end of :mod:`persimmon.proxies`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class ProxyHeap(Protocol):
    """The members of a heap that the proxies use (implemented by ``Heap``)."""

    buf: Any  #: the pool's writable mapping (it changes when the pool grows)
    fast: Any  #: the compiled module the heap uses, or None (the Python paths)
    #: offset -> the live proxy of that container (so a PM object has one proxy)
    live_proxies: dict[int, Any]
    #: offset -> (parent offset, key, is an attribute): how a container was reached
    proxy_parents: dict[int, tuple[int, Any, bool]]
    #: table offset -> {key: entry offset}: the DRAM index of hash tables that have one
    table_indexes: dict[int, dict[Any, int]]

    # values
    def load(self, x: int) -> Any:
        """The Python value of slot ``x``: natives for immutables, proxies for containers."""

    def convert(self, v: Any, where: Any, key: Any = None, attr: bool = False) -> int:
        """``v`` converted to a slot (new objects at reference count 0) for a store into
        the object at ``where`` under ``key`` (named in an UnpersistableError)."""

    def note_parent(self, x: int, parent: int, key: Any, attr: bool = False) -> None:
        """Remember how the container at ``x`` was reached (for error messages)."""

    # reference counts and memory
    def incref(self, x: int) -> None:
        """One more reference to slot ``x`` (nothing for an inline value)."""

    def decref(self, x: int) -> None:
        """One reference fewer to slot ``x``; at zero it is freed at the operation's end."""

    def new_array(self, cap: int) -> int:
        """A new slot array of at least ``cap`` slots (owned by one container)."""

    def array_capacity(self, arr: int) -> int:
        """Slots the array at ``arr`` holds."""

    def free_after_commit(self, off: int) -> None:
        """Free the chunk at ``off`` once the batch in progress commits."""

    # undo-logged stores
    def store_slot(self, off: int, x: int) -> None:
        """Store slot ``x`` at ``off``, adjusting reference counts."""

    def store_blob(self, off: int, t: int, data: bytes) -> None:
        """Store a new bytes/str object (type ``t``) holding ``data`` into the slot at
        ``off`` (reference counts adjusted)."""

    def store_i64(self, off: int, v: int) -> None:
        """Store the signed 64-bit word ``v`` at ``off`` (no reference counting)."""

    def store_u64(self, off: int, v: int) -> None:
        """Store the unsigned 64-bit word ``v`` at ``off`` (no reference counting)."""

    def store_bytes(self, off: int, data: bytes | memoryview) -> None:
        """Store ``data`` at ``off`` (no reference counting)."""

    # hash tables (dicts, sets, attribute dicts)
    def key_hash(self, key: Any) -> int:
        """The stable hash of ``key`` (``hashing.phash``)."""

    def table_lookup(self, d: int, es: int, key: Any) -> int:
        """Offset of ``key``'s entry in the table at ``d``, or -1."""

    def table_seek(self, d: int, es: int, key: Any) -> tuple[int, int, int]:
        """``(entry, 0, 0)`` if ``key`` is in table ``d``, else ``(-1, hash, index slot
        for an insert)``."""

    def table_free_slot(self, d: int, h: int) -> int:
        """The index slot an insert of a key of hash ``h`` takes in table ``d``."""

    def table_insert(self, d: int, es: int, h: int, p: int, kslot: int, vslot: int,
                     key: Any) -> None:
        """Append an entry for ``key`` (absent; converted to ``kslot``) at index slot
        ``p``."""

    def table_insert_blobs(self, d: int, h: int, p: int, kt: int, kdata: bytes,
                           vdata: bytes, key: Any) -> None:
        """:meth:`table_insert` into a dict of a bytes/str key and a bytes value, both
        new objects (the hottest insert)."""

    def table_delete(self, d: int, es: int, e: int, key: Any = ...) -> None:
        """Remove the entry at ``e`` (its reference counts dropped)."""

    def table_clear(self, d: int) -> None:
        """Empty the table at ``d``."""

    def table_entries(self, d: int) -> list[int]:
        """Flat ``[hash, key, (value,) ...]`` of the table's entries, deleted ones
        included (key slot ``layout.DUMMY``), in order."""
