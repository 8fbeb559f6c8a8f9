"""The distribution's shape: one `ragwall` namespace, and imports that only point down.

Rules (each enforced by a test below):

- **Imports point down** the layers listed next, and **the full import graph has no cycle**:
  module-level, in-function and type-checking imports all count (importing a submodule does not
  count as importing its parent package's ``__init__``).
- **An in-function import exists only to defer a heavy dependency, and says so**: a comment
  with ``deferred`` on its line or above its block of imports (``# deferred: onnxruntime``).
- **Front doors** (``ragwall.api``) import the service layer only as ``ragwall.service`` and
  touch a ``Service`` only through its public methods and ``settings``.
- **Service modules stay small**: at most ``MAX_SERVICE_LINES`` lines each.

Layers, bottom to top (a module may import its own layer and the ones below):

- base: ``ragwall.settings``, ``ragwall.errors``, ``ragwall.payload``;
- infra: ``ragwall.embed``, ``ragwall.onnx_runtime``, ``ragwall.datasets``,
  ``ragwall.telemetry`` (metrics, logs and traces, which every layer above records into);
- core: ``ragwall.ingest``, ``ragwall.retrieval``, ``ragwall.defend``, ``ragwall.rerank``, with
  one direction among them: ingest may use retrieval and defend, retrieval may use defend,
  rerank may use retrieval; defend uses none of them (its trainers excepted: they read
  documents through the ingest parser);
- measures: ``ragwall.eval.metrics`` and ``ragwall.eval.drift`` (pure measurement: they may use
  each other and the core, and the service uses them to gate reindexes);
- ``ragwall.service``;
- ``ragwall.eval`` (the evals that run the service on scratch indexes; never the web app);
- ``ragwall.api`` (the front doors: routes and CLI).
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "ragwall": ROOT / "ragwall",
    "ragwall.ingest": ROOT / "ingest",
    "ragwall.retrieval": ROOT / "retrieval",
    "ragwall.rerank": ROOT / "rerank",
    "ragwall.defend": ROOT / "defend",
    "ragwall.eval": ROOT / "eval",
    "ragwall.api": ROOT / "api",
    "ragwall.service": ROOT / "service",
}
MAX_SERVICE_LINES = 400
LAYER = {
    "ragwall.settings": 0,
    "ragwall.errors": 0,
    "ragwall.payload": 0,
    "ragwall.durations": 1,
    "ragwall.embed": 1,
    "ragwall.onnx_runtime": 1,
    "ragwall.datasets": 1,
    "ragwall.telemetry": 1,
    "ragwall.ingest": 2,
    "ragwall.retrieval": 2,
    "ragwall.defend": 2,
    "ragwall.rerank": 2,
    "ragwall.eval.metrics": 2.5,
    "ragwall.eval.drift": 2.5,
    "ragwall.service": 3,
    "ragwall.eval": 4,
    "ragwall.api": 5,
}
#: Within the core layer, who may import whom.
CORE_USES = {
    "ragwall.ingest": {"ragwall.retrieval", "ragwall.defend"},
    "ragwall.retrieval": {"ragwall.defend"},
    "ragwall.rerank": {"ragwall.retrieval"},
    "ragwall.defend": set(),
}
TRAINERS = {"ragwall.defend.trainer", "ragwall.defend.data", "ragwall.rerank.train"}
MEASURES = {"ragwall.eval.metrics", "ragwall.eval.drift"}


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("").parts
            if (
                package == "ragwall"
                and rel
                and rel[0] in {p.split(".")[1] for p in FOLDERS if "." in p}
            ):
                continue
            parts = [p for p in rel if p != "__init__"]
            found[".".join([package, *parts])] = path
    return found


def _part(module: str) -> str:
    """The layered unit a module belongs to (``ragwall.ingest.pipeline`` → ``ragwall.ingest``)."""
    for unit in sorted(LAYER, key=len, reverse=True):
        if module == unit or module.startswith(unit + "."):
            return unit
    return module


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return {m for m in out if m == "ragwall" or m.startswith("ragwall.")}


def _all_imports(path: Path, modules: set[str]) -> set[str]:
    """Every ragwall module ``path`` imports, wherever the import stands; ``from P import m``
    counts as importing ``P.m`` when that is a module, else ``P``."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in modules else node.module)
    return {m for m in out if m in modules}


def test_the_import_graph_has_no_cycle():
    modules = _modules()
    names = set(modules)
    graph = {m: _all_imports(p, names) - {m} for m, p in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def _deferred(lines: list[str], lineno: int) -> bool:
    """Whether the import at ``lineno`` (1-based) says it defers: ``deferred`` in a comment on
    its line or on a comment line above its block of imports."""
    if "defer" in lines[lineno - 1].lower():
        return True
    n = lineno - 2
    while n >= 0:
        text = lines[n].strip()
        if text.startswith("#"):
            if "defer" in text.lower():
                return True
        elif text and not text.startswith(("from ", "import ", ")")) and not text.endswith(","):
            return False
        n -= 1
    return False


def test_in_function_imports_of_ragwall_modules_say_they_defer():
    problems = []
    for path in _modules().values():
        lines = path.read_text().splitlines()
        for fn in ast.walk(ast.parse("\n".join(lines), str(path))):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    targets = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    targets = [node.module]
                else:
                    continue
                if any(t.startswith("ragwall") for t in targets) and not _deferred(
                    lines, node.lineno
                ):
                    problems.append(f"{path.relative_to(ROOT)}:{node.lineno} {targets[0]}")
    assert not problems, (
        "in-function imports must defer a heavy dependency and say so (# deferred: ...); "
        "else import at module level:\n" + "\n".join(problems)
    )


def _service_api() -> set[str]:
    tree = ast.parse((ROOT / "service" / "facade.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Service")
    methods = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
    return {m for m in methods if not m.startswith("_")} | {"settings"}


def _is_service(node: ast.expr) -> bool:
    """``svc``, ``service``, ``x.service`` (``app.state.service``) or ``_svc(request)``."""
    if isinstance(node, ast.Name):
        return node.id in ("svc", "service")
    if isinstance(node, ast.Attribute):
        return node.attr == "service"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return node.func.id in ("_svc", "svc", "service", "_service")
    return False


def test_front_doors_use_only_the_service_facade():
    public = _service_api()
    problems = []
    for module, path in _modules().items():
        if not module.startswith("ragwall.api"):
            continue
        for target in _imports(path):
            if target.startswith("ragwall.service."):
                problems.append(f"{module} imports {target}: import from ragwall.service")
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Attribute)
                and _is_service(node.value)
                and node.attr not in public
            ):
                problems.append(f"{path.relative_to(ROOT)}:{node.lineno} uses .{node.attr}")
    assert not problems, "\n".join(problems)


def test_service_modules_stay_small():
    long = {
        p.name: n
        for p in (ROOT / "service").glob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_SERVICE_LINES
    }
    assert not long, f"service modules over {MAX_SERVICE_LINES} lines: {long}"


def test_no_module_imports_a_layer_above_it():
    problems = []
    for module, path in _modules().items():
        if module == "ragwall":  # the package root re-exports lazily, by name
            continue
        me = _part(module)
        for target in _imports(path):
            them = _part(target)
            if them == me or target == "ragwall":
                if target == "ragwall":
                    problems.append(f"{module} imports the package root")
                continue
            if LAYER[them] > LAYER[me]:
                problems.append(
                    f"{module} (layer {LAYER[me]}) imports {target} (layer {LAYER[them]})"
                )
            elif LAYER[them] == LAYER[me] == 2:
                allowed = CORE_USES[me] | ({"ragwall.ingest"} if module in TRAINERS else set())
                if them not in allowed:
                    problems.append(f"{module} imports {target}: {me} may use {sorted(allowed)}")
            elif LAYER[them] == LAYER[me] and me != them and not {me, them} <= MEASURES:
                problems.append(f"{module} imports its sibling {target}")
    assert not problems, "\n".join(problems)


def test_nothing_imports_top_level_names_outside_the_namespace():
    old = {"api", "defend", "eval", "ingest", "rerank", "retrieval"}
    files = [*_modules().values(), *ROOT.glob("bench/*.py"), *ROOT.glob("tests/**/*.py")]
    problems = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            problems += [f"{path}: {n}" for n in names if n.split(".")[0] in old]
    assert not problems, "\n".join(problems)


def test_bench_and_eval_use_the_service_not_the_web_app():
    for path in [*ROOT.glob("bench/*.py"), *(ROOT / "eval").glob("*.py")]:
        assert not any(m.startswith("ragwall.api") for m in _imports(path)), path


def test_the_public_api_resolves_every_name():
    import ragwall

    for name in ragwall.__all__:
        assert getattr(ragwall, name) is not None
    with pytest.raises(AttributeError):
        ragwall.no_such_name  # noqa: B018


@pytest.mark.slow
def test_the_wheel_installs_only_the_ragwall_package(tmp_path):
    """Build the wheel from a copy of the tree; its one top-level package is `ragwall`."""
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns(".venv", ".git", "data", "*.egg-info", "__pycache__", "build")
    shutil.copytree(ROOT, src, ignore=ignore)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    (wheel,) = (tmp_path / "dist").glob("ragwall-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"ragwall"}, tops
    for expected in (
        "ragwall/api/cli/__init__.py",
        "ragwall/ingest/pipeline.py",
        "ragwall/retrieval/search.py",
        "ragwall/service/facade.py",
        "ragwall/defend/models/injection-minilm/model.onnx",
        "ragwall/defend/models/injection-minilm/card.json",
    ):
        assert expected in names, expected
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "ragwall = ragwall.api.cli:app" in zipfile.ZipFile(wheel).read(entry).decode()
