"""Compare two results folders of the same study byte for byte: every file the reproducibility
test compares (cohort, segmentation, features, models, scores, metrics, report tables).

    python .ci/compare_runs.py RESULTS_A RESULTS_B
"""
import sys
from pathlib import Path

PATTERNS = ("cohort/*.tsv", "cohort/images/*.nii.gz", "segmentation/*.nii.gz", "unet/*.nii.gz", "features/*.parquet",
            "features/*/*.parquet", "stability/*.tsv", "scores/*/*.parquet", "metrics/*/*", "models/*/*",
            "models/*.tsv", "report/*.tsv")


def main(first: Path, second: Path) -> int:
    compared, differ = 0, []
    for pattern in PATTERNS:
        for a in sorted(first.glob(pattern)):
            b = second / a.relative_to(first)
            compared += 1
            if not b.is_file() or a.read_bytes() != b.read_bytes():
                differ.append(str(a.relative_to(first)))
    print(f"{compared} files compared, {len(differ)} differ" + "".join(f"\n  {d}" for d in differ[:20]))
    return 1 if differ or compared < 100 else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
