"""The ``biomarkers`` command: argument parsing and one library call per verb, by stage.

:mod:`~biomarkers.cli.app` holds the Typer app; each stage's module registers its verbs on it:
:mod:`~biomarkers.cli.imaging`, :mod:`~biomarkers.cli.segment`, :mod:`~biomarkers.cli.features`,
:mod:`~biomarkers.cli.survival`, :mod:`~biomarkers.cli.validation`, :mod:`~biomarkers.cli.study`
(a study from the user's files, its frozen signature, new patients) and
:mod:`~biomarkers.cli.uncertainty` (uncertainty methods, subtypes, explanations, pretraining).
Heavy libraries are imported inside each verb so that every call starts quickly.
"""
from __future__ import annotations

import sys

from biomarkers.cli import features, imaging, segment, study, survival, uncertainty, validation  # noqa: F401
from biomarkers.cli.app import app, user_errors

__all__ = ["app", "main"]

app.command("init")(user_errors(study.init))
app.command("image-sheet")(user_errors(study.image_sheet))
app.command("signature")(user_errors(study.signature))
app.command("predict")(user_errors(study.predict))
app.command("uncertainty-choice")(user_errors(uncertainty.uncertainty_choice))
app.command("uncertainty-scores")(user_errors(uncertainty.uncertainty_scores))
app.command("uncertainty-evaluate")(user_errors(uncertainty.uncertainty_evaluate))
app.command("subtypes")(user_errors(uncertainty.subtypes))
app.command("explain")(user_errors(uncertainty.explain))
app.command("pretraining")(user_errors(uncertainty.pretraining))


def main() -> None:
    """Entry point of the ``biomarkers`` console script."""
    app()


if __name__ == "__main__":
    sys.exit(main())
