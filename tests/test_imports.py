"""The import graph of `src/micromotion`, read with `ast` (nothing is imported): data flows one way.

Fails on an import cycle (any import, also inside a function: a lazy import only hides a cycle), on a shell
(`cli.py`, `commands/`, `web/`) using a private name (`_x`) of another module, and on the runtime path
importing the trainers (`world/train/`, for the CLI only).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "micromotion"

#: No cycle is allowed (the last two, checkpoint <-> weights and models.clip <-> models.clip_native, went with
#: issue 20's split).
KNOWN_CYCLES: list[set[str]] = []

SHELLS = ("micromotion.cli", "micromotion.commands", "micromotion.web", "micromotion.__main__")
#: The trainers: the world's models' and the real-face encoder's (which builds on the world encoder's loop).
TRAINERS = ("micromotion.world.train", "micromotion.invert.encoder_train")
#: Modules that may import the trainers: the CLI, the trainers themselves and the old `python -m` entry points.
TRAINER_IMPORTERS = ("micromotion.commands", *TRAINERS, "micromotion.world.clip_train",
                     "micromotion.world.encoder_train")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def _absolute(module: str, level: int, target: str | None) -> str:
    if level == 0:
        return target or ""
    base = module.split(".") if _is_package(module) else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _imports(name: str):
    """(imported module, names taken from it, line) for every import statement of module `name`."""
    tree = ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            yield _absolute(name, node.level, node.module), [a.name for a in node.names], node.lineno


def _graph() -> dict[str, set[str]]:
    graph = {m: set() for m in MODULES}
    for m in MODULES:
        for target, names, _ in _imports(m):
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]  # `from pkg import module`
            graph[m].update(submodules)
            if target in MODULES and (not names or len(submodules) < len(names)):
                graph[m].add(target)  # a name defined in the module (a package's parents are not counted)
            if target not in MODULES and target.startswith(PACKAGE + "."):
                raise AssertionError(f"{m} imports {target}, which does not exist")
        graph[m].discard(m)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = set()
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.add(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(comp)
    return out


def test_the_walk_sees_the_package():
    graph = _graph()
    assert {"micromotion.cli", "micromotion.animate", "micromotion.profiles", "micromotion.generators"} <= set(graph)
    assert "micromotion.profiles" in graph["micromotion.animate"]
    assert "micromotion.world.faces" in graph["micromotion.world"]  # relative `from .faces import ...`


def test_no_import_cycles():
    cycles = [sorted(c) for c in _cycles(_graph()) if c not in KNOWN_CYCLES]
    assert not cycles, f"import cycles (move the shared part into a lower module): {cycles}"


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def _is_shell(name: str) -> bool:
    return any(name == s or name.startswith(s + ".") for s in SHELLS)


def test_shells_use_public_names_only():
    bad = []
    for m in filter(_is_shell, MODULES):
        modules_bound = {}  # local name -> micromotion module, for `alias._private` below
        for target, names, line in _imports(m):
            if not target.startswith(PACKAGE):
                continue
            for n in names:
                if n.startswith("_") and not n.startswith("__") and target != m:
                    bad.append(f"{m}:{line} imports {n} from {target}")
                if f"{target}.{n}" in MODULES:
                    modules_bound[n] = f"{target}.{n}"
        tree = ast.parse(MODULES[m].read_text())
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in modules_bound and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                bad.append(f"{m}:{node.lineno} uses {modules_bound[node.value.id]}.{node.attr}")
    assert not bad, "shells must use the library's public names: " + "; ".join(bad)


def test_trainers_stay_off_the_runtime_path():
    graph = _graph()
    bad = [f"{m} imports {t}" for m, targets in graph.items() for t in targets
           if any(t == tr or t.startswith(tr + ".") for tr in TRAINERS)
           and not any(m == p or m.startswith(p + ".") for p in TRAINER_IMPORTERS)]
    assert not bad, f"the trainers are for the CLI only: {bad}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _is_shell(m)))
def test_each_shell_parses(module):
    ast.parse(MODULES[module].read_text())
