"""Unsupervised patient subtypes from imaging features: fitted on the training cohort, frozen.

The features (by default the autoencoder's ``largest_deep_*`` vector) are imputed, harmonised
across centres with ComBat and z-scored by :class:`~biomarkers.survival.preprocess.FeaturePipeline`
fitted on the training cohort with no screening or filter (no outcome decides anything), then clustered by
k-means (scikit-learn, ``n_init`` seeded restarts). The number of clusters is the one of ``ks``
with the largest mean silhouette on the training cohort. Every other cohort is assigned to the
nearest frozen centroid after the frozen preprocessing (its centre's ComBat estimates from its
own feature values, as the models do); nothing is refitted on it. Subtypes are numbered by
decreasing size in the training cohort (1 = largest), so the numbering does not depend on
k-means' initialisation.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from biomarkers.errors import FeatureTableError
from biomarkers.survival.preprocess import FeaturePipeline, select_features

CENTER = "center"


@dataclass
class Subtypes:
    """Frozen preprocessing and centroids."""

    pipeline: FeaturePipeline
    centroids: np.ndarray
    silhouettes: dict[int, float] = field(default_factory=dict)

    @property
    def k(self) -> int:
        return len(self.centroids)

    def design(self, table: pd.DataFrame) -> np.ndarray:
        centers = table[CENTER].astype(str).to_numpy() if self.pipeline.combat_ is not None else None
        return self.pipeline.transform(table, centers).to_numpy(float)

    def assign(self, table: pd.DataFrame) -> np.ndarray:
        """Subtype (1..k) of every row: the nearest centroid."""
        x = self.design(table)
        d = ((x[:, None, :] - self.centroids[None]) ** 2).sum(axis=-1)
        return d.argmin(axis=1) + 1

    def to_dict(self) -> dict:
        return {"pipeline": self.pipeline.to_dict(), "centroids": self.centroids.tolist(),
                "silhouettes": {str(k): v for k, v in self.silhouettes.items()}, "k": self.k}


def fit_subtypes(table: pd.DataFrame, features: Sequence[str] = ("largest_deep_*",), ks: Sequence[int] = (2, 3, 4),
                 harmonize: bool = True, seed: int = 0, n_init: int = 20) -> Subtypes:
    """Fit the subtypes on the training cohort's feature table (outcomes decide nothing)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    names = select_features(table, list(features))
    if len(table) < 2 * max(ks):
        raise FeatureTableError(f"{len(table)} training subjects: too few for {max(ks)} subtypes")
    harmonize = harmonize and CENTER in table.columns and table[CENTER].nunique() > 1
    pipeline = FeaturePipeline(names, (), harmonize=harmonize, combat_features=names if harmonize else None,
                               corr_threshold=None, fdr_q=None)
    # without screening or filter every feature is kept; the pipeline's univariate Cox fits only
    # order the columns, to which k-means is indifferent, so the outcome decides nothing here
    pipeline.fit(table, table["time"].to_numpy(float), table["event"].to_numpy(int),
                 table[CENTER].astype(str).to_numpy() if harmonize else None)
    subtypes = Subtypes(pipeline, np.zeros((1, len(names))))
    x = subtypes.design(table)
    best, fits = None, {}
    for k in ks:
        km = KMeans(k, n_init=n_init, random_state=seed).fit(x)
        fits[k] = km
        subtypes.silhouettes[k] = float(silhouette_score(x, km.labels_))
        if best is None or subtypes.silhouettes[k] > subtypes.silhouettes[best]:
            best = k
    km = fits[best]
    sizes = np.bincount(km.labels_, minlength=best)
    order = np.lexsort((np.arange(best), -sizes))  # largest first, ties by k-means' index
    subtypes.centroids = km.cluster_centers_[order]
    return subtypes
