"""The architecture of the library: the import contracts of pyproject.toml (import-linter: layers,
no cycle between a package's modules, no Snakemake) and no private name imported across modules."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "biomarkers"


def test_import_contracts_hold():
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "3 kept, 0 broken" in done.stdout


def _module(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def private_imports(package: Path = PACKAGE) -> list[str]:
    """``module: from other import _name`` for every private name one module takes from another."""
    found = []
    for path in sorted(package.rglob("*.py")):
        name = _module(path, package)
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            source = node.module or ""
            if node.level:
                base = here.split(".")[: len(here.split(".")) - node.level + 1]
                source = ".".join(base + ([source] if source else []))
            if not source.startswith("biomarkers") or source == name:
                continue
            found += [f"{name}: from {source} import {a.name} (line {node.lineno})"
                      for a in node.names if a.name.startswith("_")]
    return found


def test_no_private_name_is_imported_across_modules(tmp_path):
    assert private_imports() == []
    # the check sees one when there is one
    (tmp_path / "biomarkers" / "stage").mkdir(parents=True)
    (tmp_path / "biomarkers" / "stage" / "a.py").write_text("from .b import _hidden\nfrom . import a\n")
    assert private_imports(tmp_path / "biomarkers") == ["biomarkers.stage.a: from biomarkers.stage.b import _hidden (line 1)"]
