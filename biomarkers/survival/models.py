"""The survival models behind ``biomarkers fit --model NAME``, on preprocessed features.

Every model takes the standardised design matrix of :class:`~biomarkers.survival.preprocess.FeaturePipeline`
and offers one interface, :class:`SurvivalModel`:

``coxph``
    Cox proportional hazards (lifelines ``CoxPHFitter``, Efron ties) with lifelines'
    elastic-net penalty (``penalizer``, ``l1_ratio``).
``coxnet``
    Elastic-net Cox (scikit-survival ``CoxnetSurvivalAnalysis``); the penalty ``alpha`` is
    chosen by ``cv_folds``-fold cross-validation of Harrell's C on the training rows only
    (folds stratified on the event), over the alpha path of the whole training set; with
    ``one_se`` the largest alpha whose mean C lies within one standard error of the best.
``rsf``
    Random survival forest (scikit-survival ``RandomSurvivalForest``, seeded); risk is the
    forest's ensemble cumulative hazard summed over the training event times
    (``RandomSurvivalForest.predict``).
``deepsurv``, ``logistic_hazard``, ``deephit``
    :class:`~biomarkers.survival.deep.DeepSurvivalModel` (our torch loop, pycox losses), with
    early stopping on a stratified split of the training rows; scored with ``mc_samples``
    MC-dropout passes (0: deterministic).
``cnn_survival``
    End-to-end: :class:`~biomarkers.survival.cnn.LesionBagCox`, a 3D CNN over each
    subject's lesion patches (multi-instance pooling) joined by the design matrix (the
    clinical covariates), trained with the Cox partial likelihood; scored with MC dropout.
    It needs the subjects' lesion patches (:class:`~biomarkers.deep.lesion_bags.LesionBags`,
    ``bags=``) besides the design matrix.

The linear models (``coxph``, ``coxnet``) keep their coefficients and a Breslow baseline
cumulative hazard in the JSON state (``S(t | x) = exp(-H0(t) exp(x b))``); the forest is
written as plain arrays (``rsf.npz``, read without pickle: a bundle cannot run code) and the
networks with ``torch.save`` (read with ``weights_only``) beside ``model.json``, which records
each file's SHA-256.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from biomarkers.errors import BiomarkerError, ModelBundleError
from biomarkers.io.provenance import file_record, sha256_file
from biomarkers.survival.breslow import breslow_baseline, breslow_survival
from biomarkers.survival.deep import DeepSurvivalModel
from biomarkers.survival.hyperparameters import DEFAULTS, MODELS, hyperparameters, is_stochastic

__all__ = ["DEFAULTS", "MODELS", "hyperparameters", "make_model", "SurvivalModel"]


class SurvivalModel:
    """One fitted survival model: risk (with MC-dropout samples) and survival curves.

    Subclasses implement :meth:`fit`, :meth:`risk_samples`, :meth:`survival_samples`,
    :meth:`state` and :meth:`restore`; ``stochastic`` says whether samples differ.
    """

    name = ""
    stochastic = False
    #: Whether the model also reads each row's lesion patches (``bags=``, one array per row).
    needs_bags = False

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    def fit(self, x: np.ndarray, time: np.ndarray, event: np.ndarray,
            names: list[str] | None = None, **inputs: Any) -> "SurvivalModel":
        """Fit on the standardised design matrix ``x``; ``names`` label its columns."""
        raise NotImplementedError

    def risk_samples(self, x: np.ndarray, seed: int = 0, **inputs: Any) -> np.ndarray:
        """Risk (higher = worse) per sample, shape (T, n); T = 1 for deterministic models."""
        raise NotImplementedError

    def survival_samples(self, x: np.ndarray, times: np.ndarray, seed: int = 0, **inputs: Any) -> np.ndarray:
        """Survival probability per sample at ``times``, shape (T, n, len(times))."""
        raise NotImplementedError

    def state(self, folder: Path) -> dict:
        """JSON-serialisable state; large parts are written to files in ``folder``."""
        raise NotImplementedError

    def restore(self, state: dict, folder: Path) -> "SurvivalModel":
        """Rebuild the fitted model from :meth:`state` and the files in ``folder``."""
        raise NotImplementedError


def linear_predictor(x: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """``x @ coef``, row by row: each patient's value is the same float whether they are scored
    alone or in a cohort (a BLAS matrix-vector product may round differently by the number of
    rows), so a signature scoring one new patient gives the study's number to the last bit."""
    x = np.ascontiguousarray(x, dtype=np.float64)  # a strided row takes another BLAS path
    return np.fromiter((np.dot(row, coef) for row in x), dtype=np.float64, count=len(x))


class LinearCox(SurvivalModel):
    """Shared part of ``coxph`` and ``coxnet``: coefficients and a Breslow baseline."""

    def _set(self, coef: np.ndarray, x: np.ndarray, time: np.ndarray, event: np.ndarray) -> None:
        self.coef_ = np.asarray(coef, dtype=np.float64)
        self.baseline_time_, self.baseline_cumhaz_ = breslow_baseline(time, event, linear_predictor(x, self.coef_))

    def risk_samples(self, x: np.ndarray, seed: int = 0, **inputs: Any) -> np.ndarray:
        return linear_predictor(x, self.coef_)[None]

    def survival_samples(self, x: np.ndarray, times: np.ndarray, seed: int = 0, **inputs: Any) -> np.ndarray:
        return breslow_survival(self.baseline_time_, self.baseline_cumhaz_, times, linear_predictor(x, self.coef_))[None]

    def state(self, folder: Path) -> dict:
        return {"coef": self.coef_.tolist(), "baseline_time": self.baseline_time_.tolist(),
                "baseline_cumhaz": self.baseline_cumhaz_.tolist(), **getattr(self, "extra_", {})}

    def restore(self, state: dict, folder: Path) -> "LinearCox":
        self.coef_ = np.asarray(state["coef"], dtype=np.float64)
        self.baseline_time_ = np.asarray(state["baseline_time"], dtype=np.float64)
        self.baseline_cumhaz_ = np.asarray(state["baseline_cumhaz"], dtype=np.float64)
        self.extra_ = {k: v for k, v in state.items() if k not in ("coef", "baseline_time", "baseline_cumhaz")}
        return self


class CoxPH(LinearCox):
    name = "coxph"

    def fit(self, x, time, event, names=None, **inputs):
        from biomarkers.survival.cox import fit_cox

        names = names or [f"x{j}" for j in range(x.shape[1])]
        coef, self.summary_ = fit_cox(x, time, event, list(names), self.params["penalizer"], self.params["l1_ratio"])
        self._set(coef, x, time, event)
        return self


class Coxnet(LinearCox):
    name = "coxnet"

    def fit(self, x, time, event, names=None, **inputs):
        from sklearn.model_selection import StratifiedKFold
        from sksurv.linear_model import CoxnetSurvivalAnalysis
        from sksurv.util import Surv

        from biomarkers.stats import harrell_c

        p = self.params
        y = Surv.from_arrays(event=event.astype(bool), time=time.astype(float))

        def coxnet(alphas=None):
            kwargs = {"alphas": alphas} if alphas is not None else {"n_alphas": p["n_alphas"],
                                                                     "alpha_min_ratio": p["alpha_min_ratio"]}
            return CoxnetSurvivalAnalysis(l1_ratio=p["l1_ratio"], max_iter=100000, **kwargs)

        try:
            alphas = coxnet().fit(x, y).alphas_
            folds = StratifiedKFold(p["cv_folds"], shuffle=True, random_state=p["seed"]).split(x, event)
            scores = []
            for train, test in folds:
                path = coxnet(alphas).fit(x[train], y[train])
                scores.append([harrell_c(time[test], event[test], x[test] @ path.coef_[:, a])
                               for a in range(len(alphas))])
            full = coxnet(alphas).fit(x, y)
        except ArithmeticError as exc:
            raise BiomarkerError(f"coxnet did not converge ({exc}); raise alpha_min_ratio") from None
        scores = np.asarray(scores)
        mean, se = scores.mean(axis=0), scores.std(axis=0, ddof=1) / np.sqrt(len(scores))
        best = int(np.argmax(mean))
        chosen = int(np.flatnonzero(mean >= mean[best] - se[best])[0]) if p["one_se"] else best
        self.extra_ = {"alpha": float(alphas[chosen]), "cv_c_index": float(mean[chosen]),
                       "cv_alphas": alphas.tolist(), "cv_mean_c": mean.tolist(), "cv_se_c": se.tolist()}
        self._set(full.coef_[:, chosen], x, time, event)
        return self


class Forest(SurvivalModel):
    name = "rsf"
    FILE = "rsf.npz"

    def fit(self, x, time, event, names=None, **inputs):
        from sksurv.ensemble import RandomSurvivalForest
        from sksurv.util import Surv

        p = self.params
        self.forest_ = RandomSurvivalForest(n_estimators=p["n_estimators"], min_samples_leaf=p["min_samples_leaf"],
                                            max_features=p["max_features"], random_state=p["seed"], n_jobs=1)
        self.forest_.fit(x, Surv.from_arrays(event=event.astype(bool), time=time.astype(float)))
        return self

    def risk_samples(self, x, seed=0, **inputs):
        return self.forest_.predict(x)[None]

    def survival_samples(self, x, times, seed=0, **inputs):
        grid = self.forest_.unique_times_
        surv = self.forest_.predict_survival_function(x, return_array=True)  # steps at ``grid``
        pos = np.searchsorted(grid, times, side="right") - 1
        return np.where(pos >= 0, surv[:, np.maximum(pos, 0)], 1.0)[None]

    def state(self, folder):
        np.savez_compressed(folder / self.FILE, **forest_arrays(self.forest_))
        return {"file": file_record(folder / self.FILE)}

    def restore(self, state, folder):
        path = folder / self.FILE
        _check_file(path, state["file"]["sha256"])
        try:
            with np.load(path, allow_pickle=False) as arrays:
                self.forest_ = forest_from_arrays(dict(arrays), self.params)
        except (ValueError, KeyError, OSError) as exc:
            raise ModelBundleError(f"{path}: not a forest written by this version ({exc})") from None
        return self


def forest_arrays(forest) -> dict[str, np.ndarray]:
    """A fitted :class:`sksurv.ensemble.RandomSurvivalForest` as plain arrays (no pickle).

    Per tree ``i``: its node table (``t<i>.nodes``, a structured array of numbers), the node
    values (``t<i>.values``: cumulative hazard and survival per event time), the depth and
    every fitted attribute of the :class:`sksurv.tree.SurvivalTree` (``t<i>.attr.<name>``);
    and the forest's own fitted attributes (``forest.<name>``). Loaded with
    ``allow_pickle=False`` by :func:`forest_from_arrays`, so a bundle cannot carry code.
    """
    out: dict[str, np.ndarray] = {"n_trees": np.asarray(len(forest.estimators_))}
    for name in _FITTED_FOREST:
        out[f"forest.{name}"] = np.asarray(getattr(forest, name))
    for i, tree in enumerate(forest.estimators_):
        nodes = tree.tree_.__getstate__()
        out[f"t{i}.nodes"], out[f"t{i}.values"] = nodes["nodes"], nodes["values"]
        out[f"t{i}.max_depth"] = np.asarray(nodes["max_depth"])
        for name in _FITTED_TREE:
            out[f"t{i}.attr.{name}"] = np.asarray(getattr(tree, name))
    return out


def forest_from_arrays(arrays: dict[str, np.ndarray], params: dict) -> Any:
    """The forest of :func:`forest_arrays`, ready to predict (same results as the fitted one)."""
    from sklearn.tree._tree import Tree
    from sksurv.ensemble import RandomSurvivalForest
    from sksurv.tree import SurvivalTree

    def value(a: np.ndarray) -> Any:
        return a.item() if a.ndim == 0 else a

    forest = RandomSurvivalForest(n_estimators=params["n_estimators"], min_samples_leaf=params["min_samples_leaf"],
                                  max_features=params["max_features"], random_state=params["seed"], n_jobs=1)
    for name in _FITTED_FOREST:
        setattr(forest, name, value(arrays[f"forest.{name}"]))
    forest.estimator_ = SurvivalTree(min_samples_leaf=params["min_samples_leaf"], max_features=params["max_features"])
    trees = []
    for i in range(int(arrays["n_trees"])):
        tree = SurvivalTree(min_samples_leaf=params["min_samples_leaf"], max_features=params["max_features"])
        for name in _FITTED_TREE:
            setattr(tree, name, value(arrays[f"t{i}.attr.{name}"]))
        nodes, values = arrays[f"t{i}.nodes"], arrays[f"t{i}.values"]
        if nodes.dtype.hasobject or values.dtype.hasobject:
            raise ValueError("object arrays")
        structure = Tree(int(tree.n_features_in_), np.atleast_1d(np.asarray(tree.n_classes_, dtype=np.intp)),
                         int(tree.n_outputs_))
        structure.__setstate__({"max_depth": int(arrays[f"t{i}.max_depth"]), "node_count": len(nodes),
                                "nodes": nodes, "values": values})
        tree.tree_ = structure
        trees.append(tree)
    forest.estimators_ = trees
    return forest


#: Fitted attributes of the forest and of each of its trees that prediction reads.
_FITTED_FOREST = ("n_features_in_", "n_outputs_", "unique_times_", "is_event_time_")
_FITTED_TREE = ("n_features_in_", "n_outputs_", "n_classes_", "max_features_", "unique_times_", "is_event_time_")


class Deep(SurvivalModel):
    FILE = "network.pt"
    stochastic = True

    def __init__(self, params, name):
        super().__init__(params)
        self.name = name
        self.stochastic = is_stochastic(params)

    def fit(self, x, time, event, names=None, **inputs):
        p = self.params
        hidden = tuple(int(h) for h in str(p["hidden"]).split(","))
        self.net_ = DeepSurvivalModel(self.name, hidden, p["dropout"], n_durations=p.get("n_durations", 10),
                                      device="cpu", alpha=p.get("alpha", 0.2), sigma=p.get("sigma", 0.1))
        self.net_.fit(x, time, event, seed=p["seed"], max_epochs=p["max_epochs"], batch_size=p["batch_size"],
                      lr=p["lr"], weight_decay=p["weight_decay"], patience=p["patience"],
                      val_fraction=p["val_fraction"])
        return self

    def risk_samples(self, x, seed=0, **inputs):
        return self.net_.risk_samples(x, self.params["mc_samples"], seed)

    def survival_samples(self, x, times, seed=0, **inputs):
        curves = self.net_.predict_survival(x, times, self.params["mc_samples"], seed, return_samples=True)
        return curves.samples

    def state(self, folder):
        self.net_.save(folder / self.FILE)
        return {"file": file_record(folder / self.FILE), "best_epoch": int(self.net_.best_epoch_),
                "epochs_run": int(len(self.net_.history_))}

    def restore(self, state, folder):
        path = folder / self.FILE
        _check_file(path, state["file"]["sha256"])
        self.net_ = DeepSurvivalModel.load(path, device="cpu")
        return self


class CNNSurvival(SurvivalModel):
    name = "cnn_survival"
    FILE = "network.pt"
    needs_bags = True

    def __init__(self, params):
        super().__init__(params)
        self.stochastic = is_stochastic(params)

    @staticmethod
    def _bags(inputs: dict[str, Any], n_rows: int) -> list:
        bags = inputs.get("bags")
        if bags is None or len(bags) != n_rows:
            raise ValueError("cnn_survival needs the lesion patches of every row (bags=, one array per row)")
        return bags

    def fit(self, x, time, event, names=None, **inputs):
        from biomarkers.survival.cnn import CnnTraining, fit_lesion_bag_cox

        fitted = fit_lesion_bag_cox(self._bags(inputs, len(x)), x, time, event,
                                    CnnTraining.from_hyperparameters(self.params), device="cpu")
        import pandas as pd

        self.net_, history = fitted.net, fitted.history
        self.history_ = pd.DataFrame({"epoch": np.arange(len(history.train_loss)), "train_loss": history.train_loss,
                                      "val_loss": history.val_loss})
        self.best_epoch_ = int(history.best_epoch)
        self.baseline_time_, self.baseline_cumhaz_ = fitted.baseline_time, fitted.baseline_cumhaz
        return self

    def risk_samples(self, x, seed=0, **inputs):
        from biomarkers.survival.cnn import risk_samples

        return risk_samples(self.net_, self._bags(inputs, len(x)), x, self.params["mc_samples"], seed)

    def survival_samples(self, x, times, seed=0, **inputs):
        risk = self.risk_samples(x, seed, **inputs)  # (T, n)
        return breslow_survival(self.baseline_time_, self.baseline_cumhaz_, times, risk)

    def state(self, folder):
        from biomarkers.survival.cnn import network_bytes

        (folder / self.FILE).write_bytes(network_bytes(self.net_))
        def plain(values):  # JSON has no NaN
            return [None if not np.isfinite(v) else float(v) for v in values]

        return {"file": file_record(folder / self.FILE), "best_epoch": self.best_epoch_,
                "epochs_run": int(len(self.history_)), "train_loss": plain(self.history_["train_loss"]),
                "val_loss": plain(self.history_["val_loss"]), "baseline_time": self.baseline_time_.tolist(),
                "baseline_cumhaz": self.baseline_cumhaz_.tolist()}

    def restore(self, state, folder):
        from biomarkers.survival.cnn import load_network

        path = folder / self.FILE
        _check_file(path, state["file"]["sha256"])
        self.net_ = load_network(path.read_bytes())
        self.baseline_time_ = np.asarray(state["baseline_time"], dtype=np.float64)
        self.baseline_cumhaz_ = np.asarray(state["baseline_cumhaz"], dtype=np.float64)
        return self


def make_model(name: str, params: dict[str, Any]) -> SurvivalModel:
    """An unfitted model of kind ``name`` with the given (complete) hyperparameters."""
    if name in ("deepsurv", "logistic_hazard", "deephit"):
        return Deep(params, name)
    classes = {"coxph": CoxPH, "coxnet": Coxnet, "rsf": Forest, "cnn_survival": CNNSurvival}
    if name not in classes:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(MODELS)}")
    return classes[name](params)


def _check_file(path: Path, sha256: str) -> None:
    if not path.is_file():
        raise ModelBundleError(f"{path}: model file missing from the model directory")
    if sha256_file(path) != sha256:
        raise ModelBundleError(f"{path}: SHA-256 differs from the one recorded in model.json (file changed)")
