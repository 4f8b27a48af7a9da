"""Multimodal cohorts (issue 18): several images per case, one merged table with modality-prefixed columns.

Synthetic two-modality cohorts (two demo cohorts with different seeds standing for PET and MR) are extracted
together and each alone; the merged table must hold exactly the single-modality values.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from radpipe.cli import app
from radpipe.cohort import discover, load_cohort
from radpipe.config import DatasetSpec, load_datasets
from radpipe.demo import make_demo_cohort
from radpipe.errors import ConfigError
from radpipe.explain.attributions import feature_parts, grouped_parts, importance
from radpipe.extract.multimodal import part_settings
from radpipe.extract.settings import ExtractSettings
from radpipe.extract.stage import extract_cohort

SETTINGS = ExtractSettings(featureClass={"shape": ["VoxelVolume"], "firstorder": ["Mean", "Entropy"],
                                         "glcm": ["Contrast"]})
N_CASES = 4


def _spec(root: Path, **extra) -> DatasetSpec:
    return DatasetSpec.model_validate({"root": str(root), "labels": "labels.csv", "positive_class": "aggressive", **{
        "modalities": {
            "pet": {"images": "pet/images/*.nii.gz", "masks": "pet/masks/*.nii.gz"},
            "mr": {"images": "mr/images/*.nii.gz", "masks": "mr/masks/*.nii.gz",
                   "extract": {"setting": {"normalize": True, "binCount": 16}, "intensity_unit": "a.u."}}}},
        **extra})


@pytest.fixture(scope="module")
def two_modalities(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mm")
    make_demo_cohort(root / "pet", n_cases=N_CASES, seed=3)
    make_demo_cohort(root / "mr", n_cases=N_CASES, seed=11)
    shutil.copy(root / "pet" / "labels.csv", root / "labels.csv")
    return root


@pytest.fixture(scope="module")
def merged(two_modalities, tmp_path_factory):
    cohort = discover("mm", _spec(two_modalities))
    return cohort, extract_cohort(cohort, SETTINGS, tmp_path_factory.mktemp("out"))


def test_multimodal_extraction_equals_single_extractions_merged(two_modalities, merged, tmp_path):
    cohort, result = merged
    singles = {}
    for name in ("pet", "mr"):
        one = extract_cohort(load_cohort(str(two_modalities / name)), part_settings(cohort, name, SETTINGS),
                             tmp_path / name)
        singles[name] = one
    expected = pd.concat([singles[n].features.add_prefix(f"{n}_") for n in ("pet", "mr")], axis=1)
    pd.testing.assert_frame_equal(result.features, expected, check_exact=True, check_names=False)
    # byte for byte: the CSV text of every value is the single-modality CSV text
    text = pd.read_csv(result.out_dir / "features.csv", dtype=str).set_index("case_id")
    for name in ("pet", "mr"):
        alone = pd.read_csv(singles[name].out_dir / "features.csv", dtype=str).set_index("case_id")
        assert text[[f"{name}_{c}" for c in alone.columns]].to_numpy().tolist() == alone.to_numpy().tolist()
    # the MR settings came from the dataset: normalised, 16 bins; PET kept the cohort's automatic bin width
    assert result.parts["mr"].discretisation["binCount"] == 16
    assert "binWidth" in result.parts["pet"].discretisation
    assert len(result.features) == N_CASES and result.n_failed == 0


def test_prefixes_codebook_long_table_and_qc_name_the_modality(merged):
    _, result = merged
    out = result.out_dir
    columns = list(result.features.columns)
    assert columns[0] == "pet_original_shape_VoxelVolume" and "mr_original_glcm_Contrast" in columns
    book = pd.read_csv(out / "codebook.csv", keep_default_na=False)
    assert list(book.columns[:2]) == ["column", "modality"]
    assert book["column"].tolist() == columns
    assert book.set_index("column")["modality"].to_dict() == {c: c.split("_", 1)[0] for c in columns}
    row = book.set_index("column").loc["mr_original_firstorder_Mean"]
    assert row["display_name"].startswith("mr: ") and row["normalisation"] == "normalize"
    assert row["unit"] == "a.u."
    long = pd.read_csv(out / "features_long.csv")
    assert list(long.columns) == ["case_id", "roi", "modality", "image_type", "feature_class", "feature", "value"]
    assert len(long) == N_CASES * len(columns)
    value = long.query("case_id == 'demo_002' and modality == 'mr' and feature == 'Contrast'")["value"].item()
    assert value == result.features.loc["demo_002", "mr_original_glcm_Contrast"]
    qc = pd.read_csv(out / "qc.csv", keep_default_na=False)
    assert list(qc.columns) == ["case_id", "roi", "modality", "status", "action", "reason"]
    assert sorted(set(qc["modality"])) == ["mr", "pet"] and len(qc) == 2 * N_CASES
    diagnostics = pd.read_csv(out / "diagnostics.csv")
    assert diagnostics.groupby("modality").size().to_dict() == {"mr": N_CASES, "pet": N_CASES}
    for name in ("pet", "mr"):  # each modality's own outputs stay beside the merged ones
        assert (out / "modalities" / name / "features.csv").is_file()


@pytest.mark.parametrize("require_all", [True, False])
def test_a_missing_modality_is_a_qc_row_and_the_case_is_dropped_or_kept(two_modalities, merged, tmp_path,
                                                                           require_all):
    root = tmp_path / "cohort"
    shutil.copytree(two_modalities, root)
    (root / "mr" / "images" / "demo_002.nii.gz").unlink()
    cohort = discover("mm", _spec(root, require_all_modalities=require_all))
    result = extract_cohort(cohort, SETTINGS, tmp_path / "out", cache_dir=merged[1].out_dir / ".cache")
    qc = result.qc.set_index(["case_id", "modality"])
    row = qc.loc[("demo_002", "mr")]
    row = row[row["action"] == "missing_modality"].iloc[0]
    assert row["status"] == ("failed" if require_all else "fixed")
    assert "demo_002" in row["reason"] and "mr" in row["reason"]
    everything = merged[1].features
    if require_all:
        assert "demo_002" not in result.features.index and len(result.features) == N_CASES - 1
        assert [c.case_id for c in cohort.cases] == ["demo_001", "demo_003", "demo_004"]
    else:
        kept = result.features.loc["demo_002"]
        assert kept.filter(like="mr_").isna().all()
        pd.testing.assert_series_equal(kept.filter(like="pet_"), everything.loc["demo_002"].filter(like="pet_"),
                                       check_exact=True)
        assert cohort.labels["demo_002"] == "aggressive"  # kept for modelling, with its label
        # the model stage keeps the case and fills its empty MR cells from the training cases (median)
        from radpipe.model.settings import ModelSettings
        from radpipe.model.zoo import build_pipeline

        settings = ModelSettings(models=["logreg"], positive_class="aggressive", impute="median")
        pipe = build_pipeline("logreg", settings).fit(result.features, cohort.labels[result.features.index])
        imputed = pipe.named_steps["impute"].statistics_
        assert imputed[list(result.features.columns).index("mr_original_firstorder_Mean")] == pytest.approx(
            result.features["mr_original_firstorder_Mean"].median())
    assert result.n_failed == (1 if require_all else 0)


def _registry(tmp_path: Path, modality_mr: str) -> Path:
    path = tmp_path / "datasets.yaml"
    path.write_text(f"""datasets:
  mm:
    root: {tmp_path}
    modalities:
      pet: {{images: pet/images/*, masks: pet/masks/*}}
      mr: {modality_mr}
""")
    return path


@pytest.mark.parametrize(("entry", "named"), [
    ("{images: mr/images/*, masks: mr/masks/*, mask: x}", "datasets.mm.modalities.mr.mask"),
    ("{images: mr/images/*, mask_from: ct}", "mask_from names 'ct'"),
    ("{images: mr/images/*, masks: mr/masks/*, register_to: mr}", "register_to names 'mr'"),
    ("{images: mr/images/*, masks: mr/masks/*, extract: {binWidht: 2}}", "datasets.mm.modalities.mr.extract.binWidht"),
    ("{images: mr/images/*}", "either masks"),
    ("{images: mr/images/*, masks: mr/masks/*, register_to: pet, registration: {trasform: affine}}",
     "datasets.mm.modalities.mr.registration.trasform"),
])
def test_config_errors_name_the_key(tmp_path, entry, named):
    with pytest.raises(ConfigError) as caught:
        load_datasets(_registry(tmp_path, entry))
    assert named in str(caught.value) and "datasets.yaml" in str(caught.value)


def test_unknown_modality_key_is_exit_2(tmp_path):
    registry = _registry(tmp_path, "{images: mr/images/*, masks: mr/masks/*, imagse: x}")
    result = CliRunner().invoke(app, ["--datasets", str(registry), "extract", "mm", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "imagse" in result.output


def test_shap_is_grouped_by_modality_next_to_family_and_filter():
    shap = pd.DataFrame({"pet_original_glcm_Contrast": [0.30, -0.10], "pet_original_shape_VoxelVolume": [-0.05, 0.05],
                         "mr_t1_wavelet-LLH_firstorder_Mean": [0.10, 0.20], "mr_t1_original_glcm_Contrast": [0.0, -0.4],
                         "age": [0.01, 0.02]}, index=["a", "b"])
    assert feature_parts("mr_t1_wavelet-LLH_firstorder_Mean").items() >= {
        "modality": "mr_t1", "family": "first order", "filter": "wavelet", "class": "firstorder"}.items()
    by_modality = grouped_parts(shap, "modality")
    assert by_modality.loc["a"].to_dict() == pytest.approx({"mr_t1": 0.10, "none": 0.01, "pet": 0.25})
    imp = importance(SimpleNamespace(original=shap), SimpleNamespace(multiclass=False))
    # mean over patients of |sum within the modality|: pet (0.25, 0.05) -> 0.15, mr_t1 (0.10, 0.20) -> 0.15
    assert imp.modality.to_dict() == pytest.approx({"pet": 0.15, "mr_t1": 0.15, "none": 0.015})
    # family and filter still parse the prefixed names (texture: |0.3| and |-0.1 - 0.4| -> 0.4)
    assert imp.family["texture"] == pytest.approx(0.4) and "other" in imp.family.index
    assert imp.image_filter.to_dict() == pytest.approx({"original": 0.35, "wavelet": 0.15, "none": 0.015})
    one = importance(SimpleNamespace(original=shap.filter(like="pet_")), SimpleNamespace(multiclass=False))
    assert one.modality.empty  # one modality: nothing to group


def test_lesion_images_unpack_as_a_pair_and_keep_every_modality(merged):
    cohort, _ = merged
    images = cohort.cases[0].lesion_images
    image, mask = images
    assert (image, mask) == (cohort.cases[0].image, cohort.cases[0].mask)
    assert [name for name, *_ in images.parts] == ["pet", "mr"]
    assert pickle.loads(pickle.dumps(images)).parts == images.parts


@pytest.mark.realdata
@pytest.mark.slow
def test_sts_pet_mr_on_three_cases_equals_the_single_modality_runs(data_dir, tmp_path):
    from radpipe.config import load_recipe

    recipe = load_recipe(Path(__file__).resolve().parents[1] / "pipelines" / "sts_pet_mr.yaml")
    cohort = load_cohort("sts_pet_mr").subset(["STS_019", "STS_025", "STS_042"])  # the smallest
    settings = recipe.extract.model_copy(update={"featureClass": {"firstorder": ["Mean"], "glcm": ["Contrast"],
                                                                  "shape": ["MeshVolume"]}})
    result = extract_cohort(cohort, settings, tmp_path / "mm")
    for name in ("pet", "mr_t1"):
        alone = extract_cohort(cohort.parts[name], part_settings(cohort, name, settings), tmp_path / name)
        got = result.features.filter(regex=f"^{name}_original").rename(columns=lambda c, p=f"{name}_": c.removeprefix(p))
        pd.testing.assert_frame_equal(got, alone.features, check_exact=True, check_names=False)
    assert result.parts["pet"].discretisation["binWidth"] == 0.5  # from pet_3d.yaml, in SUV
    assert result.parts["mr_t1"].discretisation["binCount"] == 32


@pytest.fixture(scope="module")
def misaligned(two_modalities, tmp_path_factory) -> Path:
    """The 'pet' images again as a second modality without masks, moved 3 mm in x and -2 mm in y in the scanner
    frame (the voxels are unchanged, only the origin moves): registration has to find that shift."""
    import SimpleITK as sitk

    root = tmp_path_factory.mktemp("moved")
    (root / "pet").symlink_to(two_modalities / "pet")
    shutil.copy(two_modalities / "labels.csv", root / "labels.csv")
    (root / "moved").mkdir()
    for path in sorted((two_modalities / "pet" / "images").glob("*.nii.gz"))[:3]:
        image = sitk.ReadImage(str(path))
        image.SetOrigin(tuple(o + d for o, d in zip(image.GetOrigin(), (3.0, -2.0, 0.0), strict=True)))
        sitk.WriteImage(image, str(root / "moved" / path.name))
    return root


@pytest.mark.parametrize("register", [True, False])
def test_register_to_and_mask_from_map_the_other_modality(misaligned, tmp_path, register):
    moved = {"images": "moved/*.nii.gz", "mask_from": "pet", "registration": {"metric": "ms"}}
    if register:
        moved["register_to"] = "pet"
    spec = DatasetSpec.model_validate({"root": str(misaligned), "labels": "labels.csv", "modalities": {
        "pet": {"images": "pet/images/*.nii.gz", "masks": "pet/masks/*.nii.gz"}, "moved": moved},
        "require_all_modalities": True})
    cohort = discover("mm", spec)
    assert len(cohort.cases) == 3  # the fourth case has no moved image: a QC row, left out
    settings = ExtractSettings(featureClass={"shape": ["VoxelVolume"], "firstorder": ["Mean"]}, setting={"binWidth": 5})
    result = extract_cohort(cohort, settings, tmp_path / "out")
    registration = pd.read_csv(tmp_path / "out" / "modalities" / "moved" / "registration.csv")
    assert registration["status"].tolist() == ["ok"] * 3
    table = result.features
    # the same voxels under the same contour, up to the registration's sub-voxel residual and the linear resampling
    # of a textured lesion: measured 0-1.3% on the mean, 0-0.6% on the volume (mask transfer); allowed 2%
    for feature in ("original_shape_VoxelVolume", "original_firstorder_Mean"):
        ratio = table[f"moved_{feature}"] / table[f"pet_{feature}"]
        assert np.all(np.abs(ratio - 1) < 0.02), (feature, ratio.tolist())
    mask_file = tmp_path / "out" / "modalities" / "moved" / "registered" / "demo_001_mask.nii.gz"
    assert mask_file.is_file()
    assert (tmp_path / "out" / "modalities" / "moved" / "registered" / "demo_001_image.nii.gz").is_file() == register


def test_a_registration_that_cannot_run_is_a_qc_row(misaligned, tmp_path):
    root = tmp_path / "cohort"
    shutil.copytree(misaligned, root, symlinks=True)
    (root / "moved" / "demo_002.nii.gz").write_bytes(b"not an image")
    spec = DatasetSpec.model_validate({"root": str(root), "labels": "labels.csv", "modalities": {
        "pet": {"images": "pet/images/*.nii.gz", "masks": "pet/masks/*.nii.gz"},
        "moved": {"images": "moved/*.nii.gz", "mask_from": "pet", "register_to": "pet"}}})
    result = extract_cohort(discover("mm", spec), ExtractSettings(featureClass={"firstorder": ["Mean"]}),
                            tmp_path / "out")
    assert list(result.features.index) == ["demo_001", "demo_003"]
    row = result.qc[(result.qc["case_id"] == "demo_002") & (result.qc["action"] == "registration_failed")]
    assert row["modality"].tolist() == ["moved"] and "could not register" in row["reason"].item()
