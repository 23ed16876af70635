"""The broker is a boundary: only pvsim/pipeline/broker/ imports pika. Everything else (the
daemons, the run's transports) sees pvsim's own `Link`, `Publisher`, `Consumer` and errors, so
a pika upgrade, or another client library, changes one package."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "pvsim"
BOUNDARY = PACKAGE / "pipeline" / "broker"


def pika_imports(path: Path) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        if any(name == "pika" or name.startswith("pika.") for name in names):
            lines.append(node.lineno)
    return lines


def test_only_the_broker_package_imports_pika():
    outside = [f"{path.relative_to(PACKAGE.parent)}:{line}"
               for path in sorted(PACKAGE.rglob("*.py")) if BOUNDARY not in path.parents
               for line in pika_imports(path)]
    assert outside == [], "pika imported outside pvsim/pipeline/broker/: " + ", ".join(outside)


def test_the_broker_package_does_import_it():
    """The scan sees imports at all (a test that cannot fail proves nothing)."""
    assert pika_imports(BOUNDARY / "connection.py")
