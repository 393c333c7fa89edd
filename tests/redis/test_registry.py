"""The command registry: one table read by the server, COMMAND and the transaction rules,
and a package without import cycles."""

from __future__ import annotations

import ast
import os

import pytest

import persimmon_redis.commands  # noqa: F401  (fills the table)
from persimmon_redis.registry import COMMANDS, Cmd, client_commands, command

PKG = os.path.join(os.path.dirname(persimmon_redis.commands.__file__))


def test_every_command_has_a_handler_arity_and_flags():
    assert len(COMMANDS) > 150
    for name, cmd in COMMANDS.items():
        assert isinstance(cmd, Cmd) and callable(cmd.fn), name
        assert cmd.arity != 0, name
        assert not ("write" in cmd.flags and "readonly" in cmd.flags), name
    # the transaction rules come from the flags
    assert COMMANDS[b"save"].has("no-multi") and COMMANDS[b"shutdown"].has("no-multi")
    assert COMMANDS[b"spop"].has("random") and COMMANDS[b"spop"].server
    assert COMMANDS[b"blpop"].has("blocking") and COMMANDS[b"blpop"].write
    assert not COMMANDS[b"get"].write and COMMANDS[b"set"].write


def test_internal_operations_are_hidden_from_clients():
    names = client_commands()
    assert b"get" in names and b"multi" in names
    assert not [n for n in names if n.startswith(b"\x00")]
    assert COMMANDS[b"\x00expired"].write


def test_key_positions():
    assert COMMANDS[b"mset"].keys([b"mset", b"a", b"1", b"b", b"2"]) == [b"a", b"b"]
    assert COMMANDS[b"del"].keys([b"del", b"a", b"b"]) == [b"a", b"b"]
    assert COMMANDS[b"blpop"].keys([b"blpop", b"a", b"b", b"0"]) == [b"a", b"b"]
    assert COMMANDS[b"blmpop"].keys([b"blmpop", b"0", b"2", b"x", b"y", b"LEFT"]) == [
        b"x", b"y"]
    assert COMMANDS[b"ping"].keys([b"ping"]) == []


def test_a_name_registered_twice_or_an_unknown_flag_is_refused():
    with pytest.raises(ValueError, match="twice"):
        command("get", arity=2)(lambda ctx, a: None)
    with pytest.raises(ValueError, match="unknown flags"):
        command("no-such-command-x", arity=2, flags=("wirte",))(lambda ctx, a: None)
    assert b"no-such-command-x" not in COMMANDS
    with pytest.raises(ValueError, match="lower-case"):
        command("GETX", arity=2)(lambda ctx, a: None)


def _imports(path: str, modname: str) -> set[str]:
    """Package-internal modules imported at run time (TYPE_CHECKING blocks left out)."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    pkg_parts = modname.split(".")[:-1] if not path.endswith("__init__.py") else \
        modname.split(".")
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.ImportFrom) and child.level:
                base = pkg_parts[: len(pkg_parts) - child.level + 1]
                mod = ".".join(base + ([child.module] if child.module else []))
                if child.module:
                    out.add(mod)
                else:
                    out.update(f"{mod}.{a.name}" for a in child.names)
            visit(child)

    visit(tree)
    return out


def test_the_package_has_no_import_cycles():
    mods: dict[str, str] = {}
    for root, _dirs, files in os.walk(PKG):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(root, f), os.path.dirname(PKG))
                name = rel[:-3].replace(os.sep, ".")
                name = name[: -len(".__init__")] if name.endswith(".__init__") else name
                mods[name] = os.path.join(root, f)
    graph = {m: {d for d in _imports(p, m) if d in mods} for m, p in mods.items()}
    # importing a submodule runs its package first; cmds/__init__ loads all of cmds/*
    for m in mods:
        parent = m.rsplit(".", 1)[0]
        if parent in mods and parent != m:
            graph[m].add(parent)
    graph["persimmon_redis.cmds"] |= {m for m in mods if m.startswith("persimmon_redis.cmds.")}

    def reach(m: str) -> set[str]:
        seen, todo = set(), [m]
        while todo:
            for d in graph[todo.pop()]:
                if d not in seen:
                    seen.add(d)
                    todo.append(d)
        return seen

    reachable = {m: reach(m) for m in graph}
    for m in graph:
        cycle = {n for n in reachable[m] if m in reachable[n]}
        # the only cycle allowed: the cmds package and its own modules (a package's
        # __init__ importing its children is how Python packages work)
        assert not cycle or all(n.startswith("persimmon_redis.cmds") for n in cycle), \
            (m, sorted(cycle))
    assert "persimmon_redis.state" not in graph["persimmon_redis.keyspace"]
    assert graph["persimmon_redis.registry"] <= {"persimmon_redis", "persimmon_redis.replies"}
