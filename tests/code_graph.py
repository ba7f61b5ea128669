"""The project's own import graph, read from the code with `ast` (nothing is imported or run).

Every `import x` and `from x import y` counts, at any depth (imports inside functions too): a
module imported lazily is still code the importer runs. `from package import name` counts the
submodule `package.name` when there is one, else the package itself. Importing a module also
imports its packages' `__init__.py`, as Python does.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

from support import REPO_ROOT

PROJECT_PACKAGES = ("steps", "pyfunc")


def module_file(module: str) -> Path | None:
    """The project file that defines a dotted module name, or None (not a project module)."""
    if module.split(".")[0] not in PROJECT_PACKAGES:
        return None
    base = REPO_ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_name(path: Path) -> str:
    """The dotted name of a project file."""
    parts = list(Path(path).resolve().relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.cache
def direct_imports(path: Path) -> frozenset[str]:
    """Project modules a file imports itself (with the packages they sit in)."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=str(path))
    package = (
        module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    )
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import: resolve against this file's package
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [
                f"{base}.{alias.name}" if module_file(f"{base}.{alias.name}") else base
                for alias in node.names
            ]
        else:
            continue
        for name in names:
            if module_file(name) is None:
                continue
            parts = name.split(".")
            found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return frozenset(found)


def transitive_files(module: str) -> set[Path]:
    """Every project file that importing `module` runs (the module's own file included)."""
    seen: set[str] = set()
    todo = [module, *(".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1))]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        if path is not None:
            todo.extend(direct_imports(path) - seen)
    return {path for name in seen if (path := module_file(name)) is not None}


def has_code(path: Path) -> bool:
    """False for a file holding nothing but a docstring (a package's `__init__.py`)."""
    body = ast.parse(Path(path).read_text(encoding="utf-8")).body
    return any(
        not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) for node in body
    )


def project_modules() -> list[Path]:
    """Every Python file of the project's packages."""
    return sorted(p for pkg in PROJECT_PACKAGES for p in (REPO_ROOT / pkg).rglob("*.py"))
