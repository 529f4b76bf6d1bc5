"""Tabular deep survival models with Monte Carlo dropout uncertainty.

Three kinds, one multilayer perceptron (see :class:`~biomarkers.deep.training.MLP`):

``"deepsurv"``
    One output, the log-hazard ratio, trained with the Cox partial likelihood
    (Katzman et al. 2018, BMC Med Res Methodol 18:24; ``pycox.models.loss.CoxPHLoss``).
    Risk sets are formed inside each mini-batch, so batches must be large and hold
    events: the batches are near-equal splits of a shuffle with no tiny remainder batch,
    and a batch without events is skipped (its partial likelihood is 1; pycox's loss
    would divide by zero). Survival curves use a Breslow baseline cumulative hazard
    estimated after fitting on all training rows (training and validation part).
``"logistic_hazard"``
    One output per interval of a time grid, the logit of the discrete hazard
    (Gensheimer & Narasimhan 2019, PeerJ 7:e6257; Kvamme & Borgan 2019,
    arXiv:1910.06724; ``pycox.models.loss.NLLLogistiHazardLoss``). The grid comes from
    pycox's ``LabTransDiscreteTime`` fitted on the training times. Survival between
    cuts is interpolated linearly (constant density within an interval, as pycox's
    ``interpolate``; a step function would overstate survival by up to one interval's
    drop) and is flat beyond the last cut. The scalar risk is the *restricted mean time
    lost* up to the last cut ``tau`` (``tau`` minus the area under that curve, in the
    unit of ``time``): it grows with every interval's hazard, so higher = worse.

``"deephit"``
    The same time grid; the outputs (with a zero logit appended) are the softmax
    probability mass of the event in each interval, ``S = 1 - cumsum(pmf)`` (DeepHit for a
    single risk: Lee et al. 2018, AAAI; ``pycox.models.loss.DeepHitSingleLoss``), trained on
    ``alpha`` x the likelihood of the PMF + (1 - ``alpha``) x the ranking loss with scale
    ``sigma``, the pairs' rank matrix built per mini-batch. Survival, interpolation and the
    restricted-mean-time-lost risk as for ``logistic_hazard``. The ranking term favours
    discrimination over calibration: DeepHit's survival curves are known to be less well
    calibrated than the likelihood-only models'.

MC dropout (Gal & Ghahramani 2016, ICML): with ``mc_samples = T > 0`` the network
runs in eval mode (batch-norm uses running statistics) but every hidden layer's output
is multiplied by a Bernoulli keep-mask; the T passes are one batched forward pass per
chunk of patients, each patient's row repeated T times. Masks are drawn on the CPU (also
when scoring on CUDA), each patient's from streams seeded by ``seed`` and the patient's input
row (:func:`biomarkers.deep.training.draw_masks`), so they depend neither on the chunk
size ``batch_size`` nor on the other patients scored with it: the same
call gives identical numbers, and another chunk size, another batch of patients or the Python-loop reference
(:func:`_mc_outputs_loop`) the same numbers up to float32 rounding (matrix products of
other shapes round differently in the last bit). On the CPU, drawing the masks costs more
than the forward passes; batching saves the per-pass overhead, which matters for cohorts
of hundreds of patients (``bench/deep_survival.py``).

Dropout defaults to 0.1: enough for MC dropout to express uncertainty, while
networks of width 32 trained on a few hundred patients lose discrimination at higher
rates (DeepSurv's tuned rates were 0.1 to 0.4 on larger data sets).
"""
from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.exceptions import NotFittedError

from biomarkers.deep.training import (MLP, draw_masks, mc_forward_batched, mc_forward_loop, resolve_device,
                                            seeded_deterministic, stratified_split, train)
from biomarkers.io.atomic import atomic_path
from biomarkers.survival.breslow import breslow_baseline, breslow_survival
from biomarkers.survival.curves import SurvivalCurves, grid_survival, pmf_survival
from biomarkers.survival.losses import cox_loss, deephit_loss, logistic_hazard_loss

KINDS = ("deepsurv", "logistic_hazard", "deephit")
STATE_FORMAT = 1
# rows (patients x samples) per forward pass when batch_size is None: on the CPU, passes whose
# activations stay in cache are fastest (measured for width 32: 2**12..2**15 rows)
_PREDICT_ROWS = {"cpu": 2**14, "cuda": 2**20}


class DeepSurvivalModel:
    """DeepSurv or logistic-hazard MLP trained by a seeded torch loop.

    Parameters
    ----------
    kind : {"deepsurv", "logistic_hazard", "deephit"}
    hidden : sequence of int
        Widths of the hidden layers.
    dropout : float
        Dropout rate after every hidden layer, in training and for MC dropout.
    batch_norm : bool
        Batch-norm after every hidden activation. Off by default: its batch statistics
        are noisy at small batch sizes and interact with the dropout noise.
    n_durations : int
        Number of cuts of the logistic-hazard time grid (ignored for deepsurv).
    cut_scheme : {"equidistant", "quantiles"}
        Placement of the cuts: equally spaced from 0 to the longest training time, or at
        quantiles of the training Kaplan-Meier curve (about as many events per interval).
        Ten equidistant cuts (as in pycox's examples) discriminated best on GBSG2.
    device : {"auto", "cpu", "cuda"}
        ``"auto"`` trains and scores on CUDA when available.
    """

    def __init__(self, kind: str = "deepsurv", hidden: Sequence[int] = (32, 32), dropout: float = 0.1,
                 batch_norm: bool = False, n_durations: int = 10, cut_scheme: str = "equidistant",
                 device: str = "auto", alpha: float = 0.2, sigma: float = 0.1) -> None:
        self.kind = kind
        self.alpha, self.sigma = float(alpha), float(sigma)
        self.hidden = hidden
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.n_durations = n_durations
        self.cut_scheme = cut_scheme
        self.device = device

    # ------------------------------------------------------------------ fitting
    def fit(self, x: np.ndarray, time: np.ndarray, event: np.ndarray, seed: int = 0, max_epochs: int = 200,
            batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 1e-3, patience: int = 15,
            val_fraction: float = 0.2) -> "DeepSurvivalModel":
        """Train on standardised features with early stopping; return self.

        Parameters
        ----------
        x : ndarray of float, shape (n_patients, n_features)
            Already standardised (with training statistics) design matrix.
        time, event : ndarray, shape (n_patients,)
            Follow-up time (>= 0) and event indicator (1 = event, 0 = censored).
        seed : int
            Seeds initialisation, dropout, batch order and the validation split; the same
            inputs and seed give identical weights on the CPU.
        max_epochs, batch_size, lr, weight_decay : int, int, float, float
            AdamW settings (decoupled weight decay); one epoch is one pass over the
            training part.
        patience : int
            Stop after this many epochs without a lower validation loss; the weights of the
            best epoch are restored.
        val_fraction : float
            Share of the training rows (stratified on ``event``) held out for early
            stopping; 0 trains for ``max_epochs`` and keeps the last weights. On a few
            hundred patients the held-out fifth costs discrimination, and the validation
            loss bottoms out before the ranking stops improving (logistic hazard
            especially); a fixed epoch budget chosen by cross-validation on the training
            cohort with ``val_fraction=0`` is then the better choice.
        """
        self._check_params()
        x, time, event = _check_data(x, time, event)
        device = resolve_device(self.device)
        if self.kind == "deepsurv":
            n_out, loss_fn = 1, cox_loss
            targets = (torch.as_tensor(time, dtype=torch.float32), torch.as_tensor(event, dtype=torch.float32))
        else:
            from pycox.preprocessing.label_transforms import LabTransDiscreteTime
            labtrans = LabTransDiscreteTime(self.n_durations, scheme=self.cut_scheme)
            idx, ev = labtrans.fit_transform(time, event.astype(np.float64))
            self.cuts_ = np.asarray(labtrans.cuts, dtype=np.float64)
            n_out = len(self.cuts_)
            loss_fn = logistic_hazard_loss if self.kind == "logistic_hazard" else \
                functools.partial(deephit_loss, alpha=self.alpha, sigma=self.sigma)
            targets = (torch.as_tensor(idx, dtype=torch.long), torch.as_tensor(ev, dtype=torch.float32))
        train_idx, val_idx = stratified_split(event, val_fraction, seed)
        with seeded_deterministic(seed, device):
            net = MLP(x.shape[1], self.hidden, n_out, self.dropout, self.batch_norm).to(device)
            result = train(net, loss_fn, torch.as_tensor(x, dtype=torch.float32, device=device),
                           [t.to(device) for t in targets], train_idx, val_idx, seed=seed,
                           max_epochs=max_epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                           patience=patience)
        self.net_, self.device_, self.n_features_in_ = net, device, x.shape[1]
        self.history_ = pd.DataFrame({"epoch": np.arange(len(result.train_loss)),
                                      "train_loss": result.train_loss, "val_loss": result.val_loss})
        self.best_epoch_ = result.best_epoch
        self.skipped_batches_ = result.skipped_batches
        self.fit_params_ = {"seed": int(seed), "max_epochs": int(max_epochs), "batch_size": int(batch_size),
                            "lr": float(lr), "weight_decay": float(weight_decay), "patience": int(patience),
                            "val_fraction": float(val_fraction), "device": device.type}
        if self.kind == "deepsurv":
            risk, _ = self.predict_risk(x)
            self.baseline_time_, self.baseline_cumhaz_ = breslow_baseline(time, event, risk)
        return self

    # --------------------------------------------------------------- prediction
    def predict_risk(self, x: np.ndarray, mc_samples: int = 0, seed: int = 0,
                     batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Risk score (higher = worse) and its MC-dropout standard deviation.

        Parameters
        ----------
        x : ndarray of float, shape (n_patients, n_features)
        mc_samples : int
            0 for the deterministic network (``sd`` is exactly 0), else the number T >= 2 of
            dropout passes; ``mean`` and ``sd`` (ddof=1) are taken over them.
        seed : int
            Seeds the dropout masks; the same call gives identical numbers.
        batch_size : int, optional
            Patients per forward pass (the pass holds ``batch_size * T`` rows); changes the
            numbers only by float32 rounding. Default: 2**14 rows per pass on the
            CPU (cache-sized; larger passes are slower), 2**20 on CUDA.

        Returns
        -------
        mean, sd : ndarray, shape (n_patients,)
            Log-hazard ratio (deepsurv) or restricted mean time lost (logistic_hazard, deephit).
        """
        mean = np.empty(len(x))
        sd = np.zeros(len(x))
        for rows, out in self._outputs(x, mc_samples, seed, batch_size):
            risk = self._risk(out)
            mean[rows] = risk.mean(axis=0)
            if mc_samples:
                sd[rows] = risk.std(axis=0, ddof=1)
        return mean, sd

    def risk_samples(self, x: np.ndarray, mc_samples: int = 0, seed: int = 0,
                     batch_size: int | None = None) -> np.ndarray:
        """Risk of every MC-dropout sample, shape (max(T, 1), n_patients); see :meth:`predict_risk`."""
        risk = np.empty((max(mc_samples, 1), len(x)))
        for rows, out in self._outputs(x, mc_samples, seed, batch_size):
            risk[:, rows] = self._risk(out)
        return risk

    def predict_survival(self, x: np.ndarray, times: np.ndarray, mc_samples: int = 0, seed: int = 0,
                         batch_size: int | None = None, return_samples: bool = False) -> SurvivalCurves:
        """Survival probabilities at ``times``, with MC-dropout percentile bands.

        With MC dropout each sample's curve uses that sample's network output; for
        deepsurv the Breslow baseline is the one estimated after fitting (from the
        deterministic network). Arguments as in :meth:`predict_risk`.
        """
        times = np.asarray(times, dtype=np.float64).ravel()
        n = len(x)
        mean, lower, upper = (np.empty((n, len(times))) for _ in range(3))
        samples = np.empty((max(mc_samples, 1), n, len(times))) if return_samples else None
        for rows, out in self._outputs(x, mc_samples, seed, batch_size):
            surv = self._survival(out, times)
            mean[rows] = surv.mean(axis=0)
            lower[rows], upper[rows] = np.percentile(surv, [2.5, 97.5], axis=0)
            if samples is not None:
                samples[:, rows] = surv
        return SurvivalCurves(times, mean, lower, upper, samples)

    def _outputs(self, x: np.ndarray, mc_samples: int, seed: int,
                 batch_size: int | None) -> Iterator[tuple[slice, np.ndarray]]:
        """Network outputs per chunk of patients, float64 array (max(T, 1), rows, n_out)."""
        x = self._check_x(x)
        if mc_samples < 0 or mc_samples == 1:
            raise ValueError(f"mc_samples must be 0 or at least 2, got {mc_samples}")
        step = batch_size or max(1, _PREDICT_ROWS[self.device_.type] // max(mc_samples, 1))
        self.net_.eval()
        for start in range(0, len(x), step):
            rows = slice(start, min(start + step, len(x)))
            xb = torch.as_tensor(x[rows], dtype=torch.float32, device=self.device_)
            if mc_samples:
                masks = draw_masks(seed, x[rows], mc_samples, self.hidden, self.dropout)
                out = mc_forward_batched(self.net_, xb, [m.to(self.device_) for m in masks])
            else:
                with torch.no_grad():
                    out = self.net_(xb)[None]
            yield rows, out.cpu().numpy().astype(np.float64)

    def _grid(self, out: np.ndarray) -> np.ndarray:
        """Survival at the cuts (discrete-time kinds)."""
        return grid_survival(out) if self.kind == "logistic_hazard" else pmf_survival(out)

    def _risk(self, out: np.ndarray) -> np.ndarray:
        if self.kind == "deepsurv":
            return out[..., 0]
        surv = self._grid(out)
        rmst = self.cuts_[0] + 0.5 * (surv[..., :-1] + surv[..., 1:]) @ np.diff(self.cuts_)  # trapezoids
        return self.cuts_[-1] - rmst

    def _survival(self, out: np.ndarray, times: np.ndarray) -> np.ndarray:
        if self.kind == "deepsurv":
            return breslow_survival(self.baseline_time_, self.baseline_cumhaz_, times, out[..., 0])
        surv, cuts = self._grid(out), self.cuts_
        left = np.clip(np.searchsorted(cuts, times, side="right") - 1, 0, len(cuts) - 2)
        frac = np.clip((times - cuts[left]) / (cuts[left + 1] - cuts[left]), 0.0, 1.0)
        inside = surv[..., left] * (1.0 - frac) + surv[..., left + 1] * frac
        return np.where(times < cuts[0], 1.0, inside)

    # ------------------------------------------------------------- persistence
    def state_dict(self) -> dict:
        """Plain dict (tensors, numbers, strings, lists) holding everything needed to score."""
        self._check_fitted()
        state = {
            "format": STATE_FORMAT,
            "config": {"kind": self.kind, "hidden": [int(h) for h in self.hidden], "dropout": float(self.dropout),
                       "batch_norm": bool(self.batch_norm), "n_durations": int(self.n_durations),
                       "cut_scheme": self.cut_scheme, "n_features_in": int(self.n_features_in_),
                       "alpha": self.alpha, "sigma": self.sigma},
            "weights": {k: v.detach().cpu().clone() for k, v in self.net_.state_dict().items()},
            "history": {c: self.history_[c].tolist() for c in ("train_loss", "val_loss")},
            "best_epoch": int(self.best_epoch_),
            "fit_params": dict(self.fit_params_),
        }
        if self.kind == "deepsurv":
            state["baseline_time"] = torch.as_tensor(self.baseline_time_)
            state["baseline_cumhaz"] = torch.as_tensor(self.baseline_cumhaz_)
        else:
            state["cuts"] = torch.as_tensor(self.cuts_)
        return state

    @classmethod
    def from_state(cls, state: dict, device: str = "cpu") -> "DeepSurvivalModel":
        """Rebuild a fitted model from :meth:`state_dict` on ``device``."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"unsupported deep-model state format {state.get('format')!r}; expected {STATE_FORMAT}")
        cfg = state["config"]
        model = cls(cfg["kind"], tuple(cfg["hidden"]), cfg["dropout"], cfg["batch_norm"], cfg["n_durations"],
                    cfg["cut_scheme"], device, cfg.get("alpha", 0.2), cfg.get("sigma", 0.1))
        model.device_, model.n_features_in_ = resolve_device(device), cfg["n_features_in"]
        if model.kind == "deepsurv":
            model.baseline_time_ = state["baseline_time"].numpy()
            model.baseline_cumhaz_ = state["baseline_cumhaz"].numpy()
            n_out = 1
        else:
            model.cuts_ = state["cuts"].numpy()
            n_out = len(model.cuts_)
        net = MLP(model.n_features_in_, model.hidden, n_out, model.dropout, model.batch_norm)
        net.load_state_dict(state["weights"])
        model.net_ = net.to(model.device_).eval()
        hist = state["history"]
        model.history_ = pd.DataFrame({"epoch": np.arange(len(hist["train_loss"])), **hist})
        model.best_epoch_, model.fit_params_ = state["best_epoch"], dict(state["fit_params"])
        return model

    def save(self, path: str | Path) -> None:
        """Write :meth:`state_dict` with ``torch.save`` (atomically, byte-identical for the same state).

        ``torch.save`` names the archive inside the file after the file it writes to; saving to
        a buffer first keeps the temporary file name out of it.
        """
        buffer = io.BytesIO()
        torch.save(self.state_dict(), buffer)
        with atomic_path(path) as tmp:
            Path(tmp).write_bytes(buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> "DeepSurvivalModel":
        """Read a file written by :meth:`save` (``weights_only=True``, mapped to the CPU first)."""
        return cls.from_state(torch.load(path, map_location="cpu", weights_only=True), device)

    # ------------------------------------------------------------------ checks
    def _check_params(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown deep survival model {self.kind!r}; available: {', '.join(KINDS)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.cut_scheme not in ("quantiles", "equidistant"):
            raise ValueError(f"cut_scheme must be 'quantiles' or 'equidistant', got {self.cut_scheme!r}")

    def _check_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise NotFittedError("this DeepSurvivalModel is not fitted yet; call fit() first")

    def _check_x(self, x: np.ndarray) -> np.ndarray:
        self._check_fitted()
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features_in_:
            raise ValueError(f"x must have shape (n, {self.n_features_in_}), got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("x contains NaN or infinite values; impute and standardise first")
        return x


def _mc_outputs_loop(model: DeepSurvivalModel, x: np.ndarray, mc_samples: int, seed: int) -> np.ndarray:
    """Reference MC dropout with T separate forward passes (tests and benchmarks only)."""
    x = model._check_x(x)
    masks = draw_masks(seed, x, mc_samples, model.hidden, model.dropout)
    xt = torch.as_tensor(x, dtype=torch.float32, device=model.device_)
    out = mc_forward_loop(model.net_, xt, [m.to(model.device_) for m in masks])
    return out.cpu().numpy().astype(np.float64)


def _check_data(x: np.ndarray, time: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, ...]:
    x = np.asarray(x, dtype=np.float64)
    time = np.asarray(time, dtype=np.float64).ravel()
    event = np.asarray(event).ravel()
    if x.ndim != 2 or not (len(x) == len(time) == len(event)):
        raise ValueError(f"x must be 2-D with one row per time/event; got x {x.shape}, time {time.shape}, "
                         f"event {event.shape}")
    if not np.isfinite(x).all():
        raise ValueError("x contains NaN or infinite values; impute and standardise first")
    if not (np.isfinite(time).all() and (time >= 0).all()):
        raise ValueError("time must be finite and non-negative")
    if not np.isin(event, (0, 1)).all():
        raise ValueError("event must be 0 (censored) or 1 (event)")
    event = event.astype(np.int64)
    if event.sum() < 2:
        raise ValueError(f"need at least 2 events to fit a survival model, got {event.sum()}")
    return x, time, event
