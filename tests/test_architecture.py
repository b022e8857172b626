"""The shape of the code, kept true by tests: layers one way down (the import-linter contracts
in .importlinter), no import cycle (imports inside functions count), no module importing
another's private names, no source file over 400 lines, no function over 80 lines outside bench/,
and a README whose map names every package and module of the core before any benchmark table."""

from __future__ import annotations

import ast
import configparser
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("latentmas_ray", "actors", "jobs")
MAX_LINES = 400
MAX_FUNCTION_LINES = 80   # decorators, signature, docstring and body; bench/ scripts are exempt


# ----- the checks (plain functions, so the tests below can show they catch a planted fault) ---

def import_graph(root: Path, packages=PACKAGES) -> dict[str, set[str]]:
    """module -> project modules it imports anywhere in its file (functions included)."""
    files = {}
    for pkg in packages:
        for f in (root / pkg).rglob("*.py"):
            mod = ".".join(f.relative_to(root).with_suffix("").parts)
            files[mod.removesuffix(".__init__")] = f
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, f in files.items():
        is_pkg = f.name == "__init__.py"
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):   # `from pkg import sub` imports pkg.sub
                base = _absolute(mod, is_pkg, node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base
                           for a in node.names]
            for t in targets:
                while t and t not in files:            # `from pkg import name` -> pkg
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    graph[mod].add(t)
    return graph


def _absolute(mod: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    parts = mod.split(".") if is_pkg else mod.split(".")[:-1]
    parts = parts[:len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def private_imports(root: Path, packages=PACKAGES) -> list[str]:
    """`from other_module import _name` and `other_module._name` across project modules
    (a module's own names, dunders and a package's own submodules aside)."""
    found = []
    for pkg in packages:
        for f in (root / pkg).rglob("*.py"):
            mod = ".".join(f.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
            tree = ast.parse(f.read_text(), str(f))
            aliases: dict[str, str] = {}                 # local name -> project module
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom):
                    base = _absolute(mod, f.name == "__init__.py", node)
                    if base.split(".")[0] not in packages:
                        continue
                    for a in node.names:
                        if _private(a.name) and f"{base}.{a.name}" not in _modules(root, packages):
                            found.append(f"{f.relative_to(root)}:{node.lineno}: from {base} import {a.name}")
                        aliases[a.asname or a.name] = f"{base}.{a.name}"
                elif isinstance(node, ast.Import):
                    for a in node.names:            # `import a.b as x` binds a.b, `import a.b` binds a
                        if a.name.split(".")[0] in packages:
                            local = a.asname or a.name.split(".")[0]
                            aliases[local] = a.name if a.asname else local
            for node in ast.walk(tree):
                if (isinstance(node, ast.Attribute) and _private(node.attr)
                        and isinstance(node.value, ast.Name) and node.value.id in aliases
                        and aliases[node.value.id] in _modules(root, packages)
                        and aliases[node.value.id] != mod):
                    found.append(f"{f.relative_to(root)}:{node.lineno}: {node.value.id}.{node.attr}")
    return found


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _modules(root: Path, packages) -> set[str]:
    return set(import_graph(root, packages))


def long_files(root: Path, folders=PACKAGES + ("bench", "cluster", "scripts")) -> list[str]:
    return [f"{f.relative_to(root)}: {n} lines" for folder in folders
            for f in sorted((root / folder).rglob("*.py"))
            if (n := len(f.read_text().splitlines())) > MAX_LINES]


def long_functions(root: Path, folders=PACKAGES + ("cluster", "scripts", "tests")) -> list[str]:
    """Every function or method (nested ones too) longer than MAX_FUNCTION_LINES, counted from
    its first decorator to its last line."""
    found = []
    for folder in folders:
        for f in sorted((root / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(f.read_text(), str(f))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    start = min([d.lineno for d in node.decorator_list] + [node.lineno])
                    if (n := node.end_lineno - start + 1) > MAX_FUNCTION_LINES:
                        found.append(f"{f.relative_to(root)}:{start}: {node.name} is {n} lines")
    return found


MAP_HEADING = "## The map"
MAP_WITHIN_LINES = 60      # the map starts within the README's first screen or two


def map_gaps(root: Path) -> list[str]:
    """What README.md's map leaves out: every package of the core (latentmas_ray/, its
    subpackages) and every top-level module needs a table row whose first cell is its path,
    and each package's row names each of its modules in backticks, and no module it does not
    hold (a word in backticks is a module's name). The map starts within the
    first MAP_WITHIN_LINES lines, and no table (markdown or a printed box) comes before it."""
    lines = (root / "README.md").read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(MAP_HEADING)), None)
    if start is None:
        return [f"README.md has no {MAP_HEADING!r} section"]
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    gaps = [f"README.md:{i + 1}: a table before the map" for i in range(start)
            if lines[i].lstrip().startswith("|") or "┏" in lines[i] or "┌" in lines[i]]
    if start >= MAP_WITHIN_LINES:
        gaps.append(f"README.md:{start + 1}: the map starts after line {MAP_WITHIN_LINES}")
    rows = {}                                      # first cell's path -> the whole row
    for line in lines[start:end]:
        if line.startswith("| `"):
            rows[line.split("`")[1]] = line
    core = root / "latentmas_ray"
    for init in sorted(core.rglob("__init__.py")):
        pkg = init.parent
        path = pkg.relative_to(root).as_posix()
        if pkg == core:                            # the top level: its modules have rows of their own
            gaps += [f"{path}/{f.name} has no row in the map" for f in sorted(pkg.glob("*.py"))
                     if f.stem != "__init__" and f"{path}/{f.name}" not in rows]
            continue
        row = rows.get(f"{path}/")
        if row is None:
            gaps.append(f"{path}/ has no row in the map")
            continue
        stems = {f.stem for f in pkg.glob("*.py")}
        gaps += [f"{path}/{stem}.py is not named in its package's row" for stem in sorted(stems)
                 if stem != "__init__" and f"`{stem}`" not in row]
        gaps += [f"{path}/ row names `{name}`, which is not one of its modules"
                 for name in re.findall(r"`([A-Za-z_]\w*)`", row) if name not in stems]
    return gaps


# ----- the project ----------------------------------------------------------------------------

def test_import_contracts_hold():
    """lint-imports with .importlinter: layers, the core without Ray, engines below methods."""
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.fail("lint-imports is missing: scripts/install.sh installs the test extra")
    p = subprocess.run([str(lint), "--no-logo", "--no-cache"], cwd=REPO, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert "0 broken" in p.stdout


def test_every_core_module_is_in_a_layer():
    """A new module under latentmas_ray/ must be placed in the layers contract, or the contract
    would not look at it."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO / ".importlinter")
    layered = {m.strip() for line in cfg["importlinter:contract:layers"]["layers"].splitlines()
               for m in line.replace("|", ":").split(":") if m.strip()}
    children = {f"latentmas_ray.{p.stem}" for p in (REPO / "latentmas_ray").iterdir()
                if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()}
    assert children - layered == set(), "add these to .importlinter's layers"


def test_no_import_cycles():
    assert cycles(import_graph(REPO)) == []


def test_no_private_names_imported_across_modules():
    assert private_imports(REPO) == []


def test_no_source_file_over_400_lines():
    assert long_files(REPO) == []


def test_no_function_over_80_lines_outside_bench():
    assert long_functions(REPO) == []


def test_readme_map_names_every_core_package_and_module_before_any_table():
    assert map_gaps(REPO) == []
    assert "(docs/benchmarks.md)" in (REPO / "README.md").read_text()   # the figures, linked


# ----- the checks catch what they are for -------------------------------------------------------

def _plant(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        f = tmp_path / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    return tmp_path


def test_checks_find_a_planted_cycle_and_private_import(tmp_path):
    root = _plant(tmp_path, {
        "jobs/__init__.py": "", "jobs/a.py": "def f():\n    from jobs import b\n",
        "jobs/b.py": "from jobs.a import f\nfrom jobs.c import _hidden\nimport jobs.c as c\nc._other\n",
        "jobs/c.py": "_hidden = 1\n_other = 2\n", "actors/__init__.py": "", "latentmas_ray/__init__.py": "",
    })
    assert cycles(import_graph(root)) == [["jobs.a", "jobs.b"]]
    found = private_imports(root)
    assert any("from jobs.c import _hidden" in f for f in found)
    assert any("c._other" in f for f in found)
    (root / "jobs" / "d.py").write_text("x = 1\n" * (MAX_LINES + 1))
    assert long_files(root, ("jobs",)) == [f"jobs/d.py: {MAX_LINES + 1} lines"]


def test_function_check_finds_a_planted_long_function(tmp_path):
    def lines(n: int, indent: str) -> str:
        return "".join(f"{indent}x{i} = {i}\n" for i in range(n))

    limit = MAX_FUNCTION_LINES
    root = _plant(tmp_path, {
        # a decorated method: decorator + def + limit - 1 lines = one over
        "jobs/a.py": "class A:\n    @staticmethod\n    def long():\n" + lines(limit - 1, " " * 8),
        "jobs/b.py": "def fits():\n" + lines(limit - 1, "    "),          # exactly the limit
        # an async function nested in another: both are counted
        "actors/c.py": "def outer():\n    async def inner():\n" + lines(limit, " " * 8)
                       + "    return inner\n",
        "bench/d.py": "def exempt():\n" + lines(2 * limit, "    "),
    })
    assert long_functions(root) == [f"actors/c.py:1: outer is {limit + 3} lines",
                                    f"actors/c.py:2: inner is {limit + 1} lines",
                                    f"jobs/a.py:2: long is {limit + 1} lines"]


def test_map_check_finds_what_the_map_leaves_out(tmp_path):
    root = _plant(tmp_path, {
        "latentmas_ray/__init__.py": "", "latentmas_ray/cli.py": "", "latentmas_ray/errors.py": "",
        "latentmas_ray/run/__init__.py": "", "latentmas_ray/run/batch.py": "",
        "latentmas_ray/run/lengths.py": "", "latentmas_ray/run/deep/__init__.py": "",
    })
    good = ["# x", "", "## The map", "", "| package | modules |", "|---|---|",
            "| `latentmas_ray/cli.py` | the command line |", "| `latentmas_ray/errors.py` | errors |",
            "| `latentmas_ray/run/` | `batch`, `lengths` |", "| `latentmas_ray/run/deep/` | none |",
            "", "## Benchmarks", "| a | b |"]
    readme = root / "README.md"
    readme.write_text("\n".join(good))
    assert map_gaps(root) == []
    readme.write_text("\n".join(good).replace("`lengths`", "lengths"))
    assert map_gaps(root) == ["latentmas_ray/run/lengths.py is not named in its package's row"]
    readme.write_text("\n".join(good).replace("`lengths`", "`lengths`, `gone`"))
    assert map_gaps(root) == ["latentmas_ray/run/ row names `gone`, which is not one of its modules"]
    readme.write_text("\n".join(good).replace("| `latentmas_ray/errors.py` | errors |\n", ""))
    assert map_gaps(root) == ["latentmas_ray/errors.py has no row in the map"]
    (root / "latentmas_ray" / "store").mkdir()
    (root / "latentmas_ray" / "store" / "__init__.py").write_text("")
    readme.write_text("\n".join(["| a | b |"] + good))
    assert map_gaps(root) == ["README.md:1: a table before the map",
                              "latentmas_ray/store/ has no row in the map"]
    readme.write_text("\n".join([""] * MAP_WITHIN_LINES + good))
    assert map_gaps(root) == [f"README.md:{MAP_WITHIN_LINES + 3}: the map starts after line "
                              f"{MAP_WITHIN_LINES}", "latentmas_ray/store/ has no row in the map"]
