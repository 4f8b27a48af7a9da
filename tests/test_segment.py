"""The segment stage: classical masks on synthetic images with known answers, agreement measures against
SimpleITK's own filters, the CLI, and (realdata) Dice against the expert masks of STS-PET and BUSI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from radpipe.cli import app
from radpipe.errors import CaseError, ConfigError
from radpipe.segment import (
    Seeds,
    SegmentSettings,
    check_settings,
    dice,
    hausdorff,
    hausdorff_95,
    seeds_from_masks,
    segment_cohort,
    segment_image,
)

runner = CliRunner()
SPACING = (2.0, 2.0, 3.0)


def _image(array: np.ndarray, spacing=SPACING) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing(spacing)
    image.SetOrigin((-20.0, 10.0, 5.0))
    return image


def _ball(shape, centre, radius) -> np.ndarray:
    z, y, x = np.indices(shape)
    return (x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2 <= radius ** 2


def _sphere_pet(seed: int = 0):
    """A sphere of SUV 8 (radius 6 voxels) in background SUV 1 with noise SD 0.2; the truth mask."""
    rng = np.random.default_rng(seed)
    shape = (32, 40, 40)
    truth = _ball(shape, (20, 20, 16), 6)
    suv = 1.0 + rng.normal(0, 0.2, shape) + 7.0 * truth
    return _image(suv), truth


def _physical(image: sitk.Image, index_xyz) -> tuple[float, ...]:
    return image.TransformIndexToPhysicalPoint([int(i) for i in index_xyz])


def _mask(truth: np.ndarray, like: sitk.Image) -> sitk.Image:
    mask = sitk.GetImageFromArray(truth.astype(np.uint8))
    mask.CopyInformation(like)
    return mask


@pytest.mark.parametrize("settings", [
    SegmentSettings("threshold", threshold=2.5),
    SegmentSettings("relative", fraction=0.41),
    SegmentSettings("relative", fraction=0.5),
    SegmentSettings("otsu"),
    SegmentSettings("region_growing"),
    SegmentSettings("region_growing", threshold=3.0),
    SegmentSettings("watershed"),
    SegmentSettings("watershed", watershed_on="distance"),
])
def test_each_method_finds_the_sphere_from_a_seed(settings):
    image, truth = _sphere_pet()
    seeds = Seeds(points=[_physical(image, (20, 20, 16))])
    result = segment_image(image, settings, seeds)
    found = sitk.GetArrayFromImage(result.mask) > 0
    assert dice(result.mask, _mask(truth, image)) > 0.9, settings
    assert result.mask.GetSpacing() == image.GetSpacing() and result.mask.GetOrigin() == image.GetOrigin()
    assert not found[0].any() and "touches the image border" not in result.warnings


def test_relative_threshold_is_the_share_of_the_lesion_maximum():
    image, truth = _sphere_pet()
    peak = float(sitk.GetArrayFromImage(image)[truth].max())
    result = segment_image(image, SegmentSettings("relative", fraction=0.41), Seeds(points=[_physical(image, (20, 20, 16))]))
    assert result.threshold == pytest.approx(0.41 * peak)


def test_without_seeds_the_largest_object_is_kept():
    image, truth = _sphere_pet()
    array = sitk.GetArrayFromImage(image)
    array[2:5, 2:5, 2:5] = 9.0  # a small hot spot far from the sphere
    image2 = _image(array)
    result = segment_image(image2, SegmentSettings("threshold", threshold=2.5))
    assert dice(result.mask, _mask(truth, image2)) > 0.95
    assert result.candidates == 2 and any("largest of 2" in w for w in result.warnings)


def test_box_seed_keeps_the_mask_inside_the_box():
    image, truth = _sphere_pet()
    lo, hi = _physical(image, (14, 14, 10)), _physical(image, (20, 26, 22))  # the sphere's left half
    result = segment_image(image, SegmentSettings("threshold", threshold=2.5), Seeds(boxes=[(lo, hi)]))
    found = sitk.GetArrayFromImage(result.mask) > 0
    assert found.sum() == (truth[:, :, :21]).sum()
    assert not found[:, :, 21:].any()


def test_watershed_on_the_distance_map_splits_two_touching_spheres():
    shape = (30, 30, 50)
    left, right = _ball(shape, (16, 15, 15), 8), _ball(shape, (31, 15, 15), 8)  # overlap: one blob at SUV 6
    image = _image(1.0 + 5.0 * (left | right), spacing=(1.0, 1.0, 1.0))
    seeds = Seeds(points=[_physical(image, (14, 15, 15))])
    split = segment_image(image, SegmentSettings("watershed", watershed_on="distance"), seeds)
    whole = segment_image(image, SegmentSettings("threshold", threshold=2.5), seeds)
    assert dice(whole.mask, _mask(left | right, image)) == 1.0  # a threshold cannot separate them
    only_left = left & ~right
    found = sitk.GetArrayFromImage(split.mask) > 0
    assert split.candidates == 2
    assert found[only_left].mean() > 0.97 and not found[right & ~left].any()


def test_refine_stays_inside_the_rough_mask():
    image, truth = _sphere_pet()
    rough = np.zeros_like(truth)
    rough[:, :, :20] = True  # a rough outline covering half the lesion and background
    result = segment_image(image, SegmentSettings("refine", refine_with="otsu"), rough=_mask(rough, image))
    found = sitk.GetArrayFromImage(result.mask) > 0
    assert (found == (truth & rough)).mean() > 0.999


def test_seed_outside_any_object_is_a_case_error_with_a_reason():
    image, _ = _sphere_pet()
    with pytest.raises(CaseError, match="empty mask: the seed lies outside any object above the threshold"):
        segment_image(image, SegmentSettings("threshold", threshold=2.5), Seeds(points=[_physical(image, (3, 3, 3))]))
    with pytest.raises(CaseError, match="outside the image"):
        segment_image(image, SegmentSettings("threshold", threshold=2.5), Seeds(points=[(1e4, 0.0, 0.0)]))


def test_otsu_on_a_dark_lesion_follows_the_seed():
    image, truth = _sphere_pet()
    dark = _image(10.0 - sitk.GetArrayFromImage(image))  # a hypoechoic lesion, as in ultrasound
    result = segment_image(dark, SegmentSettings("otsu"), Seeds(points=[_physical(dark, (20, 20, 16))]))
    assert dice(result.mask, _mask(truth, dark)) > 0.9


@pytest.mark.parametrize("settings, key", [
    (SegmentSettings("threshold"), "--threshold"),
    (SegmentSettings("otsu", fraction=0.4), "--fraction"),
    (SegmentSettings("relative", fraction=41), "--fraction"),
    (SegmentSettings("snakes"), "--method"),
    (SegmentSettings("refine", refine_with="refine"), "--refine-with"),
    (SegmentSettings("watershed", watershed_on="edges"), "--watershed-on"),
    (SegmentSettings("otsu", smoothing=3.0), "--smoothing"),
    (SegmentSettings("watershed", smoothing=-1.0), "--smoothing"),
])
def test_options_that_do_not_fit_are_refused(settings, key):
    with pytest.raises(ConfigError, match=key):
        check_settings(settings)


# ------------------------------------------------------------------------------------------------- agreement

def _random_masks(spacing):
    rng = np.random.default_rng(3)
    a = _ball((24, 30, 30), (14, 15, 12), 7) | (rng.random((24, 30, 30)) > 0.995)
    b = _ball((24, 30, 30), (16, 14, 12), 6)
    return _mask(a, _image(a, spacing)), _mask(b, _image(b, spacing))


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.8, 1.5, 3.0)])
def test_dice_and_hausdorff_agree_with_simpleitk_filters(spacing):
    a, b = _random_masks(spacing)
    overlap = sitk.LabelOverlapMeasuresImageFilter()
    overlap.Execute(a, b)
    distance = sitk.HausdorffDistanceImageFilter()
    distance.Execute(a, b)
    assert dice(a, b) == pytest.approx(overlap.GetDiceCoefficient(), abs=1e-12)
    assert hausdorff(a, b) == pytest.approx(distance.GetHausdorffDistance(), rel=1e-6)
    assert 0 < hausdorff_95(a, b) < hausdorff(a, b)


def test_hd95_of_concentric_spheres_is_their_radius_difference():
    shape = (50, 50, 50)
    small = _mask(_ball(shape, (25, 25, 25), 12), _image(np.zeros(shape), (1.0, 1.0, 1.0)))
    big = _mask(_ball(shape, (25, 25, 25), 16), small)
    assert hausdorff_95(small, big) == pytest.approx(4.0, abs=0.6)
    assert hausdorff_95(small, small) == 0.0


def test_seeds_from_masks_centroid_and_box_in_mm():
    image, truth = _sphere_pet()
    table = seeds_from_masks({"c1": _mask(truth, image)}, kind="centroid")
    assert table.loc[0, ["x", "y", "z"]].tolist() == pytest.approx(list(_physical(image, (20, 20, 16))))
    boxes = seeds_from_masks({"c1": _mask(truth, image)}, kind="box")
    assert boxes.loc[0, ["x0", "y0", "z0"]].tolist() == pytest.approx(list(_physical(image, (14, 14, 10))))
    assert boxes.loc[0, ["x1", "y1", "z1"]].tolist() == pytest.approx(list(_physical(image, (26, 26, 22))))


# ----------------------------------------------------------------------------------------- cohort and CLI

def _cohort(tmp_path, n=4):
    """A small PET cohort folder with expert masks; case c3's mask lies in the background (a cold seed)."""
    root = tmp_path / "cohort"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    labels = []
    for i in range(n):
        image, truth = _sphere_pet(seed=i)
        if i == n - 1:
            truth = _ball(truth.shape, (5, 5, 5), 3)
        sitk.WriteImage(image, str(root / "images" / f"c{i}.nii.gz"))
        sitk.WriteImage(_mask(truth, image), str(root / "masks" / f"c{i}.nii.gz"))
        labels.append((f"c{i}", "yes" if i % 2 else "no"))
    pd.DataFrame(labels, columns=["case_id", "label"]).to_csv(root / "labels.csv", index=False)
    return root


def test_segment_cli_writes_a_cohort_that_extract_reads(tmp_path):
    root = _cohort(tmp_path)
    out = tmp_path / "seg"
    result = runner.invoke(app, ["segment", str(root), "--method", "threshold", "--threshold", "2.5", "--out",
                                 str(out), "--seeds-from-masks", "centroid", "--compare", str(root / "masks")])
    assert result.exit_code == 1, result.output  # c3: the seed lies in the background
    qc = pd.read_csv(out / "qc.csv").set_index("case_id")
    assert qc.loc["c3", "status"] == "failed"
    assert "empty mask: the seed lies outside any object above the threshold" in qc.loc["c3", "reason"]
    assert (qc.loc[["c0", "c1", "c2"], "status"] == "ok").all() and (qc.loc["c0", "threshold"] == 2.5)
    assert qc.loc["c0", "voxels"] == pytest.approx(_ball((32, 40, 40), (20, 20, 16), 6).sum(), abs=10)
    agreement = pd.read_csv(out / "agreement.csv").set_index("case_id")
    assert agreement.loc[["c0", "c1", "c2"], "dice"].min() > 0.98 and agreement.loc["c3", "dice"] == 0.0
    summary = pd.read_csv(out / "agreement_summary.csv").set_index("measure")
    assert summary.loc["dice", "median"] == pytest.approx(agreement["dice"].median())
    assert (out / "images" / "c0.nii.gz").exists() and (out / "labels.csv").read_text() == (root / "labels.csv").read_text()
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["c0.nii.gz", "c1.nii.gz", "c2.nii.gz"]

    extracted = runner.invoke(app, ["extract", str(out), "--out", str(tmp_path / "features"), "--format", "csv"])
    features = pd.read_csv(tmp_path / "features" / "features.csv").set_index("case_id")
    assert extracted.exit_code == 1  # c3 has an image and no mask: recorded, not a crash
    assert sorted(features.index) == ["c0", "c1", "c2"]
    assert features.loc["c0", "original_shape_VoxelVolume"] == pytest.approx(qc.loc["c0", "volume_mm3"], rel=0.01)


def test_images_without_masks_are_segmented(tmp_path):
    root = _cohort(tmp_path, n=2)
    (root / "masks" / "c1.nii.gz").unlink()
    result = segment_cohort(str(root), tmp_path / "seg", SegmentSettings("otsu"))
    assert list(result.qc["status"]) == ["ok", "ok"]
    assert (tmp_path / "seg" / "masks" / "c1.nii.gz").exists()


@pytest.mark.parametrize("args, needle", [
    (["--method", "otsu", "--fraction", "0.4"], "--fraction"),
    (["--method", "relative"], "--fraction"),
    (["--method", "threshold", "--threshold", "2", "--seeds", "missing.csv"], "missing.csv"),
    (["--method", "kmeans"], "unknown method"),
])
def test_segment_cli_bad_options_exit_2(tmp_path, args, needle):
    root = _cohort(tmp_path, n=1)
    result = runner.invoke(app, ["segment", str(root), "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 2, result.output
    assert needle in result.output


def test_a_seed_file_with_wrong_columns_exits_2(tmp_path):
    root = _cohort(tmp_path, n=1)
    seeds = tmp_path / "seeds.csv"
    seeds.write_text("case_id,row,col\nc0,1,2\n")
    result = runner.invoke(app, ["segment", str(root), "--out", str(tmp_path / "o"), "--method", "otsu",
                                 "--seeds", str(seeds)])
    assert result.exit_code == 2 and "x" in result.output and "seeds.csv" in result.output


# ------------------------------------------------------------------------------------------------- realdata

@pytest.mark.realdata
def test_sts_pet_suv_2_5_in_the_expert_box_agrees_with_the_expert_masks(data_dir, tmp_path):
    # the STS masks are GTVs drawn with MR: they include low-uptake tissue, so PET thresholds stay below Dice 0.9
    result = segment_cohort("sts_pet", tmp_path / "seg", SegmentSettings("threshold", threshold=2.5),
                            seeds_from="box", compare="sts_pet")
    summary = result.summary.set_index("measure")
    assert result.n_failed == 0 and len(result.agreement) == 39
    assert 0.65 < summary.loc["dice", "median"] < 0.85  # measured 0.742 (IQR 0.542-0.809)
    relative = segment_cohort("sts_pet", tmp_path / "rel", SegmentSettings("relative", fraction=0.41),
                              seeds_from="box", compare="sts_pet")
    assert relative.summary.set_index("measure").loc["dice", "median"] < summary.loc["dice", "median"]


@pytest.mark.realdata
@pytest.mark.slow
def test_busi_watershed_from_the_centroid(data_dir, tmp_path):
    from radpipe.cohort import load_cohort

    cohort = load_cohort("busi")
    cohort = cohort.subset([case.case_id for case in cohort.cases[::7]])  # 42 lesions
    result = segment_cohort(cohort, tmp_path / "ws", SegmentSettings("watershed", smoothing=3.0),
                            seeds_from="centroid", compare=str(data_dir / "busi" / "masks"))
    dice_median = result.summary.set_index("measure").loc["dice", "median"]
    assert len(result.agreement) == 42 and dice_median > 0.75  # measured 0.85 on these 42


def test_an_unreadable_mask_does_not_stop_seeds_from_masks(tmp_path):
    root = _cohort(tmp_path, n=2)
    (root / "masks" / "c1.nii.gz").write_bytes(b"not a nifti file")
    result = segment_cohort(str(root), tmp_path / "seg", SegmentSettings("threshold", threshold=2.5),
                            seeds_from="centroid", compare=str(root / "masks"))
    qc = result.qc.set_index("case_id")
    assert list(qc["status"]) == ["ok", "ok"] and qc.loc["c1", "seeds"] == ""  # no seed: the largest object
    assert "not compared" in qc.loc["c1", "warnings"]
    assert list(result.agreement["case_id"]) == ["c0"]
