"""Data-driven extraction defaults: automatic bin width, frozen for new cohorts; degenerate features named;
voxel-spacing warnings; the cohort survey behind them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from radpipe.cohort import load_cohort
from radpipe.extract import discretisation
from radpipe.extract.discretisation import grey_levels, read_discretisation
from radpipe.extract.feature_qc import degenerate_features
from radpipe.extract.settings import ExtractSettings
from radpipe.extract.stage import extract_cohort
from radpipe.extract.survey import survey_cohort

TEXTURE = ("glcm", "glrlm", "glszm", "gldm", "ngtdm")


def write_pet_case(folder: Path, case_id: str, *, seed: int, suv_max: float, spacing=(4.0, 4.0, 3.0),
                   size=(14, 22, 22)) -> None:
    """An FDG-PET-like lesion in SUV: background about 1, a heterogeneous uptake rising towards ``suv_max``."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*(np.arange(s, dtype=float) for s in size), indexing="ij")
    centre = np.array(size) / 2 + rng.normal(0, 0.5, 3)
    radius = rng.uniform(5.0, 7.0)
    distance = np.sqrt(((zz - centre[0]) * spacing[2] / spacing[0]) ** 2 + (yy - centre[1]) ** 2
                       + (xx - centre[2]) ** 2)
    mask = (distance <= radius).astype(np.uint8)
    uptake = np.clip(1 - distance / radius, 0, 1) * (suv_max - 1.5)
    noise = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(
        sitk.GetImageFromArray(rng.normal(0, 1, size)), 1.0))
    image = rng.gamma(8, 1 / 8, size) + mask * (1.5 + uptake * (1 + 0.8 * noise))
    image = np.clip(image, 0.05, None)
    for array, sub in ((image.astype(np.float32), "images"), (mask, "masks")):
        itk = sitk.GetImageFromArray(array)
        itk.SetSpacing(spacing)
        (folder / sub).mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(itk, str(folder / sub / f"{case_id}.nii.gz"))


def pet_cohort(folder: Path, n: int = 8, *, scale: float = 1.0, spacings=None) -> Path:
    """``n`` PET-like cases with SUVmax between about 5 and 18 (times ``scale``)."""
    rows = ["case_id,label"]
    for index in range(n):
        case_id = f"pet{index:02d}"
        spacing = spacings[index] if spacings else (4.0, 4.0, 3.0)
        write_pet_case(folder, case_id, seed=index, suv_max=scale * (5 + 13 * index / max(n - 1, 1)),
                       spacing=spacing)
        rows.append(f"{case_id},{'yes' if index % 2 else 'no'}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture(scope="module")
def pet(tmp_path_factory) -> Path:
    return pet_cohort(tmp_path_factory.mktemp("pet") / "cohort")


@pytest.fixture(scope="module")
def auto_run(pet, tmp_path_factory):
    out = tmp_path_factory.mktemp("auto")
    return extract_cohort(load_cohort(str(pet)), ExtractSettings(), out), out


def texture_columns(columns) -> list[str]:
    return [c for c in columns if c.split("_")[1] in TEXTURE]


# --- automatic bin width -------------------------------------------------------------------------------------

def test_pet_cohort_gets_an_automatic_bin_width_with_32_to_64_levels_and_no_degenerate_texture(auto_run):
    result, out = auto_run
    manifest = json.loads((out / "manifest.json").read_text())
    record = manifest["discretisation"]
    assert record["source"] == "auto"
    assert record["binWidth"] in (0.1, 0.2, 0.25, 0.5)  # a readable width for ROI ranges of ~4-17 SUV
    assert 32 <= record["median_levels"] <= 64
    assert result.discretisation == record
    # the width is what pyradiomics used: in the resolved settings and in the codebook
    assert manifest["pyradiomics_params"]["setting"]["binWidth"] == record["binWidth"]
    codebook = pd.read_csv(out / "codebook.csv", keep_default_na=False)
    assert set(codebook.loc[codebook["family"] == "texture", "discretisation"]) == {f"binWidth={record['binWidth']}"}
    # no texture column is degenerate, in the codebook or recomputed from the table
    texture = texture_columns(result.features.columns)
    assert len(texture) > 60
    assert not set(degenerate_features(result.features)) & set(texture)
    assert (codebook.set_index("column").loc[texture, "feature_qc"] == "").all()
    assert (result.features["original_firstorder_Uniformity"] < 0.5).all()
    assert "discretisation: binWidth" in result.discretisation_line and "auto" in result.discretisation_line


def test_automatic_width_is_deterministic_so_a_rerun_is_served_from_the_cache(auto_run, pet):
    result, out = auto_run
    again = extract_cohort(load_cohort(str(pet)), ExtractSettings(), out)
    assert again.summary.computed == 0 and again.summary.cached == 8
    assert not again.tables_written
    assert again.discretisation["binWidth"] == result.discretisation["binWidth"]


def test_pyradiomics_default_bin_width_on_suv_is_warned_and_its_degenerate_columns_flagged(pet, tmp_path):
    result = extract_cohort(load_cohort(str(pet)), ExtractSettings(setting={"binWidth": 25}), tmp_path)
    assert result.discretisation["source"] == "recipe" and result.discretisation["binWidth"] == 25
    assert result.discretisation["median_levels"] == 1
    warning = next(w for w in result.warnings if w.startswith("binWidth 25 "))
    assert "gives the median ROI 1 grey levels" in warning
    assert "degenerate" in warning
    suggested = survey_cohort(load_cohort(str(pet))).suggested_bin_width
    assert f"try binWidth {suggested:.3g}" in warning
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert warning in manifest["warnings"]

    codebook = pd.read_csv(tmp_path / "codebook.csv", keep_default_na=False).set_index("column")
    qc_notes = codebook["feature_qc"]
    assert "pyradiomics placeholder 1e+06" in qc_notes["original_ngtdm_Coarseness"]
    assert (result.features["original_ngtdm_Coarseness"] == 1e6).all()
    assert "single grey level in 8 of 8 cases" in qc_notes["original_glcm_Contrast"]
    assert "single grey level" in qc_notes["original_firstorder_Uniformity"]
    assert all(qc_notes[c] for c in texture_columns(codebook.index))
    # raw-intensity first-order features and shape are fine
    assert qc_notes["original_firstorder_Mean"] == "" and qc_notes["original_shape_Sphericity"] == ""


def test_a_sensible_recipe_width_gives_no_warning(pet, tmp_path):
    result = extract_cohort(load_cohort(str(pet)), ExtractSettings(setting={"binWidth": 0.5}), tmp_path)
    assert result.discretisation["source"] == "recipe"
    assert 8 <= result.discretisation["median_levels"] <= 512
    assert not [w for w in result.warnings if w.startswith("binWidth")]


def test_a_bin_width_set_for_one_image_type_only_still_gets_a_cohort_wide_width():
    params = {"setting": {}, "imageType": {"Original": {}, "LoG": {"binWidth": 5, "sigma": [2.0]}}}
    assert discretisation.recipe_discretisation(params) is None
    assert discretisation.recipe_discretisation({"setting": {"binCount": 32}}) == {"binCount": 32}


# --- freezing ------------------------------------------------------------------------------------------------

def test_frozen_bin_width_is_reused_on_a_cohort_with_another_intensity_range(auto_run, tmp_path):
    _, train_out = auto_run
    frozen = read_discretisation(train_out / "features.csv")
    bright = pet_cohort(tmp_path / "bright", n=4, scale=3.0)
    # on its own, this cohort would get a different width ...
    own = survey_cohort(load_cohort(str(bright))).suggested_bin_width
    assert own != frozen["binWidth"]
    # ... but with the training cohort as reference it keeps the frozen one, and says so
    out = tmp_path / "external"
    result = extract_cohort(load_cohort(str(bright)), ExtractSettings(), out, reference=train_out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["discretisation"]["binWidth"] == frozen["binWidth"]
    assert manifest["discretisation"]["source"] == "reference"
    assert manifest["pyradiomics_params"]["setting"]["binWidth"] == frozen["binWidth"]
    assert result.discretisation["median_levels"] > frozen["median_levels"]  # brighter ROIs, more levels
    # the manifest file itself, or a model folder's card, serve as reference too
    assert read_discretisation(train_out / "manifest.json")["binWidth"] == frozen["binWidth"]
    models = tmp_path / "models"
    models.mkdir()
    (models / "model_card.json").write_text(json.dumps({"discretisation": frozen}))
    assert read_discretisation(models) == frozen


def test_a_reference_without_a_record_is_a_config_error(tmp_path, pet):
    from radpipe.errors import ConfigError

    with pytest.raises(ConfigError, match="reference not found"):
        extract_cohort(load_cohort(str(pet)), ExtractSettings(), tmp_path / "out", reference=tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="records no discretisation"):
        extract_cohort(load_cohort(str(pet)), ExtractSettings(), tmp_path / "out", reference=tmp_path / "empty")


# --- spacing -------------------------------------------------------------------------------------------------

def test_varying_spacing_is_warned_with_the_spacings_and_the_recipe_lines(tmp_path):
    spacings = [(3.90625, 3.90625, 3.27)] * 2 + [(5.46875, 5.46875, 3.27)] * 3 + [(4.6875, 4.6875, 3.27)]
    cohort = pet_cohort(tmp_path / "c", n=6, spacings=spacings)
    found = survey_cohort(load_cohort(str(cohort)))
    assert found.spacing_varies and not found.anisotropic
    assert found.median_spacing == pytest.approx((5.078125, 5.078125, 3.27))
    (warning,) = found.warnings
    assert "voxel spacing varies by more than 10% across the cohort along x/y" in warning
    assert "5.47x5.47x3.27 mm (3 cases), 3.91x3.91x3.27 mm (2 cases), 4.69x4.69x3.27 mm (1 case)" in warning
    assert ("extract: {preprocessing: [{step: resample, spacing: [5.08, 5.08, 3.27], interpolator: linear, "
            "mask_interpolator: partial_volume}]}") in warning
    # the recipe section radpipe init writes
    section = found.recipe_extract()
    assert section == {
        "setting": {"binWidth": found.suggested_bin_width},
        "preprocessing": [{"step": "resample", "spacing": [5.08, 5.08, 3.27], "interpolator": "linear",
                           "mask_interpolator": "partial_volume"}],
        "intensity_unit": "a.u.",
    }
    levels = np.median(grey_levels(found.ok["roi_min"], found.ok["roi_max"], found.suggested_bin_width))
    assert found.median_levels == levels and 32 <= levels <= 64
    # with that resample step in the recipe the warning is gone, and the survey measures the resampled images
    resampled = survey_cohort(load_cohort(str(cohort)), ExtractSettings(
        preprocessing=section["preprocessing"], intensity_unit="SUV"))
    assert not resampled.spacing_varies and resampled.warnings == []
    assert resampled.median_spacing == pytest.approx((5.08, 5.08, 3.27))
    assert resampled.intensity_unit == "SUV" and resampled.recipe_extract()["intensity_unit"] == "SUV"
    assert "preprocessing" not in resampled.recipe_extract()


def test_anisotropic_voxels_for_3d_texture_are_warned_unless_texture_is_2d(tmp_path):
    cohort = pet_cohort(tmp_path / "c", n=3, spacings=[(1.0, 1.0, 3.0)] * 3)
    found = survey_cohort(load_cohort(str(cohort)))
    assert found.anisotropic and not found.spacing_varies
    (warning,) = found.warnings
    assert "3D texture on anisotropic voxels (median 1x1x3 mm, more than 2:1)" in warning
    assert "spacing: [1.44, 1.44, 1.44]" in warning  # isotropic, same voxel volume
    assert "force2D: true" in warning
    flat = survey_cohort(load_cohort(str(cohort)), ExtractSettings(setting={"force2D": True}))
    assert not flat.anisotropic and flat.warnings == []


def test_spacing_warning_goes_into_the_manifest(tmp_path):
    cohort = pet_cohort(tmp_path / "c", n=3, spacings=[(2.0, 2.0, 3.0), (2.0, 2.0, 3.0), (3.0, 3.0, 3.0)])
    result = extract_cohort(load_cohort(str(cohort)), ExtractSettings(), tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["spacing"]["varies"] is True
    assert manifest["spacing"]["range_mm"][0] == [2.0, 3.0]
    assert any("voxel spacing varies" in w for w in manifest["warnings"])
    assert manifest["warnings"] == result.warnings


# --- survey --------------------------------------------------------------------------------------------------

def test_survey_rows_are_cached_so_a_rerun_reads_no_image(pet, tmp_path, monkeypatch):
    first = survey_cohort(load_cohort(str(pet)), cache_dir=tmp_path)
    assert len(first.ok) == 8 and first.modality is None and first.intensity_unit == "a.u."
    assert (first.table["roi_p95"] <= first.table["roi_max"]).all()
    assert "8 cases read" in repr(first)

    def no_reading(*args, **kwargs):
        raise AssertionError("an image was read again")

    monkeypatch.setattr("radpipe.extract.io.read_image", no_reading)
    again = survey_cohort(load_cohort(str(pet)), cache_dir=tmp_path)
    pd.testing.assert_frame_equal(again.table, first.table)
    fresh = survey_cohort(load_cohort(str(pet)))  # without a cache every case is read (and fails here)
    assert set(fresh.table["status"]) == {"skipped"}
    assert "none of the 8 cases could be read" in fresh.warnings[-1]


def test_survey_skips_an_unreadable_case_with_its_reason_and_runs_in_parallel(pet, tmp_path):
    cohort = pet_cohort(tmp_path / "c", n=3)
    (cohort / "images" / "pet01.nii.gz").write_bytes(b"not an image")
    found = survey_cohort(load_cohort(str(cohort)), jobs=2)
    assert found.skipped.keys() == {"pet01"} and found.skipped["pet01"]
    assert len(found.ok) == 2 and found.suggested_bin_width is not None


# --- degenerate features -------------------------------------------------------------------------------------

def test_degenerate_features_names_constant_missing_and_placeholder_columns():
    table = pd.DataFrame({
        "roi": ["a", "b", "c"],
        "original_shape_Sphericity": [0.7, 0.8, 0.9],
        "original_firstorder_Median": [2.0, 2.0, 2.0],
        "original_firstorder_Uniformity": [0.2, 0.3, 0.25],
        "original_glcm_Idn": [np.nan, np.nan, np.nan],
        "original_ngtdm_Coarseness": [0.01, 1e6, 0.02],
        "original_glcm_Contrast": [1.0, 2.0, 3.0],
    }, index=["c1", "c2", "c3"])
    found = degenerate_features(table)
    assert found == {
        "original_firstorder_Median": "constant across the cohort (2 in all 3 cases)",
        "original_glcm_Idn": "missing in all 3 cases",
        "original_ngtdm_Coarseness": "pyradiomics placeholder 1e+06 in 1 of 3 cases (radiomics/ngtdm.py "
                                     "getCoarsenessFeatureValue, for a flat region): not a measurement",
    }


# --- real data -----------------------------------------------------------------------------------------------

@pytest.mark.realdata
def test_sts_pet_12_cases_with_default_settings(data_dir, tmp_path):
    root = tmp_path / "sts12"
    names = sorted(p.name for p in (data_dir / "sts_pet" / "images").glob("*.nii.gz"))[:12]
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
        for name in names:
            (root / sub / name).symlink_to(data_dir / "sts_pet" / sub / name)
    result = extract_cohort(load_cohort(str(root)), ExtractSettings(), tmp_path / "out")
    print(result.discretisation_line, result.warnings)
    assert result.discretisation == {"binWidth": 0.25, "source": "auto", "median_levels": 42.0,
                                     "levels_p5": 25.1, "levels_p95": 110.4, "intensity_unit": "a.u."}
    assert degenerate_features(result.features) == {}
    # in-plane spacing 3.91, 4.69 and 5.47 mm: said, with the resample step
    (warning,) = result.warnings
    assert "5.47x5.47x3.27 mm (8 cases), 3.91x3.91x3.27 mm (2 cases), 4.69x4.69x3.27 mm (2 cases)" in warning
    assert "step: resample, spacing: [5.47, 5.47, 3.27]" in warning


def test_predict_refuses_features_binned_differently_from_the_model(tmp_path):
    """The training cohort's bin width travels in the model card; features at another width are exit 2."""
    import json

    import numpy as np
    import pandas as pd
    from typer.testing import CliRunner

    from radpipe.cli import app

    rng = np.random.default_rng(0)
    ids = [f"c{i:02d}" for i in range(24)]
    y = np.array([0, 1] * 12)
    X = pd.DataFrame({"case_id": ids, "f1": rng.normal(size=24) + y, "f2": rng.normal(size=24)})
    features = tmp_path / "train" / "features.csv"
    features.parent.mkdir()
    X.to_csv(features, index=False)
    (features.parent / "manifest.json").write_text(json.dumps(
        {"stage": "extract", "discretisation": {"binWidth": 0.25, "source": "auto"}}))
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"case_id": ids, "label": y}).to_csv(labels, index=False)
    runner = CliRunner()
    trained = runner.invoke(app, ["train", str(features), "--labels", str(labels), "--out",
                                  str(tmp_path / "models"), "--models", "logreg"])
    assert trained.exit_code == 0, trained.output
    card = json.loads((tmp_path / "models" / "model_card.json").read_text())
    assert card["discretisation"] == {"binWidth": 0.25, "source": "auto"}

    new = tmp_path / "new" / "features.csv"
    new.parent.mkdir()
    X.to_csv(new, index=False)
    (new.parent / "manifest.json").write_text(json.dumps({"discretisation": {"binWidth": 25, "source": "recipe"}}))
    refused = runner.invoke(app, ["predict", str(tmp_path / "models"), str(new), "--out", str(tmp_path / "p.csv")])
    assert refused.exit_code == 2
    assert "binWidth 25" in refused.output and "binWidth 0.25" in refused.output and "--reference" in refused.output

    (new.parent / "manifest.json").write_text(json.dumps({"discretisation": {"binWidth": 0.25, "source": "reference"}}))
    same = runner.invoke(app, ["predict", str(tmp_path / "models"), str(new), "--out", str(tmp_path / "p.csv")])
    assert same.exit_code == 0, same.output
    assert len(pd.read_csv(tmp_path / "p.csv")) == 24
