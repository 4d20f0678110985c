"""The package's layers, read from the code's own imports: one direction only, no cycles, no torch in the studio.

Layers, lowest first (README, "Where things live"): `errors`/`files` ← `contracts` ← `scoring` | `formats` ←
`modeling` ← `training` | `evaluation` | `design` ← `studio` | `cli` ← `app.py`, `pages/`.
A module imports its own folder or a lower layer; folders of one rank never import each other;
pages import only `studio`, `contracts` and `errors`. Every import counts, also one inside a
function: a lazy import still ties the modules together.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "rcsd_core"

RANKS = {
    "errors": 0, "files": 1,
    "contracts": 2,
    "scoring": 3, "formats": 3,
    "modeling": 4,
    "training": 5, "evaluation": 5, "design": 5,
    "studio": 6, "cli": 6,
}
PAGE_ALLOWED = {"studio", "contracts", "errors"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def rcsd_imports(path: Path) -> set[str]:
    """Every rcsd_core module `path` imports, wherever the import statement stands."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("rcsd_core"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rcsd_core"):
            found.add(node.module)
            # `from rcsd_core.contracts import runs` imports the module rcsd_core.contracts.runs
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                if (ROOT / Path(*candidate.split("."))).with_suffix(".py").exists():
                    found.add(candidate)
    return found


def layer(module: str) -> str:
    """The first folder (or base module) under rcsd_core: contracts, scoring, ..., errors, files."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "rcsd_core"


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def test_every_module_belongs_to_a_known_layer():
    unknown = sorted(m for m in package_modules() if m != "rcsd_core" and layer(m) not in RANKS)
    assert not unknown, f"modules outside the layers {sorted(RANKS)}: {unknown}"


def test_imports_point_down_the_layers_only():
    wrong = []
    for module, path in package_modules().items():
        if module == "rcsd_core":
            continue
        here = layer(module)
        for target in rcsd_imports(path):
            there = layer(target)
            if there == "rcsd_core":
                wrong.append(f"{module} imports the package root {target}")
            elif there != here and RANKS[there] >= RANKS[here]:
                wrong.append(f"{module} ({here}, rank {RANKS[here]}) imports {target} ({there}, rank {RANKS[there]})")
    assert not wrong, "imports against the layers:\n" + "\n".join(sorted(wrong))


def test_no_import_cycles():
    modules = package_modules()
    graph = {m: {t for t in rcsd_imports(p) if t in modules and t != m} for m, p in modules.items()}
    # a package's __init__ is imported by its submodules implicitly; only explicit edges count here
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_pages_import_only_the_studio_and_contracts():
    wrong = []
    for path in [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))]:
        for target in rcsd_imports(path):
            if layer(target) not in PAGE_ALLOWED:
                wrong.append(f"{path.relative_to(ROOT)} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_a_wrong_import(tmp_path):
    """The rules above can fail: a contracts module that imports modeling is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from rcsd_core.modeling import models\n    from rcsd_core.contracts import runs\n")
    found = rcsd_imports(bad)
    assert "rcsd_core.modeling" in found and "rcsd_core.contracts.runs" in found
    assert RANKS[layer("rcsd_core.modeling.models")] > RANKS[layer("rcsd_core.contracts.config")]


TORCH_FREE_PROBE = """
import importlib, json, pkgutil, sys
from pathlib import Path
root = Path(sys.argv[1])
names = json.loads(sys.argv[2])
import rcsd_core.studio, rcsd_core.cli
for package in (rcsd_core.studio, rcsd_core.cli):
    names += [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
              if not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
heavy = sorted(m for m in ("torch", "transformers", "peft", "accelerate") if m in sys.modules)
print(json.dumps({"imported": len(names), "heavy": heavy}))
"""


def test_pages_studio_and_cli_import_without_torch():
    """What the studio's pages import, and every module of studio/ and cli/, loads without torch."""
    page_modules = sorted({t for path in [ROOT / "app.py", *(ROOT / "pages").glob("*.py")] for t in rcsd_imports(path)})
    done = subprocess.run([sys.executable, "-c", TORCH_FREE_PROBE, str(ROOT), json.dumps(page_modules)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["imported"] > len(page_modules)
    assert result["heavy"] == [], f"importing the studio loaded {result['heavy']}"


@pytest.mark.parametrize("name", ["training", "evaluation"])
def test_jobs_have_a_module_entry_point(name):
    assert (PACKAGE / name / "__main__.py").is_file()
