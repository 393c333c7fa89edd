"""A deterministic mutation workload used by the heap's crash tests (native or PM)."""

from __future__ import annotations

import random
from collections import deque


class Account:
    """A small user class stored field by field."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.balance = 0
        self.history: list = []

    def deposit(self, amount: int) -> int:
        self.balance += amount
        self.history.append(amount)
        if len(self.history) > 5:
            del self.history[0]
        return self.balance


def initial() -> dict:
    return {"kv": {}, "log": [], "tags": set(), "q": deque(), "acct": Account("ann"), "n": 0}


def op(state, i: int) -> None:
    """Operation number ``i`` (the same mutation on native and PM state)."""
    r = random.Random(i)
    kind = r.randrange(10)
    k = f"k{r.randrange(40)}"
    if kind < 3:
        state["kv"][k] = r.choice([b"x" * r.randrange(1, 200), i, f"s{i}", [i, {"n": i}], 2.5])
    elif kind == 3:
        state["kv"].pop(k, None)
    elif kind == 4:
        state["log"].append(i)
        if len(state["log"]) > 30:
            del state["log"][:10]
    elif kind == 5:
        state["tags"].add(k) if r.random() < 0.6 else state["tags"].discard(k)
    elif kind == 6:
        q = state["q"]
        q.append(i)
        if len(q) > 8:
            q.popleft()
    elif kind == 7:
        state["acct"].deposit(i)
    elif kind == 8:
        lst = []
        state["kv"][k] = lst
        lst.append(i)
        lst.append(b"z" * (i % 50))
    else:
        state["n"] = state["n"] + 1
        v = state["kv"].get(k)
        if isinstance(v, list):
            v.append(i)


def native_state(n_ops: int) -> dict:
    s = initial()
    for i in range(n_ops):
        op(s, i)
    return s


def canon(x):
    """Canonical, comparable form (sets sorted, objects as dicts)."""
    if isinstance(x, dict):
        return ("d", [(canon(k), canon(v)) for k, v in x.items()])
    if isinstance(x, list | tuple | deque):
        return (type(x).__name__ if not isinstance(x, list) else "l", [canon(v) for v in x])
    if isinstance(x, set | frozenset):
        return ("s", sorted(repr(canon(v)) for v in x))
    if isinstance(x, Account):
        return ("A", canon(dict(vars(x))))
    return x
