"""How a frozen model abstains: the uncertainty measure, its training quantile, and the choice it came from.

The measure is ``risk_flip`` (default), ``risk_sd`` or ``distance`` as asked, or the method an
uncertainty choice (:func:`~biomarkers.survival.uncertainty_methods.uncertainty_choice`) found best
in cross-validation of the training cohort, with its conformal calibration
(:mod:`biomarkers.survival.bundle` explains why ``risk_flip`` without a choice). The settings of
that comparison of uncertainty methods are here too (:class:`UncertaintySettings`), free of the
models, so that the command line shows their defaults without loading them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from biomarkers.errors import FeatureTableError

#: Quantile of the training cohort's uncertainty above which a score is flagged (default).
ABSTAIN_QUANTILE = 0.9
#: Uncertainty measures the abstention can use.
ABSTAIN_MEASURES = ("risk_flip", "risk_sd", "distance", "conformal")
#: Uncertainty methods (:data:`~biomarkers.survival.uncertainty_methods.METHODS`) a bundle applies
#: itself, and its measure for each; an ensemble needs its other members, so it is not here.
CHOICE_MEASURES = {"mc_dropout": "risk_sd", "distance": "distance", "conformal": "conformal"}
#: Score column of each abstention measure.
MEASURE_COLUMNS = {"risk_flip": "risk_flip", "risk_sd": "risk_sd", "distance": "u_distance",
                   "conformal": "u_conformal"}


@dataclass(frozen=True)
class Abstention:
    """The abstention settings of :func:`~biomarkers.survival.bundle.fit_bundle`.

    ``quantile``: a score is flagged where its measure exceeds this quantile of the training
    cohort's values (MC-dropout measures: stochastic models only). ``on``: the measure,
    ``risk_flip``, ``risk_sd`` or ``distance``. ``choice``: the uncertainty choice for this model
    on this training table; its chosen method replaces ``on``, and its conformal calibration gives
    every score a lower bound on the survival time.
    """

    quantile: float = ABSTAIN_QUANTILE
    on: str = "risk_flip"
    choice: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.quantile < 1.0:
            raise ValueError(f"abstain_quantile must lie between 0 and 1, got {self.quantile}")
        if self.choice is None and (self.on not in ABSTAIN_MEASURES or self.on == "conformal"):
            raise ValueError(f"abstain_on must be one of risk_flip, risk_sd, distance (conformal needs an "
                             f"uncertainty choice), got {self.on!r}")

    def measure(self, model: str, table_sha256: str) -> dict:
        """The measure (and conformal calibration) for ``model`` fitted on the table of ``table_sha256``,
        with ``why`` it was chosen.

        Raises
        ------
        FeatureTableError
            The choice is of another model or training table, or of a method a frozen model cannot apply.
        """
        choice = self.choice
        if choice is None:
            return {"measure": self.on}
        if choice.get("model") != model:
            raise FeatureTableError(f"uncertainty choice of model {choice.get('model')!r}, not of {model!r}")
        made_on = choice.get("train_table_sha256", "")
        if made_on and table_sha256 and made_on != table_sha256:
            raise FeatureTableError("uncertainty choice made on another training table (SHA-256 "
                                    f"{made_on[:12]}, this one {table_sha256[:12]}); rerun uncertainty-choice")
        chosen = choice["chosen"]
        if chosen not in CHOICE_MEASURES:
            raise FeatureTableError(f"uncertainty choice {chosen!r} is not one a single frozen model applies "
                                    f"({', '.join(CHOICE_MEASURES)})")
        keys = ("alpha", "c0", "eta", "n_calibration", "effective_n")
        return {"measure": CHOICE_MEASURES[chosen], "chosen_by": choice.get("rule", ""),
                "conformal": {k: float(choice["conformal"][k]) for k in keys},
                "why": f" ({chosen}: the largest selective-prediction area in cross-validation of the training cohort)"}


@dataclass(frozen=True)
class UncertaintySettings:
    """How the uncertainty methods are compared (:mod:`biomarkers.survival.uncertainty_methods`):
    ensemble ``members``, cross-validation ``folds`` of the training cohort, the conformal bound's
    miscoverage ``alpha`` and cut-off ``c0_days``, the flags' training quantile
    ``abstain_quantile`` (:class:`Abstention`'s) and the ``seed`` of folds and bootstrap members.
    The defaults are the verbs' and the workflow's (``tests/survival/test_uncertainty_methods.py``
    checks the schema)."""

    members: int = 5
    folds: int = 5
    alpha: float = 0.1
    c0_days: float = 1095.0
    abstain_quantile: float = ABSTAIN_QUANTILE
    seed: int = 0
