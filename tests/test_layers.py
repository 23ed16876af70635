"""The layering of pvsim/, kept by a test: no import runs up a layer (see pvsim/__init__.py).

Every module's imports are read with `ast` (function-level imports included) and each pvsim
import is checked against the importing module's layer:

    config, logsetup   import nothing of pvsim's layers
    model              pvsim.config only (pure computation)
    inputs             config, logsetup, model (data files read at start)
    pipeline           config, logsetup, model
    store              + pipeline
    api                + store
    run                inputs, store and all below them (pvsim-run without its command line)
    cli                + api, run (pvsim-run's command line)
    daemons            + api, not run; cli and daemons never import each other

A break names the file, the line, the import and the rule. The model layer must also stay free
of I/O and threads: it may not import the standard library's or third parties' I/O modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pvsim"

BASE = {"pvsim", "config", "logsetup"}  # the package root (__version__) and what every layer reads
MAY_IMPORT: dict[str, set[str]] = {
    "pvsim": {"pvsim"},
    "config": {"config"},  # a package: its modules import each other
    "logsetup": set(),
    "model": {"config", "model"},
    "inputs": BASE | {"model", "inputs"},
    "pipeline": BASE | {"model", "pipeline"},
    "store": BASE | {"model", "pipeline", "store"},
    "api": BASE | {"model", "pipeline", "store", "api"},
    "run": BASE | {"model", "inputs", "pipeline", "store", "run"},
    "cli": BASE | {"model", "inputs", "pipeline", "store", "api", "run", "cli"},
    "daemons": BASE | {"model", "inputs", "pipeline", "store", "api", "daemons"},
}
# I/O, threads and processes: none of it in the pure model.
MODEL_FORBIDS = {"os", "io", "pathlib", "shutil", "socket", "threading", "multiprocessing",
                 "subprocess", "asyncio", "http", "urllib", "json", "csv", "pika", "yaml",
                 "prometheus_client", "waitress", "tempfile", "glob", "sqlite3", "importlib"}


def layer_of(module: str) -> str:
    """'pvsim.pipeline.broker' -> 'pipeline'; 'pvsim.config' -> 'config'; 'pvsim' -> 'pvsim'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(module: str, source: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, imported module) of every import in the source, relative ones resolved."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "pvsim":  # `from pvsim import config`: the names are modules
                found += [(node.lineno, "pvsim" if alias.name.startswith("__") else f"pvsim.{alias.name}")
                          for alias in node.names]
            else:
                found.append((node.lineno, target))
    return found


def violations(path: str, module: str, source: str, is_package: bool = False) -> list[str]:
    """What is wrong with one module's imports, one sentence each."""
    layer = layer_of(module)
    allowed = MAY_IMPORT.get(layer)
    if allowed is None:
        return [f"{path}: module {module} is in no known layer (add it to pvsim/__init__.py's "
                f"plan and to MAY_IMPORT in tests/test_layers.py)"]
    problems = []
    for line, target in imports(module, source, is_package):
        top = target.split(".")[0]
        if top == "pvsim":
            wanted = layer_of(target)
            if wanted not in MAY_IMPORT:
                problems.append(f"{path}:{line}: imports {target}, which is in no layer of pvsim")
            elif wanted not in allowed:
                may = ", ".join(sorted(allowed - {layer})) or "nothing of pvsim"
                problems.append(f"{path}:{line}: imports {target}: the {layer} layer may import "
                                f"{may}, not {wanted}")
        elif layer == "model" and top in MODEL_FORBIDS:
            problems.append(f"{path}:{line}: imports {target}: the model layer is pure "
                            f"(no I/O, no threads)")
    return problems


def package_modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_import_runs_up_a_layer() -> None:
    found = []
    for path in package_modules():
        found += violations(str(path.relative_to(ROOT)), module_name(path), path.read_text(),
                            path.name == "__init__.py")
    assert not found, "\n".join(found)


def test_every_subpackage_says_what_lives_there_and_what_it_may_import() -> None:
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc, f"{init.relative_to(ROOT)} has no docstring"
        assert "import" in doc, f"{init.relative_to(ROOT)}: say what the layer may import"


@pytest.mark.parametrize("module,source,expected", [
    ("pvsim.model.sun", "from pvsim.pipeline.messages import Reading\n",
     "pvsim/model/sun.py:1: imports pvsim.pipeline.messages: the model layer may import config, "
     "not pipeline"),
    ("pvsim.model.sun", "import threading\n",
     "pvsim/model/sun.py:1: imports threading: the model layer is pure (no I/O, no threads)"),
    ("pvsim.model.sun", "from pvsim import logsetup\n",
     "pvsim/model/sun.py:1: imports pvsim.logsetup: the model layer may import config, not logsetup"),
    ("pvsim.pipeline.sink", "def f():\n    from pvsim.store import readingstore\n",
     "pvsim/pipeline/sink.py:2: imports pvsim.store: the pipeline layer may import config, "
     "logsetup, model, pvsim, not store"),
    ("pvsim.store.x", "from ..daemons import metrics\n",
     "pvsim/store/x.py:1: imports pvsim.daemons: the store layer may import config, logsetup, "
     "model, pipeline, pvsim, not daemons"),
    ("pvsim.api.x", "import pvsim.cli.run\n",
     "pvsim/api/x.py:1: imports pvsim.cli.run: the api layer may import config, logsetup, model, "
     "pipeline, pvsim, store, not cli"),
    ("pvsim.cli.x", "from pvsim.daemons.lifecycle import main\n",
     "pvsim/cli/x.py:1: imports pvsim.daemons.lifecycle: the cli layer may import api, config, "
     "inputs, logsetup, model, pipeline, pvsim, run, store, not daemons"),
    ("pvsim.daemons.x", "from pvsim.cli import run\n",
     "pvsim/daemons/x.py:1: imports pvsim.cli: the daemons layer may import api, config, "
     "inputs, logsetup, model, pipeline, pvsim, store, not cli"),
    ("pvsim.run.x", "from pvsim.api.joi import JoiApi\n",
     "pvsim/run/x.py:1: imports pvsim.api.joi: the run layer may import config, inputs, "
     "logsetup, model, pipeline, pvsim, store, not api"),
    ("pvsim.daemons.x", "from pvsim.run.simulation import simulate\n",
     "pvsim/daemons/x.py:1: imports pvsim.run.simulation: the daemons layer may import api, "
     "config, inputs, logsetup, model, pipeline, pvsim, store, not run"),
    ("pvsim.config", "from pvsim.model import clock\n",
     "pvsim/config.py:1: imports pvsim.model: the config layer may import nothing of pvsim, not model"),
    ("pvsim.daemons.x", "from pvsim import broker\n",
     "pvsim/daemons/x.py:1: imports pvsim.broker, which is in no layer of pvsim"),
    ("pvsim.extras.x", "",
     "pvsim/extras/x.py: module pvsim.extras.x is in no known layer (add it to pvsim/__init__.py's "
     "plan and to MAY_IMPORT in tests/test_layers.py)"),
])
def test_a_break_names_the_file_the_import_and_the_rule(module, source, expected) -> None:
    path = module.replace(".", "/") + ".py"
    assert violations(path, module, source) == [expected]


@pytest.mark.parametrize("module,source", [
    ("pvsim.model.pvcurve", "from pvsim.model import noise\nfrom pvsim.config import PvConfig\n"),
    ("pvsim.pipeline.x", "from pvsim import __version__, config\nfrom . import messages\n"),
    ("pvsim.daemons.x", "from pvsim.api.joi import JoiApi\nfrom pvsim.store import readingstore\n"),
    ("pvsim.cli.x", "from pvsim.api.problem import problem\n"),
    ("pvsim.cli.x", "from pvsim.run.summary import RunSummary\n"),
    ("pvsim.run.x", "from pvsim.store.aggregates import MeterDay\nfrom pvsim.inputs import models\n"),
])
def test_imports_down_the_layers_pass(module, source) -> None:
    assert violations("x.py", module, source) == []


MAX_LINES = 350


def test_no_module_over_350_lines_without_a_reason_in_its_docstring() -> None:
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        doc = ast.get_docstring(ast.parse(source)) or ""
        if len(source.splitlines()) > MAX_LINES and "over 350 lines" not in " ".join(doc.lower().split()):
            long.append(f"{path.relative_to(ROOT)}: {len(source.splitlines())} lines")
    assert not long, ("modules over 350 lines whose docstring does not say why (\"over 350 lines\"): "
                      + "; ".join(long))
