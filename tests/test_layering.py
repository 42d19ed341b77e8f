"""The package's layers (docs/DESIGN.md): imports only go down, no cycle anywhere.

Every import of the package's own modules counts, function-level (lazy) ones included, read
from the source with ``ast`` (nothing is imported to check it).
"""

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cgnl_video"

# Top to bottom: a subpackage imports only subpackages of the layers below its own (two
# packages in one layer are independent of each other).
LAYERS = (
    ("benchmarks",),
    ("inference",),
    ("engine",),
    ("visualization", "data_prep"),
    ("models", "datasets"),
    ("decoding", "utils"),
    ("config",),
    ("errors", "choices"),
)


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def own_imports(path: pathlib.Path):
    """``(line, module)`` of every ``cgnl_video`` import in the file (relative ones resolved)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        yield from ((node.lineno, name) for name in names if name.split(".")[0] == "cgnl_video")


def modules():
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def import_graph():
    """Module -> the package modules it imports (``from a import b`` counts b when b is a module)."""
    known = modules()
    graph = {}
    for name, path in known.items():
        graph[name] = {(line, target) for line, target in own_imports(path) if target in known}
    return known, graph


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    for level, packages in enumerate(LAYERS):
        if top in packages:
            return level
    return -1  # cgnl_video/__init__.py sits above everything


def test_every_subpackage_has_a_layer():
    tops = {name.split(".")[1] for name in modules() if "." in name}
    assert tops <= {package for layer in LAYERS for package in layer}, tops


def test_imports_only_go_down():
    known, graph = import_graph()
    upward = [
        f"{known[name].relative_to(ROOT)}:{line}: {name} imports {target}"
        for name, targets in graph.items() if layer_of(name) >= 0
        for line, target in targets
        if name.split(".")[:2] != target.split(".")[:2] and layer_of(target) <= layer_of(name)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    _, graph = import_graph()
    edges = {name: {target for _, target in targets if target != name} for name, targets in graph.items()}
    # A package's __init__ importing its own submodules is not a cycle of the design; leave
    # those edges out so that a cycle found is between real modules.
    edges = {name: {t for t in targets if not t.startswith(name + ".")} for name, targets in edges.items()}
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "\n".join(cycles)


def test_recognizer_import_is_light():
    """``from cgnl_video import Recognizer`` loads no plotting, run lock, preflight or harness."""
    unwanted = ("matplotlib", "cgnl_video.engine.run_lock", "cgnl_video.engine.preflight",
                "cgnl_video.engine.train", "cgnl_video.engine.test")
    code = (
        "import sys\nfrom cgnl_video import Recognizer\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib' or m in {unwanted!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", f"importing Recognizer loads {out.stdout.strip()}"
