"""The package's layering: every import points down the pipeline, so no module can reach back into a later stage
and no import circle can form (docs/layout.md). Function-level and type-checking imports count too: a lazy
import that goes upward is the same tangle, only deferred."""

from __future__ import annotations

import ast
from pathlib import Path

import sae_unlearn

PACKAGE = Path(sae_unlearn.__file__).parent

# Lowest first. A module may import from its own room and from any room below it.
LAYERS: list[set[str]] = [
    {"errors", "io_utils", "parallel", "progress"},
    {"entities"},
    {"models"},
    {"sae"},
    {"metrics"},
    {"methods"},
    {"config"},  # validates method names and options against the method registry
    {"state", "context"},  # the records the stages fill; the narrow view evaluation, attacks and figures read
    {"attacks"},
    {"stages"},
    {"evaluation"},
    {"report"},
    {"runs", "attack_run"},
    {"api", "pipeline", "cli", "__main__", "__init__"},
]
RANK = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}


def _room(path: Path, package: Path) -> str:
    """The top-level name a module belongs to: its subpackage, or its own name for a top-level module."""
    rel = path.relative_to(package)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imported_rooms(path: Path) -> list[tuple[int, str]]:
    rooms = []
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + (
                [f"{node.module}.{a.name}" for a in node.names] if node.module == "sae_unlearn" else []
            )
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "sae_unlearn" and len(parts) > 1:
                rooms.append((node.lineno, parts[1]))
    return rooms


def upward_imports(package: Path) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        room = _room(path, package)
        for line, imported in _imported_rooms(path):
            if RANK.get(imported, -1) > RANK.get(room, len(LAYERS)):
                found.append(f"{path.relative_to(package).as_posix()}:{line} ({room}) imports {imported}")
    return found


def test_every_module_sits_in_a_layer():
    unplaced = sorted({_room(p, PACKAGE) for p in PACKAGE.rglob("*.py")} - set(RANK))
    assert not unplaced, f"add {unplaced} to LAYERS in tests/test_layering.py (and to docs/layout.md)"


def test_imports_point_down_the_pipeline():
    upward = upward_imports(PACKAGE)
    assert not upward, "imports that point up the layering:\n" + "\n".join(upward)


def test_the_layering_check_catches_an_upward_import(tmp_path):
    """The check above can fail: a metric that imports a stage, even lazily inside a function, is reported."""
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "bad.py").write_text("def f():\n    from sae_unlearn.stages.split import make_split\n")
    (tmp_path / "runs.py").write_text("from sae_unlearn.metrics.recall import recall\n")  # downward: fine
    assert upward_imports(tmp_path) == ["metrics/bad.py:2 (metrics) imports stages"]


# What scores a model reads the narrow evaluation context (context.py), never the stages' workspace: a metric,
# an attack or a figure cannot depend on a stage's bookkeeping or reach for a record that may not exist yet.
CONTEXT_READERS = ("attacks", "evaluation", "report/figures.py", "report/attack_plots.py", "report/plots.py")


def workspace_readers(package: Path) -> list[str]:
    found = []
    for reader in CONTEXT_READERS:
        where = package / reader
        paths = sorted(where.rglob("*.py")) if where.is_dir() else [where] if where.is_file() else []
        for path in paths:
            for line, imported in _imported_rooms(path):
                if imported == "state":
                    found.append(f"{path.relative_to(package).as_posix()}:{line} imports state")
    return found


def test_metrics_attacks_and_figures_read_the_evaluation_context_only():
    readers = workspace_readers(PACKAGE)
    assert not readers, "read sae_unlearn.context.EvaluationContext instead:\n" + "\n".join(readers)


def test_the_context_check_catches_a_metric_reading_the_workspace(tmp_path):
    (tmp_path / "evaluation").mkdir()
    (tmp_path / "evaluation" / "new_metric.py").write_text("from sae_unlearn.state import Workspace\n")
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "figures.py").write_text("from sae_unlearn.context import EvaluationContext\n")
    assert workspace_readers(tmp_path) == ["evaluation/new_metric.py:1 imports state"]


def test_the_evaluation_context_needs_the_stages_it_reads():
    """A metric never sees a half-built state: before the SAE, split and latent stages ran there is no context,
    and the message says which stages are missing."""
    import pytest

    from sae_unlearn.config import DemoConfig
    from sae_unlearn.state import Subject, Workspace

    cfg = DemoConfig.model_validate({"model": {"name": "some-model"}})
    subject = Subject(cfg=cfg, model_dir=Path("m"), model=None, tokenizer=None, layer=0, entities=[], never_seen=[])
    with pytest.raises(RuntimeError, match="the SAE, the split and the latent frame: run those stages first"):
        _ = Workspace(subject).evaluation
