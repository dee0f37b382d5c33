"""io/ and weights/ sit low in the package: they import nothing above them (lazy imports included), so the old
checkpoint <-> weights cycle cannot come back."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "micromotion"


def _imports(path: Path) -> set[str]:
    """Absolute names of the micromotion modules `path` imports, at the top or inside functions."""
    pkg = path.relative_to(SRC.parent).with_suffix("").parts
    pkg = pkg[:-1] if pkg[-1] != "__init__" else pkg[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(pkg[: len(pkg) - node.level + 1])
            mod = ".".join(base + ([node.module] if node.module else []))
            out.add(mod)
            if not node.module:
                out |= {f"{mod}.{a.name}" for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("micromotion"):
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("micromotion")}
    return out


@pytest.mark.parametrize("package,allowed", [
    ("io", ("micromotion.io", "micromotion.errors")),
    ("weights", ("micromotion.weights", "micromotion.errors", "micromotion.io", "micromotion.models.stylegan2",
                 "micromotion.ops")),
])
def test_low_packages_import_only_below_them(package, allowed):
    for path in sorted((SRC / package).glob("*.py")):
        bad = sorted(m for m in _imports(path) if m != "micromotion" and not m.startswith(allowed))
        assert not bad, f"{path.relative_to(SRC)} imports {bad}"


def test_generator_readers_do_not_import_the_registry():
    """models.stylegan2_convert is what weights.checks reads generators with; it must not resolve names."""
    mods = _imports(SRC / "models" / "stylegan2_convert.py")
    assert not [m for m in mods if m.startswith(("micromotion.weights", "micromotion.checkpoint"))], mods
