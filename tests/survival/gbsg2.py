"""GBSG2 feature names of the survival tests' table (fixture ``gbsg2`` in conftest.py)."""

FEATURES = ["age", "estrec", "pnodes", "progrec", "tsize", "horTh_yes", "menostat_Post", "tgrade_II", "tgrade_III"]
LOGS = ["estrec", "pnodes", "progrec"]
