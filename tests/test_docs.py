"""The documentation says what the code does: the README's layout is the tree, every params.yaml
key and project path the docs name exists, every README section the docs, params.yaml and the
code cite exists, and the README stays a front door."""

from __future__ import annotations

import contextlib
import importlib
import io
import re
from pathlib import Path

import pytest
from support import REPO_ROOT, checkout_files

from steps.stage.config import Params
from steps.stage.schema import section_fields

DOCS = [
    REPO_ROOT / "README.md",
    *(p for p in checkout_files("README.md") if p.parent != REPO_ROOT),
]
CODE_DIRS = ("steps", "pyfunc", "k8s", "expectations", "tests", "bench", ".ci", ".github")
DIR_PATTERN = "|".join(map(re.escape, CODE_DIRS))
STEPS_FILES = sorted((REPO_ROOT / "steps").rglob("*.py"))
README_MAX_LINES = 285  # 260 + the reliability table the issue-22 round asked for in README


def layout_block() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("\n## Layout\n", 1)[1]
    return section.split("```", 2)[1].strip("\n").splitlines()


def test_readme_is_a_front_door():
    lines = (REPO_ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES
    head = "\n".join(lines[:45])
    assert "make run" in head and "make test" in head  # the two commands on the first screen
    for doc in ("pyfunc/README.md", "k8s/README.md", "expectations/README.md"):
        assert doc in "\n".join(lines), f"the README does not point to {doc}"


def test_readme_layout_is_the_tree():
    listed = []
    parent = None
    for line in layout_block():
        name = line.split()[0]
        if line.startswith("  "):
            assert parent is not None
            path = REPO_ROOT / parent / name
        else:
            path = REPO_ROOT / name
            parent = name
        assert path.exists(), f"README layout names {path.relative_to(REPO_ROOT)}"
        listed.append(path.relative_to(REPO_ROOT).as_posix().rstrip("/"))
    packages = [
        p.relative_to(REPO_ROOT).as_posix()
        for p in (REPO_ROOT / "steps").iterdir()
        if p.is_dir() and (p / "__init__.py").is_file()
    ]
    assert sorted(packages) == sorted(p for p in listed if p.startswith("steps/"))
    entry_points = {p.stem for p in (REPO_ROOT / "steps").glob("*.py") if p.stem != "__init__"}
    steps_line = next(line for line in layout_block() if line.startswith("steps/"))
    assert entry_points <= set(re.findall(r"\w+", steps_line)), "entry points on the steps/ line"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_params_keys_named_in_docs_exist(doc):
    sections = section_fields(Params)
    pattern = re.compile(rf"\b({'|'.join(sections)})\.([A-Za-z_]\w*)")
    text = re.sub(r"unknown key '[^']*'", "", doc.read_text())  # a quoted error, on purpose
    named = {f"{s}.{k}" for s, k in pattern.findall(text) if k not in FILE_ENDINGS}
    unknown = [
        name
        for name in sorted(named)
        if name.partition(".")[2] not in section_fields(sections[name.partition(".")[0]])
        and name not in string_literals()  # a run or registry tag the code writes (ingest.output)
    ]
    assert unknown == []


FILE_ENDINGS = ("py", "yaml", "yml", "json", "md", "txt", "csv", "png", "parquet")


def string_literals() -> set[str]:
    """Every string constant in steps/ (tag names such as deploy.live_slot)."""
    return set(re.findall(r"\"([\w.]+)\"", "\n".join(p.read_text() for p in STEPS_FILES)))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_project_paths_named_in_docs_exist(doc):
    text = doc.read_text()
    missing = []
    for path in set(re.findall(rf"(?<![\w./-])((?:{DIR_PATTERN})/[\w./*-]*[\w/*])", text)):
        if "<" in path or "*" in path:
            continue
        if not (REPO_ROOT / path).exists() and not (doc.parent / path).exists():
            missing.append(path)
    assert sorted(missing) == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_output_files_named_in_docs_are_written_by_the_code(doc):
    """`reports/...` and `data/...` names in the docs must be names the stages really write."""
    source = "\n".join(p.read_text() for p in STEPS_FILES)
    names = set()
    for path in re.findall(r"(?<![\w/])((?:reports|data|models)/[\w./{},-]+)", doc.read_text()):
        last = path.rstrip("/.,").rsplit("/", 1)[-1]
        braces = re.fullmatch(r"(.*)\{(.+)\}(.*)", last)
        options = [f"{braces[1]}{o}{braces[3]}" for o in braces[2].split(",")] if braces else [last]
        names.update(o for o in options if "." in o)
    absent = sorted(n for n in names if f'"{n}"' not in source)
    assert absent == []


def help_text(entry_point: str) -> str:
    """`python -m steps.<entry point> --help`, in process."""
    module = importlib.import_module(f"steps.{entry_point}")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        module.main(["--params", str(REPO_ROOT / "params.yaml"), "--help"])
    return out.getvalue()


COMMAND = re.compile(
    r"(?:mlflow run \S+ -e (?P<ep>\w+)|python -m steps\.(?P<module>\w+))(?P<args>[^`\n|#]*)"
)


@pytest.mark.parametrize(
    "doc", [*DOCS, REPO_ROOT / "MLproject"], ids=lambda p: p.relative_to(REPO_ROOT).as_posix()
)
def test_commands_named_in_docs_exist(doc):
    """Every `make <target>`, and every flag or `-P key=` of `mlflow run . -e <entry point>` and
    `python -m steps.<entry point>` the docs show, is one the Makefile or entry point has."""
    text = doc.read_text()
    makefile = (REPO_ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, flags=re.M))
    unknown = [f"make {t}" for t in re.findall(r"`make ([a-z][a-z-]*)", text) if t not in targets]
    helps: dict[str, str] = {}
    for match in COMMAND.finditer(text):
        entry_point = match["ep"] or match["module"]
        if entry_point not in helps:
            helps[entry_point] = help_text(entry_point)
        named = re.findall(r"-P '?([\w.]+)=", match["args"])
        named += re.findall(r"(?<![\w-])--([a-z][\w-]*)", match["args"])
        flags = {n for n in named if n not in ("env-manager", "experiment-name", "help")}
        shown = helps[entry_point]
        unknown += [
            f"{entry_point} --{flag}"
            for flag in sorted(flags)
            if f"--{flag}" not in shown and f" {flag.rpartition('.')[2]}" not in shown
        ]
    assert unknown == []


# Where README sections are cited outside the READMEs: params.yaml's comments, the code's
# docstrings and comments, the manifests' and the Makefile's comments.
CITING = [
    REPO_ROOT / "params.yaml",
    REPO_ROOT / "Makefile",
    *sorted((REPO_ROOT / "steps").rglob("*.py")),
    *sorted((REPO_ROOT / "pyfunc").rglob("*.py")),
    *sorted((REPO_ROOT / "k8s").rglob("*.yaml")),
]
# `README "Title"`, `k8s/README.md "Title"`, `(k8s/README.md, "Title")`: a section by its heading
# (a bare README is the repository's), and `path/README.md#anchor` links.
QUOTED_SECTION = re.compile(r'(?<![\w/.-])((?:[\w.-]+/)*README(?:\.md)?)[,:]?[ \t]+"([^"\n]+)"')
ANCHOR = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*README\.md)#([\w-]+)")


def headings(readme: Path) -> list[str]:
    """The headings of a markdown file, outside fenced code."""
    found, fenced = [], False
    for line in readme.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#+ ", line):
            found.append(line.lstrip("#").strip())
    return found


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def dangling_sections(path: Path) -> list[str]:
    """The README sections `path` cites that its README does not have."""
    text = path.read_text()
    wrong = []
    for cited, section in QUOTED_SECTION.findall(text):
        readme = REPO_ROOT / ("README.md" if cited == "README" else cited)
        if not readme.is_file() or section not in headings(readme):
            wrong.append(f'{cited} "{section}"')
    for cited, name in ANCHOR.findall(text):
        readme = next((p for p in (path.parent / cited, REPO_ROOT / cited) if p.is_file()), None)
        if readme is None or name not in map(anchor, headings(readme)):
            wrong.append(f"{cited}#{name}")
    return wrong


@pytest.mark.parametrize("path", CITING + DOCS, ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_readme_sections_cited_exist(path):
    assert dangling_sections(path) == []


def test_a_dangling_section_is_found(tmp_path):
    cited = tmp_path / "cited.py"
    cited.write_text(
        '# see README "Quick start" and k8s/README.md, "The serving image": both exist\n'
        '# see README "The model", k8s/README.md "Analysis" and README.md#no-such-part\n'
    )
    assert dangling_sections(cited) == [
        'README "The model"',
        'k8s/README.md "Analysis"',
        "README.md#no-such-part",
    ]
