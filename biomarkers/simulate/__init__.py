"""Synthetic multi-centre PET/CT cohorts with ground-truth survival.

:func:`simulate_cohort` builds a digital phantom per subject (:mod:`.phantom`),
images it with its centre's scanner model (:mod:`.scanner`), draws the outcome
from a known hazard (:mod:`.outcome`) and writes images and tables (:mod:`.cohort`).
"""
from __future__ import annotations

__all__ = ["simulate_cohort"]


def __getattr__(name: str):
    # Imported on first use: the workflow reads :mod:`.plan` while it parses, without SimpleITK.
    if name == "simulate_cohort":
        from biomarkers.simulate.cohort import simulate_cohort

        return simulate_cohort
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
