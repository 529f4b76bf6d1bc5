"""Shared survival fixtures: scikit-survival's GBSG2 breast-cancer data as a feature table."""
import numpy as np
import pandas as pd
import pytest
from sksurv.datasets import load_gbsg2


@pytest.fixture(scope="session")
def gbsg2():
    x, y = load_gbsg2()
    table = pd.DataFrame({
        "subject_id": [f"g{i:03d}" for i in range(len(x))],
        "time": y["time"], "event": y["cens"].astype(int),
        "age": x["age"], "estrec": x["estrec"], "pnodes": x["pnodes"], "progrec": x["progrec"],
        "tsize": x["tsize"], "horTh_yes": (x["horTh"] == "yes").astype(float),
        "menostat_Post": (x["menostat"] == "Post").astype(float),
        "tgrade_II": (x["tgrade"] == "II").astype(float), "tgrade_III": (x["tgrade"] == "III").astype(float),
    })
    rng = np.random.default_rng(42)  # fixed split
    test = rng.permutation(len(table))[: len(table) // 3]
    is_test = np.zeros(len(table), bool)
    is_test[test] = True
    return table[~is_test].reset_index(drop=True), table[is_test].reset_index(drop=True)
