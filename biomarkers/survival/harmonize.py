"""ComBat harmonisation of features across centres, fitted on the training cohort only.

Parametric empirical-Bayes location/scale adjustment of Johnson, Li and Rabinovic (2007,
Biostatistics 8:118-127), as used for imaging features by Fortin et al. (2017, 2018). The
arithmetic follows ``sva::ComBat`` and ``neuroCombat`` 0.2.12 step for step (pooled variance over
``n`` subjects, method-of-moments hyper-priors per centre, the same fixed-point iteration and
stopping rule), so that fitted values agree with neuroCombat to rounding error; the state is plain
JSON and a model can be applied to a centre that was not in the training cohort.
"""
from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
import pandas as pd

from biomarkers.errors import FeatureTableError

UNSEEN_PRIORS = ("batch", "training")


class HarmonizationWarning(UserWarning):
    """The empirical-Bayes iteration stopped at ``max_iter`` before converging."""


class ComBat:
    """Parametric empirical-Bayes ComBat, with covariates to preserve.

    Model, per feature ``f`` and subject ``i`` of centre ``b``:
    ``x_if = alpha_f + c_i' beta_f + gamma_bf + sqrt(delta_bf) * e_if``. The training cohort gives
    ``alpha`` (the size-weighted mean of the centre intercepts), ``beta``, the pooled residual
    variance ``sigma_f^2`` and, for every training centre, the shrunken ``gamma*_bf`` and
    ``delta*_bf``. Harmonised values are
    ``(z_if - gamma*_bf) / sqrt(delta*_bf) * sigma_f + alpha_f + c_i' beta_f`` with
    ``z_if = (x_if - alpha_f - c_i' beta_f) / sigma_f``: centre effects are removed, covariate
    effects (e.g. age) are kept.

    **Centres not seen in training.** :meth:`transform` estimates a new centre's ``gamma_bf`` and
    ``delta_bf`` from that centre's own feature values alone (after standardising them with the
    training ``alpha``, ``beta`` and ``sigma``), shrinks them with the same parametric EB step and
    applies them; no outcome is used and nothing fitted changes. This is the standard way to
    harmonise a new site. Its assumption is that the new centre's case mix, after the covariates
    are accounted for, is comparable to the training cohort's: a centre that really has sicker
    patients has that difference removed as if it were a scanner effect. It needs at least
    ``min_batch_size`` subjects in that centre. With ``unseen_priors="batch"`` (default) the
    hyper-priors of the shrinkage are estimated from the new centre's own features, exactly as
    ComBat does for every centre in a joint fit (so a training centre passed through this route
    gets its stored estimates back); with ``"training"`` they are the priors pooled over all
    training centres' estimates, which shrinks the new centre towards a typical training centre.

    Parameters
    ----------
    eb : bool
        Shrink the per-centre estimates with empirical Bayes (``False``: plain location/scale).
    mean_only : bool
        Adjust only the location (``delta* = 1``).
    min_batch_size : int
        Fewest subjects a centre must have, in training and as an unseen centre in
        :meth:`transform`.
    unseen_priors : {"batch", "training"}
        Where the hyper-priors for an unseen centre come from (see above).
    tol : float
        Convergence tolerance of the EB iteration: the largest relative change of ``gamma*`` and
        ``delta*`` (1e-4, as in sva and neuroCombat).
    max_iter : int
        Cap on EB iterations (neither reference has one; reaching it warns).

    Notes
    -----
    Centre labels are compared as strings (``str(label)``), so ``1`` and ``"1"`` are one centre.
    Data must be complete (impute first). Fitted attributes end in ``_``.
    """

    def __init__(self, eb: bool = True, mean_only: bool = False, min_batch_size: int = 5,
                 unseen_priors: str = "batch", tol: float = 1e-4, max_iter: int = 1000) -> None:
        self.eb = eb
        self.mean_only = mean_only
        self.min_batch_size = min_batch_size
        self.unseen_priors = unseen_priors
        self.tol = tol
        self.max_iter = max_iter

    # ------------------------------------------------------------------ fitting
    def fit(self, x: pd.DataFrame, batch: Sequence[Any], covariates: pd.DataFrame | None = None) -> "ComBat":
        """Learn the reference and every training centre's adjustment.

        Parameters
        ----------
        x : DataFrame
            Training features (n_subjects, n_features), complete, numeric.
        batch : sequence
            Centre of every row of ``x``.
        covariates : DataFrame, optional
            Numeric covariates whose effect is preserved (n_subjects, n_covariates).

        Returns
        -------
        ComBat
            ``self``, fitted.
        """
        if self.unseen_priors not in UNSEEN_PRIORS:
            raise ValueError(f"unseen_priors must be one of {UNSEEN_PRIORS}, not {self.unseen_priors!r}")
        values = _matrix(x, list(x.columns), "training table")
        labels = _labels(batch, len(values), "training table")
        cov_names = [] if covariates is None else [str(c) for c in covariates.columns]
        cov = _covariates(covariates, cov_names, len(values), "training table")
        if self.eb and values.shape[1] < 2:
            raise FeatureTableError("ComBat with empirical Bayes needs at least 2 features")
        levels, counts = np.unique(labels, return_counts=True)
        small = [f"{lev} ({n})" for lev, n in zip(levels, counts) if n < max(self.min_batch_size, 2)]
        if small:
            raise FeatureTableError(f"training centre(s) with fewer than {max(self.min_batch_size, 2)} "
                                    f"subjects: {', '.join(small)}; merge them or drop them before ComBat")
        onehot = (labels[:, None] == levels[None, :]).astype(np.float64)
        design = np.hstack([onehot, cov])
        if np.linalg.matrix_rank(design) < design.shape[1]:
            raise FeatureTableError(f"ComBat covariate(s) {', '.join(cov_names)} are confounded with the centre "
                                    "(design matrix not of full rank)")
        coef = np.linalg.solve(design.T @ design, design.T @ values)
        n_batch = len(levels)
        grand_mean = (counts / len(values)) @ coef[:n_batch]
        var_pooled = ((values - design @ coef) ** 2).mean(axis=0)
        raw_var = values.var(axis=0)
        flat = [str(f) for f, v, r in zip(x.columns, var_pooled, raw_var) if not (r > 0 and v > 1e-14 * r)]
        if flat:
            raise FeatureTableError(f"feature(s) constant within centres in the training table: {', '.join(flat)}")
        self.features_ = [str(c) for c in x.columns]
        self.covariates_ = cov_names
        self.grand_mean_ = grand_mean
        self.var_pooled_ = var_pooled
        self.covariate_coef_ = coef[n_batch:]
        z = self._standardise(values, cov)
        self.batches_: dict[str, dict[str, Any]] = {}
        for lev, n in zip(levels, counts):
            self.batches_[str(lev)] = {"n": int(n), **self._estimate(z[labels == lev], priors=None)}
        self.pooled_priors_ = self._pooled_priors()
        return self

    def transform(self, x: pd.DataFrame, batch: Sequence[Any], covariates: pd.DataFrame | None = None) -> pd.DataFrame:
        """Harmonise ``x``; training centres use stored estimates, new centres their own (see class notes).

        Parameters
        ----------
        x : DataFrame
            Features with (at least) the fitted columns, complete.
        batch : sequence
            Centre of every row.
        covariates : DataFrame, optional
            The fitted covariate columns for every row.

        Returns
        -------
        DataFrame
            Harmonised features, same index, fitted column order.
        """
        values = _matrix(x, self.features_, "table to harmonise")
        labels = _labels(batch, len(values), "table to harmonise")
        cov = _covariates(covariates, self.covariates_, len(values), "table to harmonise")
        z = self._standardise(values, cov)
        out = np.empty_like(z)
        for lev, est in self.batch_estimates(z, labels).items():
            rows = labels == lev
            out[rows] = (z[rows] - est["gamma_star"]) / np.sqrt(est["delta_star"])
        out = out * np.sqrt(self.var_pooled_) + self.grand_mean_ + _rows_times(cov, self.covariate_coef_)
        return pd.DataFrame(out, index=x.index, columns=self.features_)

    def fit_transform(self, x: pd.DataFrame, batch: Sequence[Any],
                      covariates: pd.DataFrame | None = None) -> pd.DataFrame:
        """:meth:`fit` then :meth:`transform` on the same data."""
        return self.fit(x, batch, covariates).transform(x, batch, covariates)

    def batch_estimates(self, z: np.ndarray, labels: np.ndarray) -> dict[str, dict[str, Any]]:
        """``gamma*``/``delta*`` used for every centre in ``labels`` (stored, or estimated if unseen).

        ``z`` is the standardised data (rows aligned with ``labels``); nothing fitted changes.
        """
        out: dict[str, dict[str, Any]] = {}
        for lev in np.unique(labels):
            if lev in self.batches_:
                est = self.batches_[lev]
                out[lev] = {"seen": True, "gamma_star": np.asarray(est["gamma_star"]),
                            "delta_star": np.asarray(est["delta_star"])}
                continue
            rows = labels == lev
            if rows.sum() < max(self.min_batch_size, 2):
                raise FeatureTableError(f"centre {lev} was not in the training cohort and has {int(rows.sum())} "
                                        f"subject(s); harmonising a new centre needs at least "
                                        f"{max(self.min_batch_size, 2)}")
            priors = self.pooled_priors_ if self.unseen_priors == "training" else None
            out[lev] = {"seen": False, **self._estimate(z[rows], priors)}
        return out

    def new_centre_estimates(self, x: pd.DataFrame, batch: Sequence[Any],
                             covariates: pd.DataFrame | None = None) -> dict[str, dict[str, Any]]:
        """``gamma*``, ``delta*`` and subject count of every centre of ``batch`` not seen in training,
        as :meth:`transform` estimates them from these rows (plain lists)."""
        values = _matrix(x, self.features_, "table to harmonise")
        labels = _labels(batch, len(values), "table to harmonise")
        z = self._standardise(values, _covariates(covariates, self.covariates_, len(values), "table to harmonise"))
        return {lev: {"gamma_star": np.asarray(est["gamma_star"]).tolist(),
                      "delta_star": np.asarray(est["delta_star"]).tolist(), "n": int((labels == lev).sum())}
                for lev, est in self.batch_estimates(z, labels).items() if not est["seen"]}

    def with_centres(self, estimates: dict[str, dict[str, Any]]) -> "ComBat":
        """A copy that applies the given ``gamma*``/``delta*`` to those centres, as it applies a
        training centre's (:meth:`new_centre_estimates`' output: a harmonisation reference)."""
        clash = sorted(set(map(str, estimates)) & set(self.batches_))
        if clash:
            raise ValueError(f"centre(s) {', '.join(clash)} were in the training cohort; their estimates are fitted")
        model = ComBat.from_dict(self.to_dict())
        width = len(self.features_)
        for lev, est in estimates.items():
            if len(est["gamma_star"]) != width or len(est["delta_star"]) != width:
                raise ValueError(f"centre {lev}: estimates for {len(est['gamma_star'])} features, not {width}")
            model.batches_[str(lev)] = {"gamma_star": list(est["gamma_star"]), "delta_star": list(est["delta_star"]),
                                        "reference": True}
        return model

    def standardise(self, x: pd.DataFrame, covariates: pd.DataFrame | None = None) -> np.ndarray:
        """``(x - alpha - c'beta) / sigma`` with the training reference (ComBat's ``s_data``)."""
        values = _matrix(x, self.features_, "table to harmonise")
        return self._standardise(values, _covariates(covariates, self.covariates_, len(values), "table to harmonise"))

    # --------------------------------------------------------------- internals
    def _standardise(self, values: np.ndarray, cov: np.ndarray) -> np.ndarray:
        return (values - self.grand_mean_ - _rows_times(cov, self.covariate_coef_)) / np.sqrt(self.var_pooled_)

    def _estimate(self, z: np.ndarray, priors: dict[str, Any] | None) -> dict[str, Any]:
        """One centre's location/scale estimates from its standardised rows ``z``."""
        gamma_hat = z.mean(axis=0)
        delta_hat = np.ones(z.shape[1]) if self.mean_only else z.var(axis=0, ddof=1)
        delta_hat = np.where(delta_hat == 0, 1.0, delta_hat)
        if priors is None:
            priors = _hyper_priors(gamma_hat, delta_hat, self.mean_only, strict=self.eb)
        est = {"gamma_hat": gamma_hat.tolist(), "delta_hat": delta_hat.tolist(), **priors, "n_iter": 0}
        if not self.eb:
            gamma_star, delta_star = gamma_hat, delta_hat
        elif self.mean_only:  # sva/neuroCombat: postmean(gamma_hat, gamma_bar, 1, 1, t2)
            gamma_star = _postmean(gamma_hat, priors["gamma_bar"], 1.0, 1.0, priors["t2"])
            delta_star = np.ones(z.shape[1])
        else:
            gamma_star, delta_star, est["n_iter"] = self._iterate(z, gamma_hat, delta_hat, priors)
        est["gamma_star"], est["delta_star"] = np.asarray(gamma_star).tolist(), np.asarray(delta_star).tolist()
        return est

    def _iterate(self, z: np.ndarray, g_hat: np.ndarray, d_hat: np.ndarray,
                 priors: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, int]:
        """The fixed-point iteration of ``it.sol`` (sva) / ``it_sol`` (neuroCombat)."""
        n = float(z.shape[0])
        g_old, d_old = g_hat.copy(), d_hat.copy()
        for count in range(1, self.max_iter + 1):
            g_new = _postmean(g_hat, priors["gamma_bar"], n, d_old, priors["t2"])
            sum2 = ((z - g_new) ** 2).sum(axis=0)
            d_new = (0.5 * sum2 + priors["b_prior"]) / (n / 2.0 + priors["a_prior"] - 1.0)
            with np.errstate(divide="ignore", invalid="ignore"):
                change = max((np.abs(g_new - g_old) / g_old).max(), (np.abs(d_new - d_old) / d_old).max())
            g_old, d_old = g_new, d_new
            if not change > self.tol:  # NaN stops too, as in the references
                return g_new, d_new, count
        warnings.warn(f"ComBat EB iteration did not converge in {self.max_iter} iterations", HarmonizationWarning,
                      stacklevel=3)
        return g_new, d_new, self.max_iter

    def _pooled_priors(self) -> dict[str, Any]:
        gamma = np.concatenate([b["gamma_hat"] for b in self.batches_.values()])
        delta = np.concatenate([b["delta_hat"] for b in self.batches_.values()])
        return _hyper_priors(gamma, delta, self.mean_only, strict=self.eb)

    # ------------------------------------------------------------ JSON state
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (plain lists, floats, strings; per-centre entries keyed by label)."""
        return {
            "params": {"eb": self.eb, "mean_only": self.mean_only, "min_batch_size": self.min_batch_size,
                       "unseen_priors": self.unseen_priors, "tol": self.tol, "max_iter": self.max_iter},
            "features_": list(self.features_),
            "covariates_": list(self.covariates_),
            "grand_mean_": self.grand_mean_.tolist(),
            "var_pooled_": self.var_pooled_.tolist(),
            "covariate_coef_": self.covariate_coef_.tolist(),
            "batches_": {lev: dict(est) for lev, est in self.batches_.items()},
            "pooled_priors_": dict(self.pooled_priors_),
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "ComBat":
        """Rebuild a fitted model from :meth:`to_dict`'s output."""
        model = cls(**state["params"])
        model.features_ = list(state["features_"])
        model.covariates_ = list(state["covariates_"])
        model.grand_mean_ = np.asarray(state["grand_mean_"], dtype=np.float64)
        model.var_pooled_ = np.asarray(state["var_pooled_"], dtype=np.float64)
        coef = np.asarray(state["covariate_coef_"], dtype=np.float64)
        model.covariate_coef_ = coef.reshape(len(model.covariates_), len(model.features_))
        model.batches_ = {str(lev): dict(est) for lev, est in state["batches_"].items()}
        model.pooled_priors_ = dict(state["pooled_priors_"])
        return model


def _rows_times(cov: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """``cov @ coef`` row by row, so that a subject harmonised alone gets the same floats as in a cohort."""
    out = np.empty((cov.shape[0], coef.shape[1]))
    for i, row in enumerate(np.ascontiguousarray(cov)):
        out[i] = row @ coef
    return out


def _postmean(g_hat: np.ndarray, g_bar: float, n: float, d_star: np.ndarray | float, t2: float) -> np.ndarray:
    return (t2 * n * g_hat + d_star * g_bar) / (t2 * n + d_star)


def _hyper_priors(gamma_hat: np.ndarray, delta_hat: np.ndarray, mean_only: bool, strict: bool) -> dict[str, Any]:
    """Method-of-moments hyper-priors: normal for ``gamma``, inverse gamma for ``delta``.

    Computed (and stored) without empirical Bayes too, as the references do; only ``strict``
    (EB on) requires them to be defined.
    """
    priors: dict[str, Any] = {"gamma_bar": float(np.mean(gamma_hat)), "t2": float(np.var(gamma_hat, ddof=1)),
                              "a_prior": None, "b_prior": None}
    if not mean_only:
        m, s2 = float(np.mean(delta_hat)), float(np.var(delta_hat, ddof=1))
        if s2 > 0:
            priors["a_prior"] = (2 * s2 + m ** 2) / s2
            priors["b_prior"] = (m * s2 + m ** 3) / s2
    if strict and not (priors["t2"] > 0 and (mean_only or priors["a_prior"] is not None)):
        raise FeatureTableError("ComBat priors undefined: a centre's location or scale estimates do not vary "
                                "across features (need at least 2 features that differ)")
    return priors


def _matrix(x: pd.DataFrame, names: list[str], what: str, kind: str = "harmonised feature") -> np.ndarray:
    missing = [n for n in names if n not in x.columns]
    if missing:
        raise FeatureTableError(f"{what} lacks {kind} column(s) {', '.join(missing)}")
    values = x[names].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = [n for n, ok in zip(names, np.isfinite(values).all(axis=0)) if not ok]
    if bad:
        raise FeatureTableError(f"{what}: ComBat needs complete numeric values; missing or non-finite in "
                                f"{', '.join(bad)} (impute first)")
    return values


def _labels(batch: Sequence[Any], n_rows: int, what: str) -> np.ndarray:
    series = pd.Series(list(batch) if not isinstance(batch, pd.Series) else batch.to_numpy())
    if len(series) != n_rows:
        raise FeatureTableError(f"{what}: {len(series)} centre labels for {n_rows} rows")
    if series.isna().any():
        raise FeatureTableError(f"{what}: centre missing for {int(series.isna().sum())} row(s)")
    return series.astype(str).to_numpy(dtype=object)


def _covariates(covariates: pd.DataFrame | None, names: list[str], n_rows: int, what: str) -> np.ndarray:
    if not names:
        return np.zeros((n_rows, 0))
    if covariates is None:
        raise FeatureTableError(f"{what}: ComBat was fitted with covariate(s) {', '.join(names)}; pass them")
    if len(covariates) != n_rows:
        raise FeatureTableError(f"{what}: {len(covariates)} covariate rows for {n_rows} rows")
    return _matrix(covariates, names, what, "ComBat covariate")
