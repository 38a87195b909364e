"""The package layout shows the architecture: the core never reaches into the orchestration, and no module imports
itself back through others (imports inside functions count too: they are cycles all the same)."""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("study", "analysis", "search_spaces")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports() -> dict:
    """{module: {project modules it imports, anywhere in its body}}; `from pkg import mod` counts as pkg.mod."""
    modules = {module_name(p): p for package in PACKAGES for p in (REPO / package).rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                          for alias in node.names}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def cycles(graph: dict) -> list:
    found, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_no_import_cycles():
    assert cycles(project_imports()) == []


def test_the_finder_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_core_knows_nothing_of_the_orchestration_or_the_analysis():
    graph = project_imports()
    core = [m for m in graph if m.startswith("study") and not m.startswith(("study.search", "study.bench"))
            and m != "study.tune"]
    assert len(core) > 20  # the finder did look at the core
    reaching_out = {m: sorted(i for i in graph[m] if i.startswith(("study.search", "study.bench", "analysis")))
                    for m in core}
    assert {m: i for m, i in reaching_out.items() if i} == {}
