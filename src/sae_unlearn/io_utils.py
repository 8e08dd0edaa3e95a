"""Atomic writes and output-directory guards: a crash never leaves a half-written file behind."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

from sae_unlearn.errors import UserInputError


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj)}")


def atomic_save_dir(target: Path, writer: Callable[[Path], None]) -> Path:
    """Let ``writer`` fill a temp dir beside ``target``, then move it into place in one rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        writer(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


CHECKPOINTS = "checkpoints"


def prepare_output_dir(out: Path, overwrite: bool, resume: bool = False) -> Path:
    """Refuse to clobber an existing, non-empty output directory unless the user asked for it.

    ``resume`` keeps a directory whose run was interrupted (it holds ``checkpoints/``)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserInputError(f"Output path {out} exists and is a file; choose a directory path.")
    if resume and out.is_dir() and any(out.iterdir()):
        if (out / CHECKPOINTS).is_dir():
            return out
        raise UserInputError(
            f"--resume: {out} holds no checkpoints/ (a finished run, or not ours); nothing to "
            "resume. Pass --overwrite instead of --resume to run again."
        )
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise UserInputError(
                f"Output directory {out} already exists and is not empty; "
                "choose another --out or pass --overwrite to replace its contents."
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def cache_root() -> Path:
    """Where built world models and SAEs are kept between runs (override: SAE_UNLEARN_CACHE)."""
    env = os.environ.get("SAE_UNLEARN_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sae-unlearn"


def read_json_lines(path: Path, what: str) -> Iterator[tuple[int, str, Any]]:
    """(line number, "PATH, line N", parsed object) for each non-blank line of a JSON Lines file; a missing file,
    bad encoding or a line that is not JSON stops with ``what`` (e.g. "Entity file"), the path and the line."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{what} {path} does not exist (or is not a file).")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserInputError(f"{what} {path} cannot be read as UTF-8 text: {exc}") from exc
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}, line {lineno}"
        try:
            yield lineno, where, json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserInputError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno}).") from exc


def read_comparison(path: Path, flag: str) -> tuple[Path, dict, dict | None]:
    """A finished comparison: (its compare.json, that file's content, the run's config.yaml beside it or None).
    ``path`` is the run's directory or the file; ``flag`` opens the error message (the option that named it)."""
    import yaml  # here: the rest of this module needs no YAML

    file = Path(path) / "compare.json" if Path(path).is_dir() else Path(path)
    if not file.is_file():
        raise UserInputError(
            f"{flag} {path}: no compare.json there; give a finished `sae-unlearn compare` run's directory or its "
            "compare.json."
        )
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise UserInputError(f"{flag} {file}: not a JSON file ({e}).") from e
    if not isinstance(data, dict):
        raise UserInputError(f"{flag} {file}: not a comparison's compare.json (a JSON object).")
    config = file.parent / "config.yaml"
    return file, data, (yaml.safe_load(config.read_text()) or {}) if config.is_file() else None
