"""The ``biomarkers`` Typer app, the wrapper that turns library errors into one-line messages, and
the options every stage's verbs share."""
from __future__ import annotations

import functools
from typing import Callable

import typer

from biomarkers.errors import BiomarkerError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Reproducible PET/CT radiomics and survival biomarker pipeline.")


def user_errors(func: Callable) -> Callable:
    """Turn library errors into a one-line message on stderr and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (BiomarkerError, ValueError) as exc:
            typer.echo(f"biomarkers {func.__name__.replace('_', '-')}: error: {exc}", err=True)
            raise typer.Exit(1) from None

    return wrapper


#: The training cohort a table must be of (`fit`, `cv`).
TRAINING_COHORT = typer.Option("train", help="Cohort the table must be of (its metadata, from `aggregate`): "
                                              "a validation cohort's table is refused.")
