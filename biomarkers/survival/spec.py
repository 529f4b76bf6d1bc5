"""A survival model's specification: the model, its hyperparameters, its features and its preprocessing.

One typed value, :class:`ModelSpec`, is what :func:`~biomarkers.survival.bundle.fit_bundle`,
:func:`~biomarkers.survival.crossval.cross_validate` and the uncertainty methods fit, what
``fit --spec``, ``cv --spec`` and ``uncertainty-choice --spec`` read (JSON, :meth:`ModelSpec.to_json`)
and what the workflow builds from a config ``models:`` entry (:meth:`ModelSpec.from_entry`) while it
parses. A specification is checked when it is made: its JSON against :data:`SCHEMA`, the model
against :data:`~biomarkers.survival.hyperparameters.MODELS`, every hyperparameter against the
model's defaults (the value cast to the default's type), so a bad entry fails before any rule runs.

Like :mod:`biomarkers.survival.hyperparameters`, free of torch, scikit-learn and lifelines.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

import jsonschema

from biomarkers.survival.hyperparameters import MODELS, hyperparameters, is_stochastic

_NAMES = {"type": "array", "items": {"type": "string", "minLength": 1}}

#: JSON schema of a specification as :meth:`ModelSpec.record` writes it and ``--spec`` takes it.
SCHEMA: dict = {
    "type": "object",
    "properties": {
        "kind": {"enum": list(MODELS)},
        "features": {"anyOf": [{**_NAMES, "minItems": 1}, {"type": "null"}]},
        "log_features": _NAMES,
        "params": {"type": "object", "additionalProperties": {"type": ["number", "string", "boolean"]}},
        "pipeline": {"type": "object"},
    },
    "required": ["kind"],
    "additionalProperties": False,
}

#: Keys of a workflow ``models:`` entry that are not hyperparameters (``segmentation`` says which
#: lesions the entry's feature table comes from: the workflow's concern, not the model's).
ENTRY_KEYS = ("kind", "features", "add_features", "log_features", "segmentation")


@dataclass(frozen=True)
class ModelSpec:
    """What to fit: ``kind`` (a model of :data:`~biomarkers.survival.hyperparameters.MODELS`),
    ``features`` (default None: every numeric column; names may hold shell wildcards),
    ``log_features`` (those ``log1p``-transformed), ``params`` (the hyperparameters given, each cast to
    its default's type; :attr:`hyperparameters` adds the defaults) and ``pipeline`` (preprocessing
    options, :data:`~biomarkers.survival.bundle.PIPELINE_DEFAULTS`).

    Raises
    ------
    ValueError
        Unknown model or hyperparameter, or a value of the wrong type.
    """

    kind: str
    features: tuple[str, ...] | None = None
    log_features: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    pipeline: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        full = hyperparameters(self.kind, dict(self.params or {}))
        set_ = object.__setattr__
        set_(self, "features", None if self.features is None else tuple(self.features))
        set_(self, "log_features", tuple(self.log_features))
        set_(self, "params", {key: full[key] for key in (self.params or {})})
        set_(self, "pipeline", dict(self.pipeline or {}))

    @property
    def hyperparameters(self) -> dict[str, Any]:
        """Every hyperparameter of the model: its defaults updated with :attr:`params`."""
        return hyperparameters(self.kind, dict(self.params))

    @property
    def stochastic(self) -> bool:
        """Whether the model scores by MC dropout (:func:`~biomarkers.survival.hyperparameters.is_stochastic`)."""
        return is_stochastic(self.hyperparameters)

    def with_params(self, **changes: Any) -> "ModelSpec":
        """The same specification with some hyperparameters changed (e.g. another seed)."""
        return replace(self, params={**self.params, **changes})

    def with_pipeline(self, pipeline: Mapping[str, Any]) -> "ModelSpec":
        """The same specification with these preprocessing options."""
        return replace(self, pipeline=dict(pipeline))

    def record(self) -> dict:
        """The specification as plain JSON values, keys sorted (what a choice records and is checked against)."""
        return json.loads(json.dumps({"kind": self.kind,
                                      "features": None if self.features is None else list(self.features),
                                      "log_features": list(self.log_features), "params": dict(self.params),
                                      "pipeline": dict(self.pipeline)}, sort_keys=True))

    @classmethod
    def from_record(cls, record: Any, what: str = "model specification") -> "ModelSpec":
        """The specification :meth:`record` (or :meth:`to_json`) wrote; missing keys take their defaults.

        Raises
        ------
        ValueError
            Not a specification of :data:`SCHEMA`, or one :class:`ModelSpec` refuses.
        """
        try:
            jsonschema.validate(record, SCHEMA)
        except jsonschema.ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path)
            raise ValueError(f"{what}{' at ' + where if where else ''}: {exc.message}") from None
        try:
            return cls(record["kind"], record.get("features"), tuple(record.get("log_features", ())),
                       dict(record.get("params", {})), dict(record.get("pipeline", {})))
        except ValueError as exc:
            raise ValueError(f"{what}: {exc}") from None

    def to_json(self) -> str:
        """One line of JSON (``--spec``), without the preprocessing when it has none."""
        record = self.record()
        if not record["pipeline"]:
            del record["pipeline"]
        return json.dumps(record, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, what: str = "--spec") -> "ModelSpec":
        """The specification of :meth:`to_json`'s JSON text."""
        try:
            record = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{what}: not valid JSON ({exc})") from None
        return cls.from_record(record, what)

    @classmethod
    def from_entry(cls, name: str, entry: Mapping[str, Any], features: Sequence[str] = (),
                   log_features: Sequence[str] = ()) -> "ModelSpec":
        """The specification of a config ``models:`` entry ``name``.

        ``kind`` names the model (default: ``name``); ``features`` replaces the section-wide
        ``features`` and ``add_features`` extends them (empty: every numeric column);
        ``log_features`` replaces the section-wide ones, which otherwise apply as far as the
        entry's features hold them; every other key is a hyperparameter.
        """
        names = list(entry.get("features", features)) + list(entry.get("add_features", ()))
        logs = entry.get("log_features", [f for f in log_features if not names or f in names])
        params = {k: v for k, v in entry.items() if k not in ENTRY_KEYS}
        try:
            return cls(entry.get("kind", name), tuple(names) or None, tuple(logs), params)
        except ValueError as exc:
            raise ValueError(f"model {name}: {exc}") from None
