"""Write-then-rename helpers so an interrupted run leaves nothing half-written."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    The temporary name keeps the final suffixes (``.nii.gz``, ``.parquet``) so that
    writers which choose a format from the file name still work. On error the
    temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    if path.is_dir():
        from biomarkers.errors import InputError

        raise InputError("is a directory; give a file name to write", path=path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; on success it replaces ``path`` (an older
    ``path`` is moved aside first and removed after), on error it is removed and ``path`` is left
    untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_parquet(df: pd.DataFrame, path: str | Path, metadata: dict[str, Any] | None = None) -> None:
    """Write ``df`` to parquet atomically, with optional JSON metadata in the schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    if metadata:
        meta = dict(table.schema.metadata or {})
        meta[b"biomarkers"] = json.dumps(metadata, sort_keys=True).encode()
        table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_parquet_metadata(path: str | Path) -> dict[str, Any]:
    """Return the ``biomarkers`` metadata written by :func:`write_parquet` (empty if none)."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(b"biomarkers")
    return json.loads(raw) if raw else {}


def write_json(obj: Any, path: str | Path) -> None:
    """Write ``obj`` as indented, key-sorted JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    """Read a JSON file; a missing or malformed one is an :class:`~biomarkers.errors.InputError`."""
    from biomarkers.errors import InputError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} does not exist", path=path)
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise InputError(f"{what} is not valid JSON ({exc})", path=path) from None


def write_tsv(df: pd.DataFrame, path: str | Path, float_format: str = "%.6g") -> None:
    """Write ``df`` as a tab-separated table atomically."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep="\t", index=False, float_format=float_format)


def concat_tsv(paths: list[str | Path], out: str | Path) -> pd.DataFrame:
    """Stack tab-separated tables with identical columns and write the result atomically."""
    from biomarkers.errors import InputError

    frames = []
    for path in paths:
        if not Path(path).is_file():
            raise InputError("table does not exist", path=path)
        frames.append(pd.read_csv(path, sep="\t"))
        if list(frames[-1].columns) != list(frames[0].columns):
            raise InputError(f"columns differ from those of {paths[0]}", path=path)
    table = pd.concat(frames, ignore_index=True)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    return table
