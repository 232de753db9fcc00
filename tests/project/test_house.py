"""The house rules that ruff cannot check, as AST walks (configuration: [tool.pcapvpn.house] in
pyproject.toml, which says what may stay and why).

1. Bytes stop at ``dissect``: rules, trackers and renderers read parsed records, never packet
   bytes (no ``struct``, ``int.from_bytes``, shifts of subscripts, indexing into or slicing a
   packet buffer with a literal bound).
2. Protocol numbers are named in rules and trackers (ruff's PLR2004 scoped to protocol numbers).
3. Each number of the registries is declared once: no module assigns a name to a number that an
   enum of ``dissect.vpn`` already names.
4. ``dissect.vpn`` has no import cycle: its modules' module-level imports form a DAG (a cycle
   works only by the order of the imports, as ``ike`` <-> ``ikev1``/``ikev2`` once did).

Each check is also run on a small sample of code it must reject, so that it cannot pass by
checking nothing.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path


try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
CONFIG = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pcapvpn"]["house"]


def _files(paths):
    out = []
    for p in paths:
        p = REPO / p
        out += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    return out


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


# -- 1. bytes stop at dissect -------------------------------------------------------------------

def _int_in(node) -> bool:
    return any(isinstance(x, ast.Constant) and type(x.value) is int for x in ast.walk(node))


def byte_reads(tree, names) -> list[tuple[int, str, str]]:
    """(line, what, expression) of every byte-level read in ``tree``."""
    names = set(names)

    def buffer(n, attrs: bool) -> bool:
        if isinstance(n, ast.Name):
            return n.id in names
        return attrs and isinstance(n, ast.Attribute) and n.attr in names

    out = []
    for node in ast.walk(tree):
        what = None
        if isinstance(node, ast.Import) and any(a.name == "struct" for a in node.names):
            what = "import struct"
        elif isinstance(node, ast.ImportFrom) and node.module == "struct":
            what = "import struct"
        elif isinstance(node, ast.Attribute) and node.attr in ("from_bytes", "unpack",
                                                               "unpack_from"):
            what = node.attr
        elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.LShift, ast.RShift)) and \
                any(isinstance(x, ast.Subscript) for x in ast.walk(node)):
            what = "shift of a subscript"
        elif isinstance(node, ast.Subscript):
            if isinstance(node.slice, ast.Slice):
                if buffer(node.value, True) and _int_in(node.slice):
                    what = "slice of a buffer with a literal bound"
            elif buffer(node.value, False) and not (isinstance(node.slice, ast.Constant)
                                                    and isinstance(node.slice.value, str)):
                what = "index into a buffer"
        if what:
            out.append((node.lineno, what, ast.unparse(node)))
    return out


def test_bytes_stop_at_dissect():
    allow = CONFIG["bytes-allow"]
    whole = {a for a in allow if ":" not in a}
    exprs = {tuple(x.strip() for x in a.split(":", 1)) for a in allow if ":" in a}
    found = []
    for path in _files(CONFIG["bytes-paths"]):
        rel = _rel(path)
        if rel in whole:
            continue
        for line, what, expr in byte_reads(ast.parse(path.read_text()), CONFIG["bytes-names"]):
            if (rel, expr) not in exprs:
                found.append(f"{rel}:{line}: {what}: {expr}")
    assert not found, "packet bytes read outside dissect (parse them in dissect/vpn):\n" + \
        "\n".join(found)


def test_byte_reads_are_found():
    sample = ast.parse(
        "import struct\n"
        "spi = int.from_bytes(first[0:4], 'big')\n"
        "op, kid = data[off] >> 3, data[off] & 7\n"
        "ver = (msg[1] << 8) | msg[2]\n"
        "group = _U16.unpack_from(n.data, 0)[0]\n"
        "ok = t.data[0] and d['x'] and data[a:b]\n")  # counters, dicts, spans: not parsing
    got = [(line, what) for line, what, _e in byte_reads(sample, CONFIG["bytes-names"])]
    assert (1, "import struct") in got and (2, "from_bytes") in got
    assert (2, "slice of a buffer with a literal bound") in got
    assert (3, "index into a buffer") in got and (3, "shift of a subscript") in got
    assert (4, "shift of a subscript") in got and (5, "unpack_from") in got
    assert not [g for g in got if g[0] == 6]


# -- 2. protocol numbers are named ------------------------------------------------------------------

def _literals(node):
    if isinstance(node, ast.Constant) and type(node.value) is int:
        yield node.value
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and \
            isinstance(node.operand, ast.Constant) and type(node.operand.value) is int:
        yield -node.operand.value
    elif isinstance(node, (ast.Tuple, ast.Set, ast.List)):
        for e in node.elts:
            yield from _literals(e)


def _operand(node) -> str | None:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return node.func.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return None


def magic_numbers(tree, values, operands) -> list[tuple[int, int, str]]:
    """(line, literal, comparison) of every integer literal compared with something that is
    neither an allowed value nor compared with an allowed operand."""
    values, operands = set(values), set(operands)
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        sides = [node.left] + node.comparators
        for i, side in enumerate(sides):
            others = {_operand(o) for j, o in enumerate(sides) if j != i}
            if others & operands:
                continue
            for v in _literals(side):
                if v not in values:
                    out.append((node.lineno, v, ast.unparse(node)))
    return out


def test_protocol_numbers_are_named():
    found = []
    allow = {a for a in CONFIG["bytes-allow"] if ":" not in a}  # the same files stay out
    for path in _files(CONFIG["magic-paths"]):
        rel = _rel(path)
        if rel in allow:
            continue
        for line, v, expr in magic_numbers(ast.parse(path.read_text()), CONFIG["magic-values"],
                                           CONFIG["magic-operands"]):
            found.append(f"{rel}:{line}: {v} in {expr}")
    assert not found, ("unnamed numbers in comparisons (use the enums of dissect.vpn.registry / "
                       "dissect.vpn.ip, or a named constant):\n" + "\n".join(found))


def test_magic_numbers_are_found():
    sample = ast.parse("a = m.exch == 34\nb = 4500 in (sport, dport)\nc = len(x) == 4\n"
                       "d = sa.version == 2\ne = n > 0\nf = x.last_step >= 6\n"
                       "g = ntype in (14, 17)\n")
    got = {(line, v) for line, v, _e in magic_numbers(sample, CONFIG["magic-values"],
                                                      CONFIG["magic-operands"])}
    assert got == {(1, 34), (2, 4500), (7, 14), (7, 17)}


# -- 3. one declaration per number --------------------------------------------------------------

def _named_numbers() -> dict[str, set[int]]:
    """Member name -> values, over every protocol-number enum of dissect.vpn."""
    import importlib
    import pkgutil

    import dissect.vpn
    from dissect.vpn.number import Number

    names: dict[str, set[int]] = {}
    for mod in pkgutil.iter_modules(dissect.vpn.__path__):
        if mod.ispkg:
            continue
        m = importlib.import_module(f"dissect.vpn.{mod.name}")
        for obj in vars(m).values():
            if isinstance(obj, type) and issubclass(obj, Number) and obj is not Number and \
                    obj.__module__ == m.__name__:
                for name, member in obj.__members__.items():
                    for key in (name.upper(), re.sub(r"_MODE$", "", name.upper())):
                        names.setdefault(key.replace("_", ""), set()).add(int(member))
    return names


_PREFIX = re.compile(r"^_*(?:V[12]_|NT_|N_|PT_|EXCH_|IPPROTO_|PROTO_|P_)?")


def redeclarations(tree, named) -> list[tuple[int, str, int]]:
    """(line, name, value) of module- or class-level ``NAME = <int>`` assignments (values from 2)
    whose name (prefixes such as V1_/NT_/IPPROTO_ and _PORT dropped, underscores ignored) and
    value are an enum member's."""
    out = []
    scopes = [tree] + [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    for scope in scopes:
        for node in scope.body:
            if not isinstance(node, ast.Assign) or not isinstance(node.value, ast.Constant) \
                    or type(node.value.value) is not int or node.value.value < 2:
                continue  # 0 and 1 are every enum's first members and every kind's: no signal
            for t in node.targets:
                if not isinstance(t, ast.Name):
                    continue
                key = _PREFIX.sub("", t.id).upper()
                keys = {k.replace("_", "") for k in
                        (key, re.sub(r"_?PORTS?$", "", key), re.sub(r"^PORT_?", "", key))}
                if any(node.value.value in named.get(k, ()) for k in keys if k):
                    out.append((node.lineno, t.id, node.value.value))
    return out


def test_registry_numbers_are_declared_once():
    named = _named_numbers()
    found = []
    for path in _files(["pcapvpn", "dissect"]):
        tree = ast.parse(path.read_text())
        # the enums' own bodies are the declarations
        enums = {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)
                 and any(_operand(b) in ("Number", "IntEnum") for b in n.bases)}
        for line, name, v in redeclarations(tree, named):
            cls = next((c for c in ast.walk(tree) if isinstance(c, ast.ClassDef)
                        and any(getattr(x, "lineno", None) == line for x in c.body)), None)
            if cls is not None and cls.name in enums:
                continue
            found.append(f"{_rel(path)}:{line}: {name} = {v}")
    assert named
    assert not found, "numbers the dissect.vpn enums already name, declared again:\n" + \
        "\n".join(found)


def test_redeclarations_are_found():
    named = _named_numbers()
    sample = ast.parse("COOKIE = 16390\nV1_QUICK = 32\nR_U_THERE = 36136\nNATT_PORT = 4500\n"
                       "IPPROTO_ESP = 50\nMAX_REFS = 20\nclass C:\n    IKE_SA_INIT = 34\n")
    got = {name for _line, name, _v in redeclarations(sample, named)}
    assert got == {"COOKIE", "V1_QUICK", "R_U_THERE", "NATT_PORT", "IPPROTO_ESP", "IKE_SA_INIT"}
    assert "MAX_REFS" not in got


def test_allowed_files_exist():
    """An allow-list entry for a file that is gone is stale: remove it."""
    for entry in CONFIG["bytes-allow"]:
        assert (REPO / entry.split(":", 1)[0].strip()).exists(), entry


def test_no_merge_conflict_markers_in_tracked_files():
    """A merge resolved by hand must not leave its markers behind (docs/internals.md carried a
    conflict through two releases)."""
    import subprocess

    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    bad = []
    for name in files:
        path = REPO / name
        if path.suffix not in (".py", ".md", ".toml", ".po", ".json", ".yml", ".txt", ".html") \
                or not path.is_file():
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if line.startswith(("<<<<<<< ", ">>>>>>> ")):
                bad.append(f"{name}:{n}")
    assert not bad, bad


# -- 4. no import cycle in dissect.vpn -----------------------------------------------------------

def _module_imports(tree):
    """The import statements that run when the module is imported: those at module level, in
    ``if`` / ``try`` / ``with`` blocks there, not in functions or classes nor under
    ``if TYPE_CHECKING:``."""
    todo = list(tree.body)
    while todo:
        node = todo.pop(0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else \
                test.attr if isinstance(test, ast.Attribute) else None
            todo += node.orelse if name == "TYPE_CHECKING" else node.body + node.orelse
        elif isinstance(node, ast.Try):
            todo += node.body + node.orelse + node.finalbody
            for h in node.handlers:
                todo += h.body
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            todo += node.body


def import_graph(modules: dict[str, tuple[str, bool]]) -> dict[str, set[str]]:
    """``{module: modules it imports}`` among ``modules`` (``{name: (source, is_package)}``).

    ``from X import n`` is an edge to ``X.n`` when that is a module, else to ``X``; a parent
    package that Python imports before a submodule is not an edge (a package's ``__init__`` may
    import its own submodules, which may import each other)."""
    graph: dict[str, set[str]] = {}
    for name, (source, is_pkg) in modules.items():
        deps = graph.setdefault(name, set())
        for node in _module_imports(ast.parse(source)):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    parts = name.split(".") if is_pkg else name.split(".")[:-1]
                    parts = parts[:len(parts) - (node.level - 1)]
                    base = ".".join(parts + ([node.module] if node.module else []))
                subs = [f"{base}.{a.name}" for a in node.names]
                # a name that is no submodule is read from the package: its __init__ is a
                # dependency; submodules alone need it only as their parent
                targets = subs if all(t in modules for t in subs) else [base] + subs
            deps.update(t for t in targets if t in modules and t != name)
    return graph


def import_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of ``graph`` as ``[a, b, ..., a]``; ``[]`` when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str]:
        state[m] = 1
        path.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                return path[path.index(d):] + [d]
            if d not in state:
                found = visit(d)
                if found:
                    return found
        path.pop()
        state[m] = 2
        return []

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return []


def _dissect_modules() -> dict[str, tuple[str, bool]]:
    out = {}
    for path in _files(["dissect/vpn"]):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts.pop()
        out[".".join(parts)] = (path.read_text(), is_pkg)
    return out


def test_dissect_has_no_import_cycle():
    modules = _dissect_modules()
    graph = import_graph(modules)
    assert "dissect.vpn.errors" in graph["dissect.vpn.esp"]  # the walk sees edges
    cycle = import_cycle(graph)
    assert not cycle, "import cycle in dissect.vpn: " + " -> ".join(cycle)


def test_import_cycles_are_found():
    """Samples: the old ``ike`` <-> ``ikev1`` cycle (a bottom-of-module import), one through a
    relative import two levels up, and a package whose ``__init__`` imports its submodules
    (no cycle)."""
    old = {
        "p.ike": ("from .errors import E\nX = 1\nfrom . import ikev1 as _v1  # noqa\n", False),
        "p.ikev1": ("from .ike import X\n", False),
        "p.errors": ("E = 1\n", False),
    }
    assert import_cycle(import_graph(old)) == ["p.ike", "p.ikev1", "p.ike"]
    deep = {
        "p.a": ("try:\n    from .q.b import f\nexcept ImportError:\n    pass\n", False),
        "p.q": ("", True),
        "p.q.b": ("from ..a import g\n", False),
    }
    assert import_cycle(import_graph(deep)) == ["p.a", "p.q.b", "p.a"]
    lazy = {
        "p.a": ("def f():\n    from . import b\nif TYPE_CHECKING:\n    from . import b\n", False),
        "p.b": ("from . import a\n", False),
        "p.k": ("from . import common, v1\nfrom .v1 import P\n", True),
        "p.k.common": ("import struct\n", False),
        "p.k.v1": ("from .common import X\nfrom ..a import f\nfrom . import common\n", False),
    }
    graph = import_graph(lazy)
    assert graph["p.k"] == {"p.k.common", "p.k.v1"} and graph["p.k.v1"] == {"p.k.common", "p.a"}
    assert import_cycle(graph) == []
    # but a name read from the package's __init__ depends on it
    lazy["p.k.common"] = ("from . import VERSION\n", False)
    assert import_cycle(import_graph(lazy)) == ["p.k", "p.k.common", "p.k"]
