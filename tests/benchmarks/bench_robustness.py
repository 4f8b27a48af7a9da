"""Wall time of `radpipe robustness` on the 39 STS FDG-PET cases (issue 16 acceptance).

Rotation {-15, 0, 15} degrees x 2 noise repeats x volume {-10%, 0, +10%} = 18 versions per case, Original + LoG
(3 sigmas), with pipelines/sts_pet_robustness.yaml. Target on an idle 2-core machine: <= 5 min from a cold cache.
Run with `make bench` (pytest -s -m bench tests/benchmarks).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from radpipe.cohort import load_cohort
from radpipe.config import load_recipe
from radpipe.robustness.stage import robustness_cohort

pytestmark = [pytest.mark.bench, pytest.mark.realdata]

RECIPE = Path(__file__).resolve().parents[2] / "pipelines" / "sts_pet_robustness.yaml"


def test_sts_pet_robustness_wall_time(data_dir, tmp_path):
    recipe = load_recipe(RECIPE)
    cohort = load_cohort(str(data_dir / "sts_pet"))
    start = time.perf_counter()
    result = robustness_cohort(cohort, recipe.extract, recipe.robustness, tmp_path / "rob", jobs=2)
    elapsed = time.perf_counter() - start
    shares = result.share_robust()
    print(f"\n[bench] robustness sts_pet: {len(cohort.cases)} cases x {len(result.versions)} versions, "
          f"{result.computed} extractions, {elapsed:.1f} s wall on jobs=2 (target <= 300 s on an idle machine)")
    print(shares.to_string(index=False))
    assert len(result.versions) == 18 and result.n_failed == 0
    assert set(result.robustness["n_cases"]) == {len(cohort.cases)}
