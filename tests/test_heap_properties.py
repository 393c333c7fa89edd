"""Property tests: random mutation sequences applied to a native graph and to the PM proxies
stay equal after every operation, after commit, after close/open and after materialize."""

from __future__ import annotations

from collections import deque

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from heap_workload import Account
from persimmon.heap import Heap
from persimmon.simdevice import SimDevice

KEYS = st.sampled_from(["a", "b", "c", 1, 2, 1.0, True, b"a", (1, "x"), None, -7])
LEAF = st.one_of(
    st.integers(-(2**70), 2**70), st.text(max_size=8), st.binary(max_size=40), st.none(),
    st.booleans(), st.floats(allow_nan=False),
)
VALUE = st.recursive(
    LEAF,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(KEYS, inner, max_size=4),
        st.tuples(inner, inner),
    ),
    max_leaves=8,
)
CONTAINER = st.sampled_from(["d", "l", "s", "q", "o", "nested"])

OPS = st.one_of(
    st.tuples(st.just("dset"), KEYS, VALUE),
    st.tuples(st.just("ddel"), KEYS),
    st.tuples(st.just("dpop"), KEYS),
    st.tuples(st.just("dsetdefault"), KEYS, VALUE),
    st.tuples(st.just("dupdate"), st.dictionaries(KEYS, LEAF, max_size=3)),
    st.tuples(st.just("dpopitem")),
    st.tuples(st.just("lappend"), VALUE),
    st.tuples(st.just("linsert"), st.integers(-5, 5), VALUE),
    st.tuples(st.just("lpop"), st.integers(-3, 3)),
    st.tuples(st.just("lset"), st.integers(-3, 3), VALUE),
    st.tuples(
        st.just("lslice"), st.integers(-4, 4), st.integers(-4, 4), st.lists(LEAF, max_size=3)
    ),
    st.tuples(st.just("ldelslice"), st.integers(-4, 4), st.integers(-4, 4)),
    st.tuples(st.just("lsort")),
    st.tuples(st.just("lreverse")),
    st.tuples(st.just("sadd"), KEYS),
    st.tuples(st.just("sdiscard"), KEYS),
    st.tuples(st.just("qappend"), LEAF),
    st.tuples(st.just("qappendleft"), LEAF),
    st.tuples(st.just("qpop")),
    st.tuples(st.just("qrotate"), st.integers(-3, 3)),
    st.tuples(st.just("oset"), st.sampled_from(["x", "y", "balance"]), VALUE),
    st.tuples(st.just("odel"), st.sampled_from(["x", "y"])),
    st.tuples(st.just("odeposit"), st.integers(0, 100)),
    st.tuples(st.just("alias"), KEYS, CONTAINER),
    st.tuples(st.just("nested_append"), LEAF),
    st.tuples(st.just("dclear")),
    st.tuples(st.just("commit")),
    st.tuples(st.just("reopen")),
)


def initial():
    return {"d": {}, "l": [], "s": set(), "q": deque(maxlen=6), "o": Account("p"),
            "nested": {"in": []}}


def apply(root, op):
    kind = op[0]
    d, lst, s, q, o = root["d"], root["l"], root["s"], root["q"], root["o"]
    try:
        if kind == "dset":
            d[op[1]] = op[2]
        elif kind == "ddel":
            del d[op[1]]
        elif kind == "dpop":
            return d.pop(op[1], "missing")
        elif kind == "dsetdefault":
            return d.setdefault(op[1], op[2])
        elif kind == "dupdate":
            d.update(op[1])
        elif kind == "dpopitem":
            return d.popitem()
        elif kind == "dclear":
            d.clear()
        elif kind == "lappend":
            lst.append(op[1])
        elif kind == "linsert":
            lst.insert(op[1], op[2])
        elif kind == "lpop":
            return lst.pop(op[1])
        elif kind == "lset":
            lst[op[1]] = op[2]
        elif kind == "lslice":
            lst[op[1] : op[2]] = op[3]
        elif kind == "ldelslice":
            del lst[op[1] : op[2]]
        elif kind == "lsort":
            lst.sort(key=repr)
        elif kind == "lreverse":
            lst.reverse()
        elif kind == "sadd":
            s.add(op[1])
        elif kind == "sdiscard":
            s.discard(op[1])
        elif kind == "qappend":
            q.append(op[1])
        elif kind == "qappendleft":
            q.appendleft(op[1])
        elif kind == "qpop":
            return q.pop()
        elif kind == "qrotate":
            q.rotate(op[1])
        elif kind == "oset":
            setattr(o, op[1], op[2])
        elif kind == "odel":
            delattr(o, op[1])
        elif kind == "odeposit":
            return o.deposit(op[1])
        elif kind == "alias":
            d[op[1]] = root[op[2]]
        elif kind == "nested_append":
            root["nested"]["in"].append(op[1])
            tmp: list = []
            root["nested"]["t"] = tmp
            tmp.append(op[1])
    except (KeyError, IndexError, AttributeError, TypeError, ValueError) as e:
        return type(e).__name__
    return None


def canon(x, seen=None):
    if seen is None:
        seen = set()
    if isinstance(x, dict | list | deque | set | Account):
        if id(x) in seen:
            return ("<cycle>",)
        seen = seen | {id(x)}
    if isinstance(x, dict):
        return ("d", [(repr(k), canon(v, seen)) for k, v in x.items()])
    if isinstance(x, list):
        return ("l", [canon(v, seen) for v in x])
    if isinstance(x, deque):
        return ("q", x.maxlen, [canon(v, seen) for v in x])
    if isinstance(x, set):
        return ("s", sorted(repr(v) for v in x))
    if isinstance(x, tuple):
        return ("t", [canon(v, seen) for v in x])
    if isinstance(x, Account):
        return ("A", canon(dict(vars(x)), seen))
    return ("v", type(x).__name__, repr(x))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OPS, min_size=1, max_size=40), st.sampled_from([1 << 20, 3, 0]))
def test_random_mutations_match_native(ops, index_limit):
    # index_limit: the tables' DRAM index on (the default), dropped when a table outgrows 3
    # entries, and off
    native = initial()
    dev = SimDevice(1 << 20)
    heap = Heap.create(dev, initial())
    heap.index_limit = index_limit
    pos = 0
    for op in ops:
        if op[0] == "commit":
            pos += 1
            heap.commit(pos)
            continue
        if op[0] == "reopen":
            pos += 1
            heap.commit(pos)
            dev = SimDevice.from_image(dev.persisted_image())
            heap = Heap.open(dev)
            heap.index_limit = index_limit
            assert heap.position == pos
            assert canon(heap.materialize()) == canon(native)
            continue
        r_native = apply(native, op)
        r_pm = apply(heap.root, op)
        heap.end_op()
        heap.index_check()
        assert canon(r_pm) == canon(r_native), op
        assert canon(heap.materialize()) == canon(native), op
    pos += 1
    heap.commit(pos)
    reopened = Heap.open(SimDevice.from_image(dev.persisted_image()))
    assert canon(reopened.materialize()) == canon(native)
    # shared references survive: an alias in d points at the very same PM object
    for k, v in native["d"].items():
        for name in ("l", "s", "q", "o", "nested"):
            if v is native[name]:
                assert reopened.root["d"][k] is reopened.root[name]
