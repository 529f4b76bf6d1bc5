"""A frozen signature: one folder with everything that turns a new patient's images into the
study's score.

Layout::

    signature.json     settings of every per-patient step (SUV normalisation, segmentation method
                       and parameters, where organ masks come from, texture aggregation, covariates
                       and their levels), the harmonisation reference, the training cohort's risks,
                       the library versions
    radiomics.yaml     the pyradiomics parameter file the study extracted with
    model/             the survival model's frozen bundle, as ``fit`` wrote it (its own manifest:
                       preprocessing, model state, risk cut-off, abstention rule, feature columns)
    unet.pt            the U-Net, when the lesions or the organ masks come from it
    autoencoder.pt     the deep-feature encoder, when the model reads deep features
    manifest.json      SHA-256 of every other file; its own SHA-256 is the signature's hash

**Harmonisation reference.** With ComBat, the study harmonised a centre that was not in the
training cohort (a validation centre) from that cohort's own feature values. Those estimates are
kept here, so that a patient of such a centre is harmonised exactly as the study harmonised them;
a centre the signature has never seen is estimated from the new patients of that centre
(:func:`biomarkers.signature.predict.predict_patients`), and needs as many as ComBat does.

Nothing here is executable: settings are plain JSON read into typed objects, weights are read
by the same loaders the study uses, and no file is unpickled.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from biomarkers.errors import ModelBundleError
from biomarkers.io.atomic import atomic_folder, read_parquet_metadata
from biomarkers.io.provenance import sha256_file

SIGNATURE_FORMAT = 1
MANIFEST = "manifest.json"
#: Where a threshold segmentation's organ masks come from: the user's (``--organs``), the
#: signature's organ-aware U-Net, or none (organs not excluded).
ORGAN_SOURCES = ("given", "unet", "none")
#: Which lesions the model's features describe: the threshold/reference segmentation's, or the U-Net's.
LESION_SOURCES = ("pipeline", "unet")


@dataclass
class SignatureSettings:
    """The per-patient steps of the study, as the workflow ran them (all JSON values)."""

    suv_normalisation: str = "bw"
    method: str = "relative"
    threshold: float = 2.5
    fraction: float = 0.41
    min_volume_ml: float = 0.5
    organs: str = "none"
    lesions: str = "pipeline"
    unet_probability: float = 0.5
    unet_tta: bool = False
    unet_ct: bool = True
    unet_organs: bool = False
    deep_ct: bool = True
    texture: str = "largest"
    covariates: list[str] = field(default_factory=list)
    categorical: dict[str, list[str]] = field(default_factory=dict)

    def check(self) -> "SignatureSettings":
        if self.organs not in ORGAN_SOURCES:
            raise ValueError(f"organs must be one of {', '.join(ORGAN_SOURCES)}, not {self.organs!r}")
        if self.lesions not in LESION_SOURCES:
            raise ValueError(f"lesions must be one of {', '.join(LESION_SOURCES)}, not {self.lesions!r}")
        return self


def export_signature(out: str | Path, model_dir: str | Path, settings: SignatureSettings,
                     radiomics_params: str | Path, training_scores: str | Path,
                     cohort_tables: Sequence[str | Path] = (), unet: str | Path | None = None,
                     autoencoder: str | Path | None = None) -> str:
    """Write the signature folder ``out`` atomically and return its SHA-256.

    Parameters
    ----------
    out : path
        Folder to write (replaced if it exists).
    model_dir : path
        The frozen model (``biomarkers fit``'s folder).
    settings : SignatureSettings
        The per-patient steps.
    radiomics_params : path
        The pyradiomics parameter file of the study.
    training_scores : path
        The model's scores of the training cohort (the distribution a new patient is shown against).
    cohort_tables : paths
        Feature tables of the cohorts the study scored besides the training one; with ComBat,
        their unseen centres' estimates become the harmonisation reference.
    unet, autoencoder : path, optional
        Network weights, needed when ``settings`` use the U-Net or the model deep features.
    """
    from biomarkers.survival.bundle import CENTER, bundle_sha256, library_versions, load_bundle, read_feature_table

    settings.check()
    bundle = load_bundle(model_dir)
    if bundle.estimator.needs_bags:
        raise ModelBundleError(f"{model_dir}: model {bundle.model} reads lesion patches; a signature of an "
                               "end-to-end model is not supported yet (make another model the primary one)")
    needs_unet = settings.lesions == "unet" or settings.organs == "unet"
    if needs_unet and unet is None:
        raise ValueError("the settings use the U-Net (lesions or organs); give its checkpoint")
    deep = [f for f in bundle.preprocessor.features_ if "deep_" in f]
    if deep and autoencoder is None:
        raise ValueError(f"the model reads deep features ({deep[0]}, ...); give the autoencoder")
    reference: dict[str, dict[str, Any]] = {}
    for path in cohort_tables:
        table = read_feature_table(path, need_outcome=False)
        if bundle.preprocessor.combat_ is None or CENTER not in table.columns:
            continue
        cohort = str(read_parquet_metadata(path).get("cohort", Path(path).stem))
        found = bundle.preprocessor.new_centre_estimates(table, table[CENTER].astype(str).to_numpy())
        for centre, est in found.items():
            reference.setdefault(centre, {**est, "cohort": cohort})
    if read_parquet_metadata(training_scores).get("bundle_sha256") != bundle.sha256:
        raise ModelBundleError(f"{training_scores}: not the scores of the model {model_dir}")
    scores = pd.read_parquet(training_scores, columns=["risk"])
    out = Path(out)
    with atomic_folder(out) as tmp:
        shutil.copytree(model_dir, tmp / "model")
        shutil.copyfile(radiomics_params, tmp / "radiomics.yaml")
        if needs_unet:
            shutil.copyfile(unet, tmp / "unet.pt")
        if deep:
            shutil.copyfile(autoencoder, tmp / "autoencoder.pt")
        state = {
            "signature_format": SIGNATURE_FORMAT,
            "model": bundle.model,
            "model_sha256": bundle_sha256(model_dir),
            "settings": asdict(settings),
            "unet": "unet.pt" if needs_unet else None,
            "autoencoder": "autoencoder.pt" if deep else None,
            "harmonisation_reference": reference,
            "training_risk": sorted(float(r) for r in scores["risk"]),
            "versions": library_versions(),
        }
        (tmp / "signature.json").write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
        files = {p.relative_to(tmp).as_posix(): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        (tmp / MANIFEST).write_text(json.dumps({"signature_format": SIGNATURE_FORMAT, "files": files}, indent=2,
                                               sort_keys=True) + "\n")
    return sha256_file(out / MANIFEST)


def check_signature(folder: str | Path, expect_sha256: str | None = None) -> tuple[dict, str]:
    """The signature's ``signature.json`` and SHA-256, once every file matches the manifest (and
    the hash ``expect_sha256``, when given).

    Raises
    ------
    ModelBundleError
        A missing, extra-listed or changed file, or another signature than the expected one.
    """
    folder = Path(folder)
    manifest = folder / MANIFEST
    if not (folder / "signature.json").is_file() or not manifest.is_file():
        raise ModelBundleError(f"{folder}: not a signature folder (signature.json or {MANIFEST} missing); "
                               "export one with the workflow (results/<study>/signature)")
    try:
        files = {str(k): str(v) for k, v in json.loads(manifest.read_text())["files"].items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ModelBundleError(f"{manifest}: not a signature manifest") from None
    for name, digest in sorted(files.items()):
        path = folder / name
        if ".." in Path(name).parts or Path(name).is_absolute() or not path.is_file():
            raise ModelBundleError(f"{path}: listed in {MANIFEST} but missing from the signature")
        if sha256_file(path) != digest:
            raise ModelBundleError(f"{path}: SHA-256 differs from the one in {MANIFEST} (file changed after "
                                   "export); restore the published signature")
    if "signature.json" not in files:
        raise ModelBundleError(f"{manifest}: does not list signature.json")
    digest = sha256_file(manifest)
    if expect_sha256 is not None and digest != expect_sha256.strip().lower():
        raise ModelBundleError(f"{manifest}: signature SHA-256 {digest} is not the expected {expect_sha256.strip()}")
    state = json.loads((folder / "signature.json").read_text())
    if state.get("signature_format") != SIGNATURE_FORMAT:
        raise ModelBundleError(f"{folder / 'signature.json'}: signature format {state.get('signature_format')}, "
                               f"this version reads {SIGNATURE_FORMAT}")
    return state, digest
