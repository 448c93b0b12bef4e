"""The architecture of docs/architecture.md, checked by parsing the code (``ast``; nothing is imported).

Every ``.py`` file under ``modelstore/`` is parsed and its import statements resolved (relative imports
included; ``from package import name`` counts as importing ``package.name`` when that is a module).

* **Layering.** A module imports only from its own layer or a lower one. The ranks are those of
  docs/architecture.md (:data:`RANKS`): the first name under ``modelstore`` decides a module's layer;
  the package's own ``__init__`` and ``__main__`` are the doors' layer. Every import statement counts,
  at module level or inside a function, and **imports under** ``if TYPE_CHECKING:`` **count too**: a
  type is a dependency, and a lower layer that needs to talk about an upper one declares a Protocol of
  its own. The one exception is :data:`ALLOWED_UPWARD`: the ``modelstore bench`` command imports the
  benchmark (layer 9) inside the function that runs it, as docs/architecture.md says, so that nothing
  else loads it; the same import at module level is reported.
* **No import cycle** among modelstore modules, in the graph of *module-level* imports (everything
  executed when the module is imported: top level, ``if``/``try`` blocks, class bodies, and
  ``TYPE_CHECKING`` blocks, which the issue counted; not function bodies). An edge goes to the module
  the statement names; the implicit import of a parent package is not an edge (every
  ``from modelstore.planner.costs import …`` would otherwise tie ``planner.costs`` to
  ``planner/__init__``).
* **Branches on a family's name** outside ``stats/``, ``models/`` and ``families/``: ``==``, ``!=``,
  ``in``, ``not in`` comparisons with a string constant that is a family kind (the keys of
  :data:`modelstore.families.FAMILIES`), or a tuple/list/set display holding one. At most
  :data:`MAX_FAMILY_BRANCHES` (issue 13; 71 before the refactor).
* **No private imports** from other packages: ``import x._y``, ``from x._y import …`` and
  ``from x import _y`` are refused unless ``x`` is modelstore itself (dunder names such as
  ``__future__`` are not private).
* ``import modelstore`` **loads neither matplotlib nor modelstore.benchmark** (checked in a fresh
  interpreter, since that is about what actually runs).

Each checker is a plain function of source text (or a graph), and ``test_checker_*`` feeds each one a
synthetic violation, so that a checker that silently finds nothing fails too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import pytest

from modelstore.families import FAMILIES

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "modelstore"

#: the layer of each name directly under modelstore/ (docs/architecture.md)
RANKS: dict[str, int] = {
    "errors": 0, "server": 0, "connection": 0, "extension": 0,
    "stats": 1, "models": 1, "families": 1,
    "request": 2,
    "catalog": 3,
    "planner": 4,
    "execution": 5,
    "language": 6, "deploy": 6,
    "store": 7,
    "doors": 8, "__init__": 8, "__main__": 8,
    "benchmark": 9,
}

#: (importer, imported) → why: upward imports allowed *inside a function* only
ALLOWED_UPWARD: dict[tuple[str, str], str] = {
    ("modelstore.doors.cli", "modelstore.benchmark"):
        "the `modelstore bench` command loads the benchmark when it runs (docs/architecture.md)",
}

#: where a family's name may be compared: the families' own code
FAMILY_HOMES = ("stats", "models", "families")
MAX_FAMILY_BRANCHES = 15

#: what `import modelstore` must not load (modules and their submodules)
NOT_ON_IMPORT = ("matplotlib", "modelstore.benchmark")


# -- parsing ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Import:
    module: str  #: the importing module
    path: str  #: its file, relative to the repository (for messages)
    line: int
    target: str  #: the module imported (absolute; a submodule when ``from pkg import submodule``)
    names: tuple[str, ...]  #: for ``from x import a, b``: ("a", "b"); () for ``import x``
    level: int  #: 0 for absolute imports
    in_function: bool
    type_checking: bool


@dataclass(frozen=True)
class Source:
    module: str
    path: str
    text: str
    is_package: bool


def package_sources(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Source]:
    """Every module of ``package`` under ``root``, by dotted name."""
    out = {}
    for file in sorted((root / package).rglob("*.py")):
        rel = file.relative_to(root)
        parts = list(rel.with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        name = ".".join(parts)
        out[name] = Source(name, rel.as_posix(), file.read_text(encoding="utf-8"), is_package)
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(source: Source, known: set[str] = frozenset()) -> list[Import]:
    """The import statements of ``source``, resolved; ``known`` (dotted names of modules) turns
    ``from pkg import name`` into an import of ``pkg.name`` when that is a module."""
    package = source.module if source.is_package else source.module.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool, type_checking: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(source.module, source.path, node.lineno, alias.name, (), 0, in_function,
                                    type_checking))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = tuple(a.name for a in node.names)
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in known]
            for t in submodules or [target]:
                found.append(Import(source.module, source.path, node.lineno, t, names, node.level, in_function,
                                    type_checking))
            if submodules and len(submodules) < len(names):  # names that are not modules come from target
                found.append(Import(source.module, source.path, node.lineno, target, names, node.level,
                                    in_function, type_checking))
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, in_function, True)
            for child in node.orelse:
                visit(child, in_function, type_checking)
            return
        inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inner, type_checking)

    visit(ast.parse(source.text, filename=source.path), False, False)
    return found


def _ours(target: str) -> bool:
    return target == PACKAGE or target.startswith(PACKAGE + ".")


# -- the checkers -------------------------------------------------------------------------------------

def rank_of(module: str) -> int | None:
    """The layer of a modelstore module (None: a name docs/architecture.md does not place)."""
    parts = module.split(".")
    return RANKS.get(parts[1] if len(parts) > 1 else "__init__")


def in_family_home(module: str) -> bool:
    parts = module.split(".")
    return len(parts) > 1 and parts[1] in FAMILY_HOMES


def layering_violations(sources: dict[str, Source]) -> list[str]:
    """``path:line imports target (layer a → b)`` for every import of a higher layer."""
    known = set(sources)
    out = []
    for source in sources.values():
        own = rank_of(source.module)
        if own is None:
            out.append(f"{source.path}: {source.module} has no layer in docs/architecture.md (RANKS)")
            continue
        for imp in imports_of(source, known):
            if not _ours(imp.target):
                continue
            rank = rank_of(imp.target)
            if rank is None:
                out.append(f"{imp.path}:{imp.line} imports {imp.target} (layer {own} → unplaced)")
            elif rank > own:
                allowed = any(imp.module == a and (imp.target == b or imp.target.startswith(b + "."))
                              for a, b in ALLOWED_UPWARD)
                if not (allowed and imp.in_function):
                    out.append(f"{imp.path}:{imp.line} imports {imp.target} (layer {own} → {rank})")
    return out


def import_graph(sources: dict[str, Source]) -> nx.DiGraph:
    """Modules → the modelstore modules they import when imported (module-level statements)."""
    known = set(sources)
    graph = nx.DiGraph()
    graph.add_nodes_from(known)
    for source in sources.values():
        for imp in imports_of(source, known):
            if _ours(imp.target) and not imp.in_function and imp.target != source.module:
                graph.add_edge(source.module, imp.target, line=f"{imp.path}:{imp.line}")
    return graph


def import_cycles(graph: nx.DiGraph) -> list[str]:
    """One cycle per strongly connected component of more than one module, as ``a → b → … → a``
    with the line of each import."""
    out = []
    for component in nx.strongly_connected_components(graph):
        if len(component) < 2:
            continue
        cycle = next(nx.simple_cycles(graph.subgraph(component)))
        steps = [f"{a} ({graph.edges[a, b].get('line', '?')})"
                 for a, b in zip(cycle, cycle[1:] + cycle[:1])]
        out.append(" → ".join(steps + [cycle[0]]) + f"   [{len(component)} modules tied: {sorted(component)}]")
    return sorted(out)


def family_branches(source: Source, kinds: set[str]) -> list[str]:
    """``path:line: code`` for each comparison of a value with a family kind (``==``, ``!=``, ``in``,
    ``not in``; the kind a string constant, or one in a tuple/list/set display)."""

    def names_a_family(node: ast.expr) -> bool:
        if isinstance(node, ast.Constant):
            return isinstance(node.value, str) and node.value in kinds
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return any(isinstance(e, ast.Constant) and isinstance(e.value, str) and e.value in kinds for e in node.elts)
        return False

    out = []
    for node in ast.walk(ast.parse(source.text, filename=source.path)):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        if any(isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn))
               and (names_a_family(operands[i]) or names_a_family(operands[i + 1]))
               for i, op in enumerate(node.ops)):
            out.append(f"{source.path}:{node.lineno}: {ast.unparse(node)}")
    return out


def private_imports(source: Source) -> list[str]:
    """``path:line: …`` for each import of another package's private (underscore) module or name."""

    def private(name: str) -> bool:
        return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))

    out = []
    for imp in imports_of(source):
        if imp.level or _ours(imp.target):
            continue
        parts = imp.target.split(".")
        bad = [p for p in parts[1:] if private(p)] + [n for n in imp.names if private(n)]
        if bad:
            what = f"from {imp.target} import {', '.join(imp.names)}" if imp.names else f"import {imp.target}"
            out.append(f"{imp.path}:{imp.line}: {what} (private: {', '.join(bad)})")
    return out


def loaded_on_import(statement: str, forbidden: tuple[str, ...]) -> list[str]:
    """The modules among ``forbidden`` (or their submodules) that running ``statement`` in a fresh
    interpreter loads."""
    code = "import sys\n" + statement + "\nprint(repr(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    loaded = ast.literal_eval(proc.stdout.splitlines()[-1])
    return [m for m in loaded if any(m == f or m.startswith(f + ".") for f in forbidden)]


# -- the checks on modelstore -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sources() -> dict[str, Source]:
    found = package_sources()
    assert "modelstore.store" in found and len(found) > 40  # the walk found the package
    return found


def test_each_module_imports_only_its_own_layer_or_lower_ones(sources):
    bad = layering_violations(sources)
    assert not bad, "imports of a higher layer (docs/architecture.md):\n" + "\n".join(bad)


def test_no_import_cycle(sources):
    cycles = import_cycles(import_graph(sources))
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_family_name_branches_stay_few(sources):
    kinds = set(FAMILIES)
    found = [b for name, source in sources.items() if not in_family_home(name)
             for b in family_branches(source, kinds)]
    assert len(found) <= MAX_FAMILY_BRANCHES, (
        f"{len(found)} branches on a family's name (at most {MAX_FAMILY_BRANCHES}); ask the family instead "
        "(docs/architecture.md, Model families):\n" + "\n".join(found))


def test_no_private_imports_of_other_packages(sources):
    bad = [p for source in sources.values() for p in private_imports(source)]
    assert not bad, "imports of another package's private modules or names:\n" + "\n".join(bad)


def test_import_modelstore_loads_neither_matplotlib_nor_the_benchmark():
    loaded = loaded_on_import("import modelstore", NOT_ON_IMPORT)
    assert not loaded, f"`import modelstore` loads {loaded[:10]}{' …' if len(loaded) > 10 else ''}"


# -- each checker finds what it is meant to find -------------------------------------------------------

def _synthetic(**modules: str) -> dict[str, Source]:
    """Sources from ``name="text"`` (``__`` stands for ``.`` in names; a trailing ``__init`` marks a package)."""
    out = {}
    for key, text in modules.items():
        name = key.replace("__", ".")
        is_package = name.endswith(".init")
        name = name.removesuffix(".init")
        path = name.replace(".", "/") + ("/__init__.py" if is_package else ".py")
        out[name] = Source(name, path, text, is_package)
    return out


def test_checker_resolves_relative_and_submodule_imports():
    mods = _synthetic(modelstore__planner__init="", modelstore__planner__graph="",
                      modelstore__planner__costs="from . import graph\nfrom .. import errors\nfrom .graph import x\n",
                      modelstore__errors="")
    imps = imports_of(mods["modelstore.planner.costs"], set(mods))
    assert [(i.line, i.target) for i in imps] == [(1, "modelstore.planner.graph"), (2, "modelstore.errors"),
                                                 (3, "modelstore.planner.graph")]


def test_checker_reports_an_upward_import_even_inside_a_function_or_type_checking():
    mods = _synthetic(
        modelstore__stats__linear="import numpy\nfrom modelstore.errors import InputError\n",
        modelstore__catalog__records="def f():\n    from modelstore.store import Store\n",
        modelstore__request__source=("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                     "    from ..planner.plan import Plan\n"),
        modelstore__doors__cli="import modelstore.benchmark\ndef bench():\n    from modelstore import benchmark\n",
        modelstore__benchmark__init="",
        modelstore__errors="",
    )
    assert layering_violations(mods) == [
        "modelstore/catalog/records.py:2 imports modelstore.store (layer 3 → 7)",
        "modelstore/request/source.py:3 imports modelstore.planner.plan (layer 2 → 4)",
        "modelstore/doors/cli.py:1 imports modelstore.benchmark (layer 8 → 9)",  # the allowance is for a function
    ]


def test_checker_reports_a_module_of_no_layer():
    mods = _synthetic(modelstore__http__app="")
    assert layering_violations(mods) == ["modelstore/http/app.py: modelstore.http.app has no layer in "
                                         "docs/architecture.md (RANKS)"]


def test_checker_reports_an_import_cycle_but_not_a_function_level_import():
    mods = _synthetic(
        modelstore__execution__executor="from modelstore.catalog import index\n",
        modelstore__catalog__init="",
        modelstore__catalog__index="import modelstore.planner.costs\n",
        modelstore__planner__costs=("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                    "    from modelstore.execution.executor import execute\n"),
        modelstore__planner__graph="def f():\n    import modelstore.planner.rowcount\n",
        modelstore__planner__rowcount="import modelstore.planner.graph\n",
    )
    cycles = import_cycles(import_graph(mods))
    assert len(cycles) == 1, cycles
    assert "modelstore.catalog.index (modelstore/catalog/index.py:1)" in cycles[0]
    assert "modelstore.planner.costs (modelstore/planner/costs.py:3)" in cycles[0]
    assert "rowcount" not in cycles[0]
    assert import_cycles(nx.DiGraph([("a", "b"), ("b", "c")])) == []


def test_checker_counts_family_name_branches():
    (src,) = _synthetic(modelstore__store__store="""
if kind == "linear": pass
if "logistic" != d.kind: pass
if kind in ("gaussian_nb", "other"): pass
if kind not in ["multinomial_nb"]: pass
if 0 < x == "linear": pass
if kind == "linearity" or kind in {"a", "b"} or kind is "linear": pass
if kind == LINEAR: pass
""").values()
    found = family_branches(src, set(FAMILIES))
    assert [f.split(":")[1] for f in found] == ["2", "3", "4", "5", "6"], found
    assert in_family_home("modelstore.stats.linear") and in_family_home("modelstore.families")
    assert not in_family_home("modelstore.store.store") and not in_family_home("modelstore")


def test_checker_reports_private_imports_of_other_packages_only():
    (src,) = _synthetic(modelstore__doors__plpython="""
from __future__ import annotations
from psycopg._queries import PostgresClientQuery
import psycopg._encodings
from psycopg import _tz
from psycopg import sql
from modelstore.stats._sql import aggregate
from . import _private
import modelstore.stats._sql
""").values()
    assert private_imports(src) == [
        "modelstore/doors/plpython.py:3: from psycopg._queries import PostgresClientQuery (private: _queries)",
        "modelstore/doors/plpython.py:4: import psycopg._encodings (private: _encodings)",
        "modelstore/doors/plpython.py:5: from psycopg import _tz (private: _tz)",
    ]


def test_checker_sees_what_an_import_loads():
    assert loaded_on_import("import csv", ("csv",)) == ["csv"]
    assert loaded_on_import("pass", ("csv",)) == []
