"""The layout rule, checked on the code (steps/__init__.py states it):

- a module directly in steps/ is an MLproject entry point (`python -m steps.<name>`), and every
  entry point is such a module; each has `main(argv)` and a typed `run`;
- every folder under steps/ is a library package that opens with a docstring saying what it owns;
- imports point one way: entry points -> libraries -> pyfunc; no library imports an entry point,
  pyfunc imports nothing from steps/, and of steps/ only what trains imports pyfunc;
- nothing but an entry point is a program (`if __name__ == "__main__"`), and what the Makefile
  and the tests start with `python -m steps.<name>` is an entry point.
"""

from __future__ import annotations

import ast
import re

import pytest
import yaml
from code_graph import direct_imports, module_name, project_modules
from support import REPO_ROOT

STEPS = REPO_ROOT / "steps"
ENTRY_POINTS = yaml.safe_load((REPO_ROOT / "MLproject").read_text())["entry_points"]
TRAINS = {"steps.train"}  # the only entry point that builds the model it ships


def entry_point_modules() -> set[str]:
    return {p.stem for p in STEPS.glob("*.py") if p.name != "__init__.py"}


def is_entry_point(module: str) -> bool:
    parts = module.split(".")
    return len(parts) == 2 and parts[0] == "steps" and parts[1] in entry_point_modules()


def test_every_module_directly_in_steps_is_an_entry_point_and_back():
    commands = {name: spec["command"] for name, spec in ENTRY_POINTS.items()}
    assert set(commands) == entry_point_modules()
    for name, command in commands.items():
        assert command == f"python -m steps.{name}", name


@pytest.mark.parametrize("name", sorted(entry_point_modules()))
def test_every_entry_point_has_the_same_skeleton(name):
    tree = ast.parse((STEPS / f"{name}.py").read_text())
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert ast.get_docstring(tree), f"steps/{name}.py has no docstring"
    assert "main" in functions and "run" in functions, f"steps/{name}.py: main(argv) and run"
    main_args = [a.arg for a in functions["main"].args.args]
    assert main_args == ["argv"], f"steps/{name}.py: main takes argv only"
    run = functions["run"]
    assert run.returns is not None, f"steps/{name}.py: run has no return type"
    assert all(a.annotation is not None for a in run.args.args + run.args.kwonlyargs), name
    prints = [n for n in ast.walk(run) if isinstance(n, ast.Call) and _called(n) == "print"]
    assert not prints, f"steps/{name}.py: run prints (main reports what it returns)"


def _called(call: ast.Call) -> str:
    return call.func.id if isinstance(call.func, ast.Name) else ""


def test_every_folder_under_steps_is_a_documented_package():
    folders = [p for p in STEPS.rglob("*") if p.is_dir() and p.name != "__pycache__"]
    assert folders
    for folder in folders:
        init = folder / "__init__.py"
        assert init.is_file(), f"{folder} is not a package"
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc.split()) >= 8, f"{init} must say what the package owns"


def test_imports_point_one_way():
    wrong = []
    for path in project_modules():
        module = module_name(path)
        imported = direct_imports(path)
        if module.startswith("pyfunc"):
            wrong += [f"{module} -> {m}" for m in imported if m.startswith("steps")]
        elif not is_entry_point(module):
            wrong += [f"{module} -> {m}" for m in imported if is_entry_point(m)]
        if module.startswith("steps") and module not in TRAINS:
            wrong += [f"{module} -> {m} (only {TRAINS} trains)" for m in imported if m == "pyfunc"]
    assert wrong == []


def test_entry_points_do_not_import_each_other():
    """main chains them by entry-point name (steps.stage.chain), never by import."""
    for name in entry_point_modules():
        imported = direct_imports(STEPS / f"{name}.py")
        others = {m for m in imported if is_entry_point(m) and m != f"steps.{name}"}
        assert not others, f"steps.{name} imports {others}"


def test_only_entry_points_are_programs():
    programs = {
        module_name(p)
        for p in project_modules()
        if re.search(r"^if __name__ == .__main__.:", p.read_text(), re.M)
    }
    assert programs == {f"steps.{name}" for name in entry_point_modules()}


def test_what_is_started_as_a_program_is_an_entry_point():
    started = set()
    for path in [
        REPO_ROOT / "Makefile",
        REPO_ROOT / "dvc.yaml",
        *(REPO_ROOT / "tests").rglob("*.py"),
        *(REPO_ROOT / "bench").glob("*.py"),
    ]:
        text = path.read_text()
        started |= set(re.findall(r"-m[\"', ]+steps\.([\w.]+)", text))
    assert started, "expected the Makefile and tests to start entry points"
    assert started <= entry_point_modules(), started - entry_point_modules()
