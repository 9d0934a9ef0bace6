"""The pure parts never depend on the model, training or export: targets, losses, decode, config,
geometry and the data pipeline take tensors (or text) and return tensors, so they are tested
against the official fixtures without building a network."""

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "cornernet_tf"
PURE = ["targets", "losses", "decode", "config", "geometry", "data", "serving"]
FORBIDDEN = {
    "model", "backbone", "heads", "layers", "training", "export", "inference", "optimize",
    "tfjs", "demo", "cli",
}  # fmt: skip


def module_file(name: str) -> Path:
    path = PACKAGE.joinpath(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def package_imports(name: str) -> set[str]:
    """The cornernet_tf modules that module `name` imports (anywhere in the file)."""
    tree = ast.parse(module_file(name).read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for full in names:
            if full.startswith("cornernet_tf."):
                found.add(full.removeprefix("cornernet_tf."))
    return found


def reachable(name: str) -> set[str]:
    """Every cornernet_tf module that importing `name` imports, transitively."""
    seen, todo = set(), [name]
    while todo:
        current = todo.pop()
        for imported in package_imports(current):
            if imported not in seen and module_file(imported).exists():
                seen.add(imported)
                todo.append(imported)
            parts = imported.split(".")  # importing a.b imports the package a first
            for i in range(1, len(parts)):
                parent = ".".join(parts[:i])
                if parent not in seen and module_file(parent).exists():
                    seen.add(parent)
                    todo.append(parent)
    return seen


def pure_modules() -> list[str]:
    names = []
    for name in PURE:
        path = PACKAGE / name
        if path.is_dir():
            names += [f"{name}.{p.stem}" for p in sorted(path.glob("*.py")) if p.stem != "__init__"]
        names.append(name)
    return names


@pytest.mark.parametrize("name", pure_modules())
def test_pure_modules_never_import_the_model_training_or_export(name):
    bad = {m for m in reachable(name) if m.split(".")[0] in FORBIDDEN}
    assert not bad, f"cornernet_tf.{name} imports {sorted(bad)}"


def test_the_check_finds_a_forbidden_import(tmp_path, monkeypatch):
    """The test above can fail: a module that imports the model is caught, also through another."""
    fake = tmp_path / "cornernet_tf"
    fake.mkdir()
    (fake / "losses.py").write_text("from cornernet_tf.helper import x\n")
    (fake / "helper.py").write_text("import cornernet_tf.model\n")
    (fake / "model.py").write_text("")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert "model" in reachable("losses")
