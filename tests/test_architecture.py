"""The layout rule, checked on the code (steps/__init__.py states it):

- a module directly in steps/ is an MLproject entry point (`python -m steps.<name>`), and every
  entry point is such a module; each has `main(argv)` and a typed `run`;
- every folder under steps/ is a library package that opens with a docstring saying what it owns;
- imports point one way: entry points -> libraries -> pyfunc; no library imports an entry point,
  pyfunc imports nothing from steps/, and of steps/ only what trains imports the model's code
  (the rest imports pyfunc.contract, the shared names, and nothing else of pyfunc); no two
  packages of steps/ import each other, however indirectly;
- pyfunc/contract.py imports nothing at all;
- nothing but an entry point is a program (`if __name__ == "__main__"`), and what the Makefile
  and the tests start with `python -m steps.<name>` is an entry point;
- libraries return, entry points speak: only an entry point and the CLI runner they share print
  or write to stdout/stderr;
- no module under steps/ is over MAX_LINES lines;
- tests/ mirrors the code (tests/README.md): a test module under tests/steps or tests/pyfunc
  names a module or package of the same folder of the code, so the tests of
  steps/data/sources/s3.py are found at tests/steps/data/sources/test_s3.py.
"""

from __future__ import annotations

import ast
import graphlib
import re
from pathlib import Path

import pytest
import yaml
from code_graph import direct_imports, has_code, module_file, module_name, project_modules
from support import REPO_ROOT

STEPS = REPO_ROOT / "steps"
ENTRY_POINTS = yaml.safe_load((REPO_ROOT / "MLproject").read_text())["entry_points"]
# What builds the model: train fits and ships it, migrate re-logs an old one, and the recipe's
# fit (steps/fitting/recipe.py) is what train ships and tune cross-validates.
TRAINS = {"steps.train", "steps.migrate", "steps.fitting.recipe"}
CONTRACT = "pyfunc.contract"  # the names the model and the stages share
# Duplicates and overlaps are judged on the text as the model sees it: dataset.model_text
# imports the served cleaner lazily, and only stages that never load a logged model in their
# own process (where the project's pyfunc would shadow the model's) may call it.
CLEANER = "pyfunc.cleaning"
SEES_TEXT_AS_THE_MODEL = {"steps.data.dataset"}
MODEL_TEXT_CALLERS = {
    "steps.ingest",
    "steps.validate",
    "steps.train",
    "steps.data.dataset",
    "steps.data.splits",  # train's and tune's splits, called by them only
}
MAX_LINES = 400
RUNNER_ARGUMENTS = ["section", "argv", "command"]  # the shared main every entry point calls
# What writes to the process's own output, besides print(): methods of sys.stdout / sys.stderr
# (or their .buffer), pprint's printers, traceback's print_* (to stderr), os.write to fd 1 or 2.
STREAMS = {"stdout", "stderr", "__stdout__", "__stderr__"}
STREAM_WRITES = {"write", "writelines"}
PRINTERS = {"print": "builtins", "pprint": "pprint", "pp": "pprint"}
TRACEBACK_PRINTS = {"print_exc", "print_exception", "print_last", "print_stack", "print_tb"}


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
            model_code = {m for m in imported if m.startswith("pyfunc")} - {"pyfunc", CONTRACT}
            if module in SEES_TEXT_AS_THE_MODEL:
                model_code -= {CLEANER}
            if "model_text(" in path.read_text() and module not in MODEL_TEXT_CALLERS | TRAINS:
                wrong.append(f"{module} calls model_text (only {MODEL_TEXT_CALLERS} may)")
            wrong += [f"{module} -> {m} (only {TRAINS} trains)" for m in sorted(model_code)]
    assert wrong == []


def package_of(module: str) -> str:
    """What a module is part of: its package directly under steps/ (steps.data for
    steps.data.sources.s3), an entry point itself, or pyfunc."""
    return ".".join(module.split(".")[:2]) if module.startswith("steps.") else module.split(".")[0]


def package_graph() -> dict[str, set[str]]:
    """package -> the other packages its modules import. A package's docstring-only __init__ is
    no import of it: Python runs it on the way to any submodule."""
    graph: dict[str, set[str]] = {}
    for path in project_modules():
        importer = package_of(module_name(path))
        graph.setdefault(importer, set())
        for imported in direct_imports(path):
            file = module_file(imported)
            if file is None or (file.name == "__init__.py" and not has_code(file)):
                continue
            if package_of(imported) != importer:
                graph[importer].add(package_of(imported))
    return graph


def test_no_two_packages_import_each_other():
    """A cycle (steps/stage/cli.py importing steps/tracking, which imports steps/stage) means
    neither package can be understood, tested or moved without the other."""
    graph = package_graph()
    assert {"steps.stage", "steps.tracking", "steps.entry", "steps.train"} <= set(graph)
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as cycle:
        pytest.fail(f"import cycle between packages: {' -> '.join(cycle.args[1])}")


def test_the_contract_imports_nothing():
    """Importing the shared names loads none of the model's code (steps.measure.scoring's
    load_model relies on it) and needs no third-party package."""
    tree = ast.parse((REPO_ROOT / "pyfunc" / "contract.py").read_text())
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert imports == []


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


def steps_files() -> list:
    return sorted(STEPS.rglob("*.py"))


def cli_runners() -> set[str]:
    """The modules defining the `main(section, argv, command, ...)` every entry point calls (the
    library that prints a stage's error line), wherever it lives."""
    found = set()
    for path in steps_files():
        mains = [
            node
            for node in ast.parse(path.read_text()).body
            if isinstance(node, ast.FunctionDef) and node.name == "main"
        ]
        if any([a.arg for a in node.args.args[:3]] == RUNNER_ARGUMENTS for node in mains):
            found.add(module_name(path))
    return found


def speaking(source: str) -> list[str]:
    """Where code prints or writes to the process's stdout or stderr, as `line N: call`.

    A progress bar handed `file=sys.stderr` (tqdm) is not counted: it reports progress, and
    turns itself off where stderr is not a terminal.
    """
    tree = ast.parse(source)
    modules: dict[str, str] = {}  # local name -> module, for `import sys as s`
    names: dict[str, str] = {}  # local name -> what it is: a stream or a printer
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {a.asname or a.name: a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module in ("sys", "pprint", "builtins"):
            for alias in node.names:
                if alias.name in STREAMS or PRINTERS.get(alias.name) == node.module:
                    names[alias.asname or alias.name] = alias.name

    def is_module(expr: ast.expr, module: str) -> bool:
        return isinstance(expr, ast.Name) and modules.get(expr.id) == module

    def is_stream(expr: ast.expr) -> bool:
        if isinstance(expr, ast.Attribute) and expr.attr == "buffer":
            expr = expr.value
        if isinstance(expr, ast.Name):
            return names.get(expr.id) in STREAMS
        return (
            isinstance(expr, ast.Attribute)
            and expr.attr in STREAMS
            and is_module(expr.value, "sys")
        )

    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func, args = node.func, node.args
        if isinstance(func, ast.Name):
            loud = func.id == "print" or names.get(func.id) in PRINTERS
        elif isinstance(func, ast.Attribute):
            loud = (
                (func.attr in STREAM_WRITES and is_stream(func.value))
                or (func.attr in PRINTERS and is_module(func.value, PRINTERS[func.attr]))
                or (func.attr in TRACEBACK_PRINTS and is_module(func.value, "traceback"))
                or (
                    func.attr == "write" and is_module(func.value, "os") and bool(args)
                    and isinstance(args[0], ast.Constant) and args[0].value in (1, 2)
                )
            )  # fmt: skip
        else:
            loud = False
        if loud:
            found.append((node.lineno, f"line {node.lineno}: {ast.unparse(func)}()"))
    return [said for _, said in sorted(found)]


SPEAKING = {
    "print": "print('done')",
    "print to stderr, in a method": (
        "import sys\nclass A:\n    def f(self):\n        print(1, file=sys.stderr)"
    ),
    "sys.stdout.write": "import sys\nsys.stdout.write('x')",
    "sys.stderr.writelines": "import sys\nsys.stderr.writelines(['x'])",
    "sys under another name": "import sys as system\nsystem.stderr.write('x')",
    "the binary buffer": "import sys\nsys.stdout.buffer.write(b'x')",
    "a stream imported from sys": "from sys import stderr as err\nerr.write('x')",
    "the original stream": "import sys\nsys.__stdout__.write('x')",
    "pprint": "import pprint\npprint.pprint({})",
    "pprint imported": "from pprint import pp\npp({})",
    "a traceback": "import traceback\ntraceback.print_exc()",
    "os.write to stderr": "import os\nos.write(2, b'x')",
}
SILENT = {
    "a log line": "import logging\nlogging.getLogger(__name__).warning('x')",
    "a progress bar on stderr": "import sys\nfrom tqdm import tqdm\ntqdm(total=3, file=sys.stderr)",
    "a file": "with open('f', 'w') as f:\n    f.write('x')",
    "a method named print": "plan.print()",
    "os.write to a file descriptor": "import os\nos.write(fd, b'x')",
    "a traceback as text": "import traceback\ntraceback.format_exc()",
}


@pytest.mark.parametrize("source", SPEAKING.values(), ids=SPEAKING)
def test_speaking_finds_each_way_of_writing_to_the_terminal(source):
    assert len(speaking(source)) == 1


@pytest.mark.parametrize("source", SILENT.values(), ids=SILENT)
def test_speaking_leaves_logging_progress_and_files_alone(source):
    assert speaking(source) == []


def test_libraries_return_entry_points_speak():
    """Only entry points and the CLI runner they share print or write to stdout/stderr."""
    runners = cli_runners()
    assert len(runners) == 1, f"one module defines main(section, argv, command): {runners}"
    wrong = {}
    for path in steps_files():
        module = module_name(path)
        if is_entry_point(module) or module in runners:
            continue
        if found := speaking(path.read_text()):
            wrong[module] = found
    assert wrong == {}


def test_no_module_under_steps_is_over_the_line_limit():
    lengths = {
        str(p.relative_to(REPO_ROOT)): len(p.read_text().splitlines()) for p in steps_files()
    }
    over = {path: n for path, n in lengths.items() if n > MAX_LINES}
    assert over == {}, f"split them (max {MAX_LINES})"


MIRRORED = ("steps", "pyfunc")


def code_names(folder: Path) -> set[str]:
    """The modules and packages directly in a code folder, by name."""
    if not folder.is_dir():
        return set()
    return {p.stem for p in folder.glob("*.py") if p.stem != "__init__"} | {
        p.name for p in folder.iterdir() if (p / "__init__.py").is_file()
    }


def unmirrored(tests_root: Path, code_root: Path) -> list[str]:
    """The test modules under tests_root/<top> (for each mirrored top) whose name is not
    test_<name> or test_<name>_<what>, <name> a module or package beside the code they test."""
    wrong = []
    for top in MIRRORED:
        for test in sorted((tests_root / top).rglob("test_*.py")):
            folder = code_root / test.parent.relative_to(tests_root)
            subject = test.stem.removeprefix("test_")
            names = code_names(folder)
            if not any(subject == n or subject.startswith(f"{n}_") for n in names):
                wrong.append(
                    f"{test.relative_to(tests_root.parent)}: no module or package"
                    f" {folder.relative_to(code_root)}/{subject.split('_')[0]}..."
                )
    return wrong


def test_tests_mirror_the_code():
    assert unmirrored(REPO_ROOT / "tests", REPO_ROOT) == []


@pytest.mark.parametrize(
    ("test_path", "ok"),
    [
        ("tests/steps/data/sources/test_s3.py", True),
        ("tests/steps/data/sources/test_s3_listing.py", True),  # a part of s3.py's tests
        ("tests/steps/data/test_sources_table.py", True),  # the package steps/data/sources
        ("tests/steps/test_train.py", True),  # an entry point
        ("tests/pyfunc/test_state.py", True),
        ("tests/steps/test_s3.py", False),  # not beside the code
        ("tests/steps/data/test_s3.py", False),
        ("tests/pyfunc/test_stat.py", False),
        ("tests/steps/nowhere/test_train.py", False),  # no such package
    ],
)
def test_a_test_beside_no_code_is_found(tmp_path, test_path, ok):
    for module in (
        "steps/train.py",
        "steps/data/__init__.py",
        "steps/data/sources/__init__.py",
        "steps/data/sources/s3.py",
        "pyfunc/state.py",
    ):
        (tmp_path / module).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / module).touch()
    (tmp_path / test_path).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / test_path).touch()
    found = unmirrored(tmp_path / "tests", tmp_path)
    if ok:
        assert found == []
    else:
        assert len(found) == 1 and found[0].startswith(f"{test_path}: no module or package")
