"""The layout the README describes is the layout of the code: import rules, no cycles, no stray names."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
PACKAGES = ("counter_core", "handlers", "tools", "generated")

# Which top-level package may import which (besides itself).
ALLOWED = {
    "counter_core": set(),
    "generated": set(),
    "handlers": {"counter_core", "generated"},
    "tools": {"counter_core", "handlers", "generated"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module of this repository that `path` imports, at module level or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for package in PACKAGES for p in (REPO / package).rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


def test_each_folder_imports_only_what_the_readme_allows() -> None:
    broken = sorted(
        f"{module} imports {target}"
        for module, targets in _graph().items()
        for target in targets
        if target.split(".")[0] != module.split(".")[0]
        and target.split(".")[0] not in ALLOWED[module.split(".")[0]]
    )
    assert broken == []


def test_counter_core_knows_neither_http_nor_lambda() -> None:
    for path in (REPO / "counter_core").rglob("*.py"):
        source = path.read_text()
        assert "aws_lambda_powertools" not in source, path
        assert "http" not in {m.split(".")[0] for m in _imports(path)}, path


def test_there_are_no_import_cycles_between_modules() -> None:
    graph = _graph()
    # A package's __init__ is reached by importing any of its modules; only module-to-module
    # edges can form a cycle worth reporting.
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target, [*stack, target])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_the_readme_layout_names_every_folder_and_tools_package_and_nothing_else() -> None:
    section = README[README.index("## Layout") :]
    block = section[section.index("```") + 3 :]
    block = block[: block.index("```")]
    named = set(re.findall(r"^(\S+)\s", block, flags=re.MULTILINE))
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    tracked = {line.split("/")[0] + "/" for line in files.splitlines() if "/" in line and line[0] != "."}
    tracked |= {f"tools/{p.name}/" for p in (REPO / "tools").iterdir() if (p / "__init__.py").exists()}
    tracked |= {f"tools/{p.name}" for p in (REPO / "tools").glob("*.py") if p.name != "__init__.py"}
    tracked.add("template.yaml")
    assert named == tracked
