"""Transfer learning for the end-to-end CNN: does a self-supervised encoder help where labels are few?

For each seed s of ``seeds``:

``scratch``
    the configured ``cnn_survival`` model, its encoder initialised by seed s (what the study fits);
``finetuned``
    the same network whose patch encoder starts from the encoder of a convolutional autoencoder
    (:func:`biomarkers.deep.autoencoder.train_autoencoder`, seed s) trained to reconstruct the PET
    and CT of every lesion patch available, of every cohort, without any outcome; then trained
    with the Cox loss as a whole;
``frozen``
    the same, with the pretrained encoder kept fixed (only the attention, burden pooling and
    head learn).

Every variant sees the same training subjects, covariates (the scratch bundle's preprocessing)
and hyperparameters. The validation cohort only scores the frozen networks: each variant's
Harrell's C is averaged over the seeds, and the difference to ``scratch`` gets a paired
percentile bootstrap over validation patients (the same resamples for every variant), so seed
noise and patient sampling both enter the comparison.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from biomarkers.stats import bootstrap_values, harrell_c

if TYPE_CHECKING:
    from biomarkers.survival.spec import ModelSpec

VARIANTS = ("scratch", "finetuned", "frozen")


def pretrain_encoder(patches: np.ndarray, channels: Sequence[str], latent: int, width: int, epochs: int,
                     seed: int) -> tuple[dict, list[float]]:
    """Encoder weights of an autoencoder trained on ``patches`` (no outcome), and its loss per epoch."""
    from biomarkers.deep.autoencoder import train_autoencoder
    from biomarkers.deep.defaults import AutoencoderTraining

    settings = AutoencoderTraining(latent=latent, epochs=epochs, seed=seed, width=width, device="cpu")
    model, history = train_autoencoder(patches, settings, channels)
    return {k: v.detach().cpu().clone() for k, v in model.encoder.state_dict().items()}, history["train_loss"]


@dataclass(frozen=True)
class PretrainingSettings:
    """The comparison's ``seeds`` (each fits every variant once), the autoencoder's ``epochs``,
    and the paired bootstrap's resamples ``n_boot`` and seed ``boot_seed`` (their defaults are the
    `pretraining` verb's and the workflow schema's)."""

    seeds: tuple[int, ...]
    epochs: int
    n_boot: int
    boot_seed: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        if not self.seeds or self.epochs < 1:
            raise ValueError(f"need at least one seed and one epoch, got seeds {self.seeds}, epochs {self.epochs}")


def compare_pretraining(train: pd.DataFrame, train_bags, validation: pd.DataFrame, validation_bags,
                        pretrain_patches: np.ndarray, spec: "ModelSpec",
                        settings: PretrainingSettings, progress: bool = False) -> dict:
    """Validation C of the three variants over the settings' seeds, with paired bootstrap differences
    to scratch.

    ``train_bags``/``validation_bags``: :class:`~biomarkers.deep.lesion_bags.LesionBags` of the two cohorts;
    ``pretrain_patches``: every patch the encoder may learn from (N, C, D, H, W); ``spec``: the
    end-to-end model (``cnn_survival``) as it is fitted, its seed replaced by each seed.
    """
    from biomarkers.survival.cnn import CnnTraining, fit_lesion_bag_cox, risk_samples
    from biomarkers.survival.bundle import fit_bundle

    seeds, pretrain_epochs, n_boot, boot_seed = settings.seeds, settings.epochs, settings.n_boot, settings.boot_seed

    if spec.kind != "cnn_survival":
        raise ValueError(f"the pretraining comparison is of an end-to-end model (cnn_survival), not {spec.kind}")
    training = CnnTraining.from_hyperparameters(spec.hyperparameters)
    t_val, e_val = validation["time"].to_numpy(float), validation["event"].to_numpy(int)
    risks: dict[str, list[np.ndarray]] = {v: [] for v in VARIANTS}
    losses = {}
    channels = list(train_bags.spec.channels)
    for seed in tqdm(list(seeds), desc="pretraining comparison", disable=not progress):
        bundle, _ = fit_bundle(train, spec.with_params(seed=seed), bags=train_bags)
        x_train, x_val = bundle.design(train), bundle.design(validation)
        bags_train = bundle.inputs(train, train_bags)["bags"]
        bags_val = bundle.inputs(validation, validation_bags)["bags"]
        risks["scratch"].append(risk_samples(bundle.estimator.net_, bags_val, x_val, 0)[0])
        encoder, losses[seed] = pretrain_encoder(pretrain_patches, channels, training.latent, training.width,
                                                 pretrain_epochs, seed)
        for variant in ("finetuned", "frozen"):
            fitted = fit_lesion_bag_cox(bags_train, x_train, train["time"].to_numpy(float),
                                        train["event"].to_numpy(int), replace(training, seed=seed),
                                        encoder_state=encoder, freeze_encoder=variant == "frozen")
            risks[variant].append(risk_samples(fitted.net, bags_val, x_val, 0)[0])

    def mean_c(variant: str, i: np.ndarray) -> float:
        return float(np.mean([harrell_c(t_val[i], e_val[i], r[i]) for r in risks[variant]]))

    n = len(validation)
    out: dict = {"seeds": list(seeds), "pretrain_epochs": pretrain_epochs, "n_pretrain_patches": int(len(pretrain_patches)),
                 "pretrain_loss": {str(s): [float(v) for v in l] for s, l in losses.items()}, "variants": {}}
    for variant in VARIANTS:
        per_seed = [harrell_c(t_val, e_val, r) for r in risks[variant]]
        boot = bootstrap_values(lambda i, v=variant: mean_c(v, i), n, n_boot, boot_seed)
        entry = {"harrell_c_per_seed": per_seed, "harrell_c_mean": float(np.mean(per_seed)),
                 "harrell_c_seed_sd": float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0,
                 "ci95": [float(v) for v in np.percentile(boot[np.isfinite(boot)], [2.5, 97.5])]}
        if variant != "scratch":
            diff = bootstrap_values(lambda i, v=variant: mean_c(v, i) - mean_c("scratch", i), n, n_boot, boot_seed)
            diff = diff[np.isfinite(diff)]
            entry["minus_scratch"] = {"estimate": entry["harrell_c_mean"] - out["variants"]["scratch"]["harrell_c_mean"],
                "ci95": [float(v) for v in np.percentile(diff, [2.5, 97.5])],
                "p": float(min(1.0, 2 * min((diff <= 0).mean(), (diff >= 0).mean())))}
        out["variants"][variant] = entry
    return out
