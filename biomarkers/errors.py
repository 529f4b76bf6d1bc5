"""Exception classes of the pipeline.

Every error a user can cause is a :class:`BiomarkerError`; the command line turns
it into a one-line message and a non-zero exit instead of a traceback.
"""
from __future__ import annotations

from pathlib import Path


class BiomarkerError(Exception):
    """Base class of every error the pipeline raises on purpose."""


class InputError(BiomarkerError):
    """An input file or table is missing, unreadable or inconsistent.

    Parameters
    ----------
    message : str
        What is wrong and, where possible, what to do about it.
    subject_id : str, optional
        The subject the input belongs to.
    path : str or Path, optional
        The offending file.
    """

    def __init__(self, message: str, subject_id: str | None = None,
                 path: str | Path | None = None) -> None:
        self.subject_id = subject_id
        self.path = None if path is None else str(path)
        parts = []
        if subject_id is not None:
            parts.append(f"subject {subject_id}")
        if path is not None:
            parts.append(f"file {self.path}")
        prefix = ", ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class GeometryError(InputError):
    """Two images that must share a voxel grid do not."""


class SubjectsSheetError(InputError):
    """The subjects sheet is missing a column or holds invalid values."""


class FeatureTableError(InputError):
    """A feature table does not have the layout fit/score/evaluate expect."""


class ModelBundleError(BiomarkerError):
    """A frozen model directory is incomplete or does not match the data."""
