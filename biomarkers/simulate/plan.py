"""Which subjects a simulated cohort has, and in which centre and cohort, without simulating them.

The workflow reads this while it parses (numpy only, no image libraries), so it knows every subject
of the demo before the cohort is written and can group them into chunks.
"""
from __future__ import annotations

import numpy as np


def plan_generator(n_subjects: int, n_centers: int, seed: int) -> tuple[np.random.Generator, np.ndarray]:
    """The cohort-plan generator (spawn key (0,)) after it drew each subject's centre index, and those
    indices: the covariates are drawn from it next (:func:`biomarkers.simulate.cohort.simulate_cohort`)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    return rng, rng.permutation(np.arange(n_subjects) % n_centers)


def subject_ids(n_subjects: int) -> list[str]:
    """``sub-0001`` ... (at least four digits)."""
    width = max(4, len(str(n_subjects)))
    return [f"sub-{i + 1:0{width}d}" for i in range(n_subjects)]


def cohort_plan(n_subjects: int, n_centers: int, seed: int, validation_centers: int,
                shifted: int = 0) -> list[tuple[str, str]]:
    """(subject ID, cohort) of every subject, in sheet order: the last ``validation_centers``
    centres form the ``validation`` cohort, the others ``train``; the ``shifted`` subjects
    (:mod:`biomarkers.simulate.shift`) come last, in the validation cohort."""
    _, center_of = plan_generator(n_subjects, n_centers, seed)
    n_train = n_centers - validation_centers
    ids = subject_ids(n_subjects + shifted)
    return ([(sid, "train" if c < n_train else "validation") for sid, c in zip(ids, center_of)]
            + [(sid, "validation") for sid in ids[n_subjects:]])
