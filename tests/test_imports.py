"""The dependency rule, enforced: ``linli/`` and every ``core/`` package import no I/O library.

The walk is transitive over first-party modules (a core importing ``linli.contract`` is checked
through ``linli.contract``'s own imports). ``linli`` may import only the standard library (minus
I/O modules), pydantic and cryptography; a ``core/`` package may import those, ``linli`` and its
own core package and ``hardware`` (board definitions as data, itself held to the same rule) —
never its daemon's adapters.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIRST_PARTY = {
    "linli",
    "hardware",
    "firmware_bridge",
    "locker_controller",
    "valuation_terminal",
    "cloud_api",
    "station",
}
ALLOWED_THIRD_PARTY = {"pydantic", "pydantic_core", "cryptography", "typing_extensions"}
CORE_THIRD_PARTY = {"valuation_terminal.core": {"numpy", "PIL"}}
"""Computation libraries a core may use beyond :data:`ALLOWED_THIRD_PARTY`: the terminal's photo
checks are array arithmetic on decoded images (``valuation_terminal/core/images.py``); the
camera and files stay in the adapters."""
IO_STDLIB = {
    "socket",
    "ssl",
    "sqlite3",
    "dbm",
    "subprocess",
    "threading",
    "multiprocessing",
    "concurrent",
    "asyncio",
    "selectors",
    "select",
    "socketserver",
    "http",
    "urllib.request",
    "ftplib",
    "smtplib",
    "telnetlib",
    "xmlrpc",
    "signal",
    "mmap",
    "termios",
    "tty",
    "pty",
    "fcntl",
    "logging.handlers",
}


def _module_file(module: str, root: Path) -> Path | None:
    parts = module.split(".")
    for candidate in (
        root.joinpath(*parts) / "__init__.py",
        root.joinpath(*parts).with_suffix(".py"),
    ):
        if candidate.exists():
            return candidate
    return None


def _imports(path: Path, module: str) -> list[str]:
    """Every module an import statement in ``path`` names (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                prefix = ".".join(base)
                target = f"{prefix}.{node.module}" if node.module else prefix
            else:
                target = node.module or ""
            found.append(target)
            # `from pkg import sub` may name a submodule
            found += [f"{target}.{alias.name}" for alias in node.names]
    return found


def violations(
    start_modules: list[str],
    allowed_first_party: tuple[str, ...],
    root: Path = ROOT,
    third_party: frozenset[str] = frozenset(),
) -> list[str]:
    """Walk imports from ``start_modules``; return a line per forbidden import with its path."""
    problems: list[str] = []
    seen: set[str] = set()
    stack = [(m, m) for m in start_modules]
    while stack:
        module, chain = stack.pop()
        if module in seen:
            continue
        seen.add(module)
        path = _module_file(module, root)
        if path is None:
            continue
        for imported in _imports(path, module):
            top = imported.split(".")[0]
            if top in FIRST_PARTY:
                if not imported.startswith(allowed_first_party):
                    problems.append(f"{chain} -> {imported} (first-party module outside the core)")
                elif _module_file(imported, root) is not None:
                    stack.append((imported, f"{chain} -> {imported}"))
            elif top in sys.stdlib_module_names or top == "__future__":
                if any(imported == io or imported.startswith(io + ".") for io in IO_STDLIB):
                    problems.append(f"{chain} -> {imported} (I/O module)")
            elif top not in ALLOWED_THIRD_PARTY | third_party:
                problems.append(f"{chain} -> {imported} (third-party library)")
    return problems


def _modules_under(package_dir: Path, root: Path = ROOT) -> list[str]:
    return [
        ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        for p in sorted(package_dir.rglob("*.py"))
    ]


CORE_DIRS = sorted(p for p in ROOT.glob("*/core") if (p / "__init__.py").exists())


def test_there_are_cores_to_check() -> None:
    names = {p.parent.name for p in CORE_DIRS}
    assert {"locker_controller", "cloud_api", "valuation_terminal"} <= names


ADAPTER_ONLY_IN_LINLI = {"linli.crash"}
"""Shared by the daemons' adapters, never by a core: crash points kill the process (``signal``).
A core importing one is still caught by the transitive walk of ``test_core_imports_no_io_library``."""


def test_linli_imports_no_io_library() -> None:
    modules = [m for m in _modules_under(ROOT / "linli") if m not in ADAPTER_ONLY_IN_LINLI]
    assert violations(modules, ("linli",)) == []


def test_crash_points_are_adapter_only() -> None:
    assert violations(sorted(ADAPTER_ONLY_IN_LINLI), ("linli",)) == [
        "linli.crash -> signal (I/O module)"
    ]


def test_hardware_data_imports_no_io_library() -> None:
    assert violations(_modules_under(ROOT / "hardware"), ("linli", "hardware")) == []


@pytest.mark.parametrize("core", CORE_DIRS, ids=lambda p: f"{p.parent.name}.core")
def test_core_imports_no_io_library(core: Path) -> None:
    own = ".".join(core.relative_to(ROOT).parts)
    extra = frozenset(CORE_THIRD_PARTY.get(own, ()))
    assert violations(_modules_under(core), ("linli", "hardware", own), third_party=extra) == []


def test_the_walker_catches_a_transitive_io_import(tmp_path: Path) -> None:
    (tmp_path / "linli").mkdir()
    (tmp_path / "linli" / "__init__.py").write_text("")
    (tmp_path / "linli" / "a.py").write_text("from linli import b\n")
    (tmp_path / "linli" / "b.py").write_text("import paho.mqtt.client\nimport sqlite3\n")
    (tmp_path / "linli" / "c.py").write_text("from . import d\n")
    (tmp_path / "linli" / "d.py").write_text("from locker_controller import daemon\n")
    found = violations(["linli.a", "linli.c"], ("linli",), root=tmp_path)
    assert any("paho.mqtt.client (third-party library)" in v for v in found)
    assert any("sqlite3 (I/O module)" in v for v in found)
    assert any("locker_controller (first-party module outside the core)" in v for v in found)


def test_codecs_import_no_io_library() -> None:
    """The serial codecs are sans-I/O: no ports, threads, sleeps or clocks."""
    modules = [*_modules_under(ROOT / "firmware_bridge" / "codecs"), "firmware_bridge.errors"]
    assert violations(modules, ("firmware_bridge.codecs", "firmware_bridge.errors")) == []
    clocks = [
        f"{m} -> {name}"
        for m in modules
        if (path := _module_file(m, ROOT)) is not None
        for name in _imports(path, m)
        if name.split(".")[0] in {"time", "datetime"}
    ]
    assert clocks == []
