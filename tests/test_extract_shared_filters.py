"""Several ROIs in one image: each filtered image (LoG, wavelet) is computed once and serves every ROI, with
the values of extracting each ROI on its own (issue 3)."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from radpipe.extract.features import CaseInput, extract_case
from radpipe.extract.settings import ExtractSettings

FILTERED = {"Original": {}, "LoG": {"sigma": [1.0, 2.0]}, "Wavelet": {}}


def _write(array: np.ndarray, path: Path, spacing=(1.0, 1.0, 2.0)) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin((-40.0, 12.5, 3.0))
    sitk.WriteImage(image, str(path))
    return path


def _three_lesions(folder: Path, centres=((12, 30, 28), (10, 44, 50), (14, 58, 34))) -> tuple[Path, Path]:
    """A noisy 3D image (z, y, x = 24, 80, 80; 1 x 1 x 2 mm) with three textured blobs labelled 1, 2, 3."""
    rng = np.random.default_rng(7)
    zz, yy, xx = np.meshgrid(*(np.arange(s) for s in (24, 80, 80)), indexing="ij")
    image = rng.normal(40, 12, zz.shape)
    labels = np.zeros(zz.shape, np.uint8)
    for label, (cz, cy, cx) in enumerate(centres, start=1):
        blob = ((zz - cz) * 2.0) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2 <= (4 + label) ** 2
        image[blob] += 60 + 15 * label + rng.normal(0, 20, blob.sum())
        labels[blob] = label
    return (_write(image.astype(np.float32), folder / "image.nii.gz"),
            _write(labels, folder / "labels.nii.gz"))


def _pyradiomics_alone(image: Path, roi: np.ndarray, params: dict) -> dict[str, float]:
    """pyradiomics' own execute on the whole, uncropped image with this ROI alone."""
    import radiomics
    from radiomics import featureextractor

    radiomics.setVerbosity(logging.ERROR)
    itk = sitk.ReadImage(str(image))
    mask = sitk.GetImageFromArray(roi.astype(np.uint8))
    mask.CopyInformation(itk)
    values = featureextractor.RadiomicsFeatureExtractor(params).execute(itk, mask, label=1)
    return {k: float(v) for k, v in values.items() if not k.startswith("diagnostics_")}


def _worst(ours: dict, reference: dict) -> dict[str, float]:
    """Worst relative difference per image type family (original, log, wavelet)."""
    worst: dict[str, float] = {}
    for name, value in reference.items():
        if name in ("case_id", "roi"):
            continue
        family = name.split("_")[0].split("-")[0]
        rel = abs(ours[name] - value) / max(abs(value), 1e-12)
        worst[family] = max(worst.get(family, 0.0), rel)
    return worst


def _count_filter_calls(monkeypatch) -> Counter:
    """Count calls of pyradiomics' LoG and wavelet image generators (looked up by name, as execute does)."""
    from radiomics import imageoperations

    calls: Counter = Counter()
    for name in ("getLoGImage", "getWaveletImage"):
        real = getattr(imageoperations, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(imageoperations, name, counted)
    return calls


def test_three_labels_filtered_once_give_each_roi_its_own_values(tmp_path, monkeypatch):
    image, labels = _three_lesions(tmp_path)
    settings = ExtractSettings(setting={"binWidth": 10}, imageType=FILTERED, roi_mode="per_label")
    calls = _count_filter_calls(monkeypatch)
    shared = extract_case(CaseInput("three", str(image), str(labels)), settings)
    assert shared.status == "ok", shared.qc
    assert [row["roi"] for row in shared.features] == ["label_1", "label_2", "label_3"]
    assert calls == {"getLoGImage": 1, "getWaveletImage": 1}  # once for the three ROIs

    label_array = sitk.GetArrayFromImage(sitk.ReadImage(str(labels)))
    single = ExtractSettings(setting={"binWidth": 10}, imageType=FILTERED)
    for label, row in enumerate(shared.features, start=1):
        # the same ROI as a case of its own: radpipe's per-ROI path (crop to this ROI's box plus margin)
        alone_mask = _write((label_array == label).astype(np.uint8), tmp_path / f"label{label}.nii.gz")
        alone = extract_case(CaseInput("three", str(image), str(alone_mask)), single).features[0]
        direct = _pyradiomics_alone(image, label_array == label, {"setting": {"binWidth": 10}, "imageType": FILTERED})
        names = [k for k in row if k not in ("case_id", "roi")]
        assert names == [k for k in alone if k not in ("case_id", "roi")] == list(direct)
        assert any(n.startswith("log-sigma-2-0-mm-3D_glcm") for n in names)
        texture = [n for n in names if n.startswith("original_") and not n.startswith("original_shape")]
        assert sum(n.startswith("wavelet-") for n in names) == 8 * len(texture) == 8 * 93

        vs_alone, vs_direct = _worst(row, alone), _worst(row, direct)
        print(f"label {label}: worst relative difference vs per-ROI {vs_alone}, vs pyradiomics alone {vs_direct}")
        assert vs_alone["original"] == 0.0 and vs_alone["wavelet"] == 0.0, vs_alone  # "original" covers shape
        assert vs_direct["original"] == 0.0 and vs_direct["wavelet"] <= 1e-12, vs_direct
        assert vs_alone["log"] <= 1e-4 and vs_direct["log"] <= 1e-4, (vs_alone, vs_direct)
        assert row["original_shape_VoxelVolume"] == pytest.approx((label_array == label).sum() * 2.0)
    assert calls["getLoGImage"] == 1 + 3 + 3  # then once per single-ROI case, radpipe's and pyradiomics' own


def test_per_roi_filtering_kept_for_single_rois_and_for_rois_far_apart(tmp_path, monkeypatch):
    image, labels = _three_lesions(tmp_path)
    settings = ExtractSettings(setting={"binWidth": 10}, imageType=FILTERED,
                               featureClass={"firstorder": ["Mean", "Entropy"]}, roi_mode="per_label")
    calls = _count_filter_calls(monkeypatch)

    alone_mask = _write((sitk.GetArrayFromImage(sitk.ReadImage(str(labels))) == 2).astype(np.uint8),
                        tmp_path / "label2.nii.gz")
    assert extract_case(CaseInput("one", str(image), str(alone_mask)), settings).status == "ok"
    assert calls == {"getLoGImage": 1, "getWaveletImage": 1}

    # two small lesions in opposite corners of a large image: the box around both is mostly empty
    # (it is the whole image, 153,600 voxels, against 2 x 18,900 for the two crops), so each keeps its own crop
    far_image, far_labels = _three_lesions(tmp_path, centres=((5, 6, 6), (19, 74, 74)))
    calls.clear()
    far = extract_case(CaseInput("far", str(far_image), str(far_labels)), settings)
    assert far.status == "ok" and [row["roi"] for row in far.features] == ["label_1", "label_2"]
    assert calls == {"getLoGImage": 2, "getWaveletImage": 2}


def test_normalised_image_is_shared_whole_and_matches_pyradiomics(tmp_path, monkeypatch):
    """With pyradiomics' normalize the filters need the whole image; it is still filtered once for all ROIs."""
    image, labels = _three_lesions(tmp_path)
    params = {"setting": {"binWidth": 0.25, "normalize": True},
              "imageType": {"Original": {}, "LoG": {"sigma": [1.0]}},
              "featureClass": {"firstorder": [], "glcm": ["Contrast", "Idm"]}}
    settings = ExtractSettings(roi_mode="per_label", **params)
    calls = _count_filter_calls(monkeypatch)
    rows = extract_case(CaseInput("norm", str(image), str(labels)), settings).features
    assert [row["roi"] for row in rows] == ["label_1", "label_2", "label_3"]
    assert calls["getLoGImage"] == 1
    label_array = sitk.GetArrayFromImage(sitk.ReadImage(str(labels)))
    for label, row in enumerate(rows, start=1):
        direct = _pyradiomics_alone(image, label_array == label, params)
        assert [k for k in row if k not in ("case_id", "roi")] == list(direct)
        assert max(_worst(row, direct).values()) == 0.0  # the whole image either way: bit for bit


@pytest.mark.realdata
def test_busi_extra_lesion_masks_with_log_equal_extracting_each_lesion_alone(data_dir, monkeypatch):
    from radpipe.config import REPO_ROOT

    root = data_dir / "busi"
    settings = ExtractSettings(params_file=REPO_ROOT / "pipelines" / "params" / "ultrasound_2d.yaml",
                               imageType={"Original": {}, "LoG": {"sigma": [1.0, 2.0]}},
                               featureClass={"shape2D": [], "firstorder": [], "glcm": [], "glszm": []})
    image = str(root / "images" / "busi_0046.png")
    masks = [str(root / "masks" / "busi_0046.png"), str(root / "masks_extra" / "busi_0046_1.png")]
    calls = _count_filter_calls(monkeypatch)
    result = extract_case(CaseInput("busi_0046", image, masks[0], extra_masks=(masks[1],)), settings)
    assert result.status == "fixed", result.qc  # 0/255 masks binarised
    assert [row["roi"] for row in result.features] == ["roi", "extra_1"]
    assert calls["getLoGImage"] == 1

    for row, mask in zip(result.features, masks, strict=True):
        alone = extract_case(CaseInput("busi_0046", image, mask), settings).features[0]
        assert list(row)[2:] == list(alone)[2:]
        worst = _worst(row, alone)
        assert worst["original"] == 0.0 and worst["log"] <= 1e-4, worst
        assert row["log-sigma-2-0-mm-3D_firstorder_Mean"] == pytest.approx(alone["log-sigma-2-0-mm-3D_firstorder_Mean"],
                                                                          rel=1e-4)
