"""IBSI digital phantom: our PET metrics, our IVH and pyradiomics against the IBSI reference values.

Usage: python bench/ibsi_table.py > table.md

Writes the phantom (tests/features/ibsi_phantom.py) to a temporary folder, runs
``biomarkers.features.pet.pet_metrics``, ``biomarkers.features.ivh.ivh_metrics`` and
pyradiomics through ``biomarkers.features.lesions.lesion_features`` (parameter file
tests/features/ibsi_phantom_params.yaml), and prints a Markdown table: one row per IBSI
feature, the reference value and tolerance, the column that implements it, its value, whether
it is within the tolerance, and why not. docs/ibsi.md holds the table this prints.
"""
from __future__ import annotations

import importlib.util
import logging
import tempfile
from pathlib import Path

import numpy as np

from biomarkers.features.ivh import ivh_metrics
from biomarkers.features.lesions import lesion_features
from biomarkers.features.pet import pet_metrics

TESTS = Path(__file__).resolve().parents[1] / "tests" / "features"
PARAMS = TESTS / "ibsi_phantom_params.yaml"


def load_phantom_module():
    """tests/features/ibsi_phantom.py, imported by path (the tests folder is not a package)."""
    spec = importlib.util.spec_from_file_location("ibsi_phantom", TESTS / "ibsi_phantom.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def our_values(phantom) -> dict[str, float]:
    """PET metrics and IVH features of the phantom's ROI, by column name."""
    row = pet_metrics(phantom.PHANTOM.astype(np.float64), phantom.MASK.astype(np.int64), phantom.SPACING_MM)
    values = {column: float(row.iloc[0][column]) for column in row.columns}
    values.update(ivh_metrics(phantom.PHANTOM[phantom.MASK == 1]))
    return values


def pyradiomics_values(phantom) -> dict[str, float]:
    """pyradiomics' features of the phantom's ROI (label 1), by column name."""
    with tempfile.TemporaryDirectory() as folder:
        image_path, mask_path = phantom.write_phantom(folder)
        table, _ = lesion_features(image_path, mask_path, "ibsi-phantom", PARAMS)
    return {column: float(value) for column, value in table.iloc[0].items() if column.startswith("original_")}


def table_rows(phantom) -> list[dict[str, str]]:
    """One row per compared feature: ours first, then pyradiomics'."""
    rows = []
    ours = our_values(phantom)
    radiomics = pyradiomics_values(phantom)
    sources = [("biomarkers", tag, column, ours[column] * factor, note, None)
               for tag, (column, factor, _, note) in phantom.OURS.items()]
    sources += [("pyradiomics", tag, column, radiomics[column], note, phantom.PYRADIOMICS_TRANSFORMS.get(tag))
                for tag, (column, _, note) in phantom.PYRADIOMICS.items()]
    for source, tag, column, value, note, transform in sources:
        reference, tolerance = phantom.REFERENCE[tag]
        section, name = phantom.NAMES[tag]
        agrees = abs(value - reference) <= tolerance
        if transform is not None:
            converted = transform(value)
            verdict = "agrees" if abs(converted - reference) <= tolerance else "still differs"
            note = f"{note}; converted to IBSI's definition: {converted:.4g} ({verdict})"
        # Parentheses: the manual gives no tolerance; half a unit of the 3rd significant digit.
        spread = f"(± {tolerance:g})" if tag in phantom.ROUNDED else f"± {tolerance:g}"
        rows.append({"source": source, "tag": tag, "name": f"{name} ({section})",
                     "reference": f"{reference:g} {spread}",
                     "column": column, "value": f"{value:.4g}", "agrees": "yes" if agrees else "no", "note": note})
    return rows


def markdown(rows: list[dict[str, str]]) -> str:
    header = ("| IBSI tag | IBSI name (manual section) | reference ± tolerance | column | value | agrees | note |\n"
              "|---|---|---|---|---|---|---|\n")
    body = "".join(f"| `{r['tag']}` | {r['name']} | {r['reference']} | `{r['column']}` | {r['value']} | "
                   f"{r['agrees']} | {r['note']} |\n" for r in rows)
    return header + body


def main() -> None:
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    rows = table_rows(load_phantom_module())
    print(markdown(rows))
    for source in ("biomarkers", "pyradiomics"):
        mine = [r for r in rows if r["source"] == source]
        agree = sum(r["agrees"] == "yes" for r in mine)
        print(f"{source}: {len(mine)} features, {agree} within tolerance, {len(mine) - agree} outside.")


if __name__ == "__main__":
    main()
