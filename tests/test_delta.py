"""Delta radiomics (issue 18 item 4): features per time point, their change and their relative change.

Synthetic baseline/follow-up pairs: a uniform sphere on a 1 mm grid that grows by a known radius and brightens
by a known amount. The mean intensity of a uniform ROI is exact, so its delta must equal the brightening exactly.
A voxelised sphere's volume differs from 4/3 pi r^3 by the voxelisation (measured here at -1.7% to +3.4% for radii
5-10 mm), so the volume delta must equal the voxel-count difference exactly and the analytic change within 4% of
the two volumes together.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from radpipe.cohort import discover
from radpipe.config import DatasetSpec, load_datasets
from radpipe.errors import ConfigError
from radpipe.extract.settings import ExtractSettings
from radpipe.extract.stage import extract_cohort

SIZE = 40
SETTINGS = ExtractSettings(featureClass={"shape": ["VoxelVolume"], "firstorder": ["Mean", "Minimum"]})
# case: (baseline radius mm, baseline intensity, follow-up radius, follow-up intensity)
CASES = {"grow": (6.0, 100.0, 8.0, 120.0), "double": (5.0, 50.0, 10.0, 50.0), "zero": (6.0, 0.0, 7.0, 40.0)}


def _ball(radius: float) -> np.ndarray:
    z, y, x = np.mgrid[:SIZE, :SIZE, :SIZE]
    centre = SIZE / 2
    return ((z - centre) ** 2 + (y - centre) ** 2 + (x - centre) ** 2 <= radius**2).astype(np.uint8)


def _write(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.0, 1.0, 1.0))
    sitk.WriteImage(image, str(path))


@pytest.fixture(scope="module")
def longitudinal(tmp_path_factory):
    root = tmp_path_factory.mktemp("delta")
    for case_id, (r0, v0, r1, v1) in CASES.items():
        for point, radius, value in (("baseline", r0, v0), ("follow_up", r1, v1)):
            mask = _ball(radius)
            _write(np.where(mask, value, 10.0).astype(np.float32), root / point / "images" / f"{case_id}.nii.gz")
            _write(mask, root / point / "masks" / f"{case_id}.nii.gz")
    spec = DatasetSpec.model_validate({"root": str(root), "labels": None, "timepoints": {
        "baseline": {"images": "baseline/images/*", "masks": "baseline/masks/*"},
        "follow_up": {"images": "follow_up/images/*", "masks": "follow_up/masks/*"}}})
    cohort = discover("growth", spec)
    return cohort, extract_cohort(cohort, SETTINGS, tmp_path_factory.mktemp("out"))


def test_delta_of_volume_and_mean_equal_the_known_growth(longitudinal):
    _, result = longitudinal
    table = result.features
    for case_id, (r0, v0, r1, v1) in CASES.items():
        row = table.loc[case_id]
        n0, n1 = int(_ball(r0).sum()), int(_ball(r1).sum())
        assert row["baseline_original_shape_VoxelVolume"] == n0 and row["follow_up_original_shape_VoxelVolume"] == n1
        assert row["delta_original_shape_VoxelVolume"] == n1 - n0
        assert row["reldelta_original_shape_VoxelVolume"] == pytest.approx((n1 - n0) / n0, rel=1e-12)
        analytic0, analytic1 = (4 / 3 * math.pi * r**3 for r in (r0, r1))
        assert abs(row["delta_original_shape_VoxelVolume"] - (analytic1 - analytic0)) <= 0.04 * (analytic0 + analytic1)
        assert row["delta_original_firstorder_Mean"] == v1 - v0
        if v0:
            assert row["reldelta_original_firstorder_Mean"] == pytest.approx((v1 - v0) / v0, rel=1e-12)
    values = table.select_dtypes("number").to_numpy()
    assert not np.isinf(values).any()


def test_a_zero_baseline_gives_an_empty_relative_change_and_a_qc_note(longitudinal):
    _, result = longitudinal
    row = result.features.loc["zero"]
    assert np.isnan(row["reldelta_original_firstorder_Mean"]) and np.isnan(row["reldelta_original_firstorder_Minimum"])
    assert row["delta_original_firstorder_Mean"] == 40.0
    notes = result.qc[result.qc["action"] == "zero_baseline"]
    assert notes["case_id"].tolist() == ["zero"] and notes["status"].tolist() == ["fixed"]
    assert "original_firstorder_Mean" in notes["reason"].item()
    assert "original_firstorder_Minimum" in notes["reason"].item()


def test_the_codebook_says_how_each_column_was_computed(longitudinal):
    _, result = longitudinal
    book = pd.read_csv(result.out_dir / "codebook.csv", keep_default_na=False).set_index("column")
    assert book.index.tolist() == list(result.features.columns)
    assert book.loc["baseline_original_firstorder_Mean", "derivation"] == "measured at baseline"
    assert book.loc["delta_original_firstorder_Mean", "derivation"] == "follow_up − baseline"
    assert book.loc["reldelta_original_shape_VoxelVolume", "derivation"].startswith("(follow_up − baseline) / |baseline|")
    assert book.loc["delta_original_shape_VoxelVolume", "unit"] == book.loc["baseline_original_shape_VoxelVolume", "unit"]
    assert book.loc["reldelta_original_shape_VoxelVolume", "unit"] == ""
    assert book.loc["delta_original_firstorder_Mean", "timepoint"] == "delta"
    long = pd.read_csv(result.out_dir / "features_long.csv")
    assert set(long["timepoint"]) == {"baseline", "follow_up", "delta", "reldelta"}


def test_timepoint_config_errors(tmp_path):
    registry = tmp_path / "datasets.yaml"
    registry.write_text(f"""datasets:
  three:
    root: {tmp_path}
    timepoints: {{a: {{images: a/*, masks: am/*}}, b: {{images: b/*, masks: bm/*}}, c: {{images: c/*, masks: cm/*}}}}
""")
    with pytest.raises(ConfigError, match="exactly two"):
        load_datasets(registry)
    registry.write_text(f"""datasets:
  typo:
    root: {tmp_path}
    timepoints: {{baseline: {{images: a/*, masks: am/*}}, follow_up: {{images: b/*, mask: bm/*}}}}
""")
    with pytest.raises(ConfigError, match="datasets.typo.timepoints.follow_up.mask"):
        load_datasets(registry)
