"""Synthetic multi-centre PET/CT cohorts with ground-truth survival.

:func:`simulate_cohort` builds a digital phantom per subject (:mod:`.phantom`),
images it with its centre's scanner model (:mod:`.scanner`), draws the outcome
from a known hazard (:mod:`.outcome`) and writes images and tables (:mod:`.cohort`).
"""
from biomarkers.simulate.cohort import simulate_cohort

__all__ = ["simulate_cohort"]
