"""Location-independent provenance of input files (name and SHA-256, never a full path).

Recording content hashes instead of paths keeps outputs byte-identical when a study is
rerun in another folder, and still says exactly which inputs were used.
"""
from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_record(path: str | Path) -> dict[str, str]:
    """``{"name": file name, "sha256": content hash}`` of an input file."""
    return {"name": Path(path).name, "sha256": sha256_file(path)}
