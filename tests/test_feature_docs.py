"""Readable features: units, display names and plain descriptions in the codebook, and the explain figures'
one colour meaning (towards the positive class is always the same colour)."""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd
import radiomics

from radpipe.extract import feature_docs
from radpipe.extract.feature_docs import description, display_name, feature_unit
from radpipe.extract.tables import CODEBOOK_COLUMNS, codebook_table

# every image type pyradiomics can produce, as it names them in feature columns
IMAGE_TYPES = ["original", "log-sigma-1-0-mm-3D", "log-sigma-2-5-mm-3D", "wavelet-LLH", "wavelet-HHH",
               "wavelet2-LLL", "square", "squareroot", "logarithm", "exponential", "gradient", "lbp-2D",
               "lbp-3D-m1", "lbp-3D-m2", "lbp-3D-k"]


def _all_features() -> list[tuple[str, str]]:
    return [(name, feature) for name, cls in radiomics.getFeatureClasses().items() for feature in cls.getFeatureNames()]


def _all_columns() -> list[str]:
    # pyradiomics computes shape on the original image only; the rest on every image type
    return [f"{image_type}_{name}_{feature}" for image_type in IMAGE_TYPES for name, feature in _all_features()
            if image_type == "original" or not name.startswith("shape")]


def test_data_file_covers_exactly_pyradiomics_features():
    table = feature_docs.feature_docs_table()
    assert table.index.is_unique
    assert set(table.index) == set(_all_features())
    assert list(table.columns) == ["display_name", "unit", "description"]


def test_every_codebook_row_has_unit_display_name_and_description():
    columns = _all_columns()
    book = codebook_table(columns, {"setting": {"binWidth": 25}}, intensity_unit="HU",
                          feature_qc={"original_firstorder_Mean": "constant in 2 of 12 cases"})
    assert list(book.columns) == CODEBOOK_COLUMNS
    assert len(book) == len(columns) > 1300
    for name in ("unit", "display_name", "description", "pyradiomics_doc"):
        assert book[name].str.len().gt(0).all(), book.loc[book[name].eq(""), "column"].tolist()[:5]
    # names are unique, so a figure label identifies its column
    assert book["display_name"].is_unique
    # descriptions are one or two plain sentences, not pyradiomics' "16. Elongation" headings
    assert not book["description"].str.match(r"^\d+\.").any()
    assert book["description"].str.endswith(".").all()
    # pyradiomics' own text stays available, with its formula, minus the "16." numbering
    doc = book.set_index("column").loc["original_shape_Elongation", "pyradiomics_doc"]
    assert doc.startswith("Elongation. ") and "\\lambda_{minor}" in doc
    assert book.set_index("column").loc["original_firstorder_Mean", "feature_qc"] == "constant in 2 of 12 cases"
    assert book.set_index("column").loc["original_firstorder_Median", "feature_qc"] == ""


def test_display_names_exact():
    assert display_name("original_glcm_Contrast") == "GLCM contrast"
    assert display_name("log-sigma-3-0-mm-3D_glcm_Idmn") == "GLCM IDMN · LoG σ = 3 mm"
    assert display_name("log-sigma-0-5-mm-3D_ngtdm_Busyness") == "NGTDM busyness · LoG σ = 0.5 mm"
    assert display_name("wavelet-LHH_firstorder_Mean") == "Mean intensity · wavelet LHH"
    assert display_name("wavelet2-LLL_glszm_ZoneEntropy") == "GLSZM zone entropy · wavelet LLL, level 2"
    assert display_name("original_shape_Sphericity") == "Sphericity (shape)"
    assert display_name("original_shape2D_MaximumDiameter") == "Largest diameter (2D shape)"
    assert display_name("original_shape_Maximum2DDiameterSlice") == "Largest axial diameter (shape)"
    assert display_name("squareroot_gldm_LargeDependenceEmphasis") == "GLDM large dependence emphasis · square root"
    assert display_name("lbp-3D-k_firstorder_Entropy") == "Intensity entropy · LBP 3D kurtosis"
    # unknown columns are tidied, never an error
    assert display_name("age_at_diagnosis") == "age at diagnosis"
    assert display_name("original_glcm_SomeNewFeature") == "Some new feature (glcm)"
    assert feature_unit("age_at_diagnosis") == "" and description("age_at_diagnosis") == ""


def test_shape_units_and_intensity_unit_substitution():
    assert feature_unit("original_shape_MeshVolume") == "mm³"
    assert feature_unit("original_shape_VoxelVolume") == "mm³"
    assert feature_unit("original_shape_SurfaceArea") == "mm²"
    assert feature_unit("original_shape_Maximum3DDiameter") == "mm"
    assert feature_unit("original_shape_SurfaceVolumeRatio") == "1/mm"
    assert feature_unit("original_shape_Sphericity") == "dimensionless"
    assert feature_unit("original_shape2D_PixelSurface") == "mm²"
    assert feature_unit("original_shape2D_Perimeter") == "mm"
    assert feature_unit("original_firstorder_Range", "HU") == "HU"
    assert feature_unit("original_firstorder_Energy", "SUV") == "SUV²"
    assert feature_unit("original_firstorder_TotalEnergy", "HU") == "HU² · mm³"
    assert feature_unit("original_firstorder_Mean") == "a.u."
    # filtered images lose the original unit; texture stays on the grey-level scale whatever the image
    assert feature_unit("log-sigma-3-0-mm-3D_firstorder_Mean", "HU") == "a.u. (filtered)"
    assert feature_unit("wavelet-HLL_firstorder_Variance", "HU") == "a.u.² (filtered)"
    assert feature_unit("wavelet-HLL_firstorder_Skewness", "HU") == "dimensionless"
    assert feature_unit("wavelet-HLL_glcm_Contrast", "HU") == "grey levels²"
    # pyradiomics' own normalisation removes the physical unit
    book = codebook_table(["original_firstorder_Mean"], {"setting": {"normalize": True}}, intensity_unit="HU")
    assert book.loc[0, "unit"] == "a.u."


def _formula(feature: str) -> str:
    """The LaTeX of a first-order feature's formula, or its prose when pyradiomics gives none."""
    doc = getattr(radiomics.getFeatureClasses()["firstorder"], f"get{feature}FeatureValue").__doc__
    math = re.search(r"\.\. math::\s*\n((?:[ \t]+\S.*\n)+)", doc)
    return " ".join(math[1].split()) if math else " ".join(doc.split())


def _intensity_power(feature: str) -> int:
    """The power of the intensity X in the formula: 0 for ratios and histogram probabilities p(i).

    Percentiles, median and minimum have no formula in the docstring; their prose names a value of X.
    """
    formula = _formula(feature)
    if re.search(r"\\frac\{\\mu_\d\}\{\\sigma\^\d\}", formula):  # standardised moments: X cancels
        return 0
    if "textbf{X}" not in formula and "textbf{P}" not in formula:
        return 0 if "p(i)" in formula else 1
    squared = re.search(r"textbf\{X\}\(i\)(?: ?[-+] ?(?:\\bar\{X\}|c))?\)\^2", formula) is not None
    power = 2 if squared else 1
    return power // 2 if squared and "\\sqrt" in formula else power


def test_first_order_units_follow_pyradiomics_formulas():
    features = [f for f in radiomics.getFeatureClasses()["firstorder"].getFeatureNames()]
    power = {f: _intensity_power(f) for f in features}
    # the reading of the formulas, spelt out so a wrong parse is visible here
    assert {f for f, k in power.items() if k == 2} == {"Energy", "TotalEnergy", "Variance"}
    assert {f for f, k in power.items() if k == 0} == {"Entropy", "Uniformity", "Skewness", "Kurtosis"}
    in_intensity = sorted(f for f, k in power.items() if k == 1)
    assert in_intensity == sorted([
        "10Percentile", "90Percentile", "InterquartileRange", "Maximum", "Mean", "MeanAbsoluteDeviation",
        "Median", "Minimum", "Range", "RobustMeanAbsoluteDeviation", "RootMeanSquared", "StandardDeviation"])
    expected = {1: "HU", 2: "HU²", 0: "dimensionless"}
    for feature, k in power.items():
        unit = feature_unit(f"original_firstorder_{feature}", "HU")
        if feature == "TotalEnergy":  # the formula also multiplies by the voxel volume V_voxel
            assert "V_{voxel}" in _formula(feature) and unit == "HU² · mm³"
        else:
            assert unit == expected[k], (feature, unit)


# ---------------------------------------------------------------- one colour meaning in the figures

# Machado, Oliveira & Fernandes (2009) colour-vision-deficiency matrices, severity 1, on linear RGB
CVD = {
    "deuteranopia": [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413], [-0.011820, 0.042940, 0.968881]],
    "protanopia": [[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216], [-0.003882, -0.048116, 1.051998]],
    "tritanopia": [[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602], [0.004733, 0.691367, 0.303900]],
}


def _rgb(colour: str) -> np.ndarray:
    from matplotlib.colors import to_rgb

    return np.array(to_rgb(colour))


def _seen_as(colour: str, deficiency: str) -> np.ndarray:
    """CIE Lab of ``colour`` as simulated for ``deficiency``."""
    from skimage.color import rgb2lab

    c = _rgb(colour)
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    simulated = np.clip(np.array(CVD[deficiency]) @ linear, 0, 1)
    srgb = np.where(simulated <= 0.0031308, 12.92 * simulated, 1.055 * simulated ** (1 / 2.4) - 0.055)
    return rgb2lab(srgb[None, None, :])[0, 0]


def test_direction_colours_stay_distinct_for_colour_blind_readers():
    from radpipe.explain import plots

    distances = {d: float(np.linalg.norm(_seen_as(plots.POSITIVE, d) - _seen_as(plots.NEGATIVE, d))) for d in CVD}
    # CIE76 ΔE above ~50 reads as two clearly different colours; measured: 102 / 87 / 99
    assert min(distances.values()) > 80, distances
    # both are also used for text (legends, direction words): WCAG AA asks 4.5:1 against white
    for colour in (plots.POSITIVE, plots.NEGATIVE):
        c = _rgb(colour)
        linear = np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
        assert 1.05 / (linear @ [0.2126, 0.7152, 0.0722] + 0.05) >= 4.5, colour
    # the check has teeth: red against green collapses for red-green blindness
    assert np.linalg.norm(_seen_as("#c0392b", "deuteranopia") - _seen_as("#27ae60", "deuteranopia")) < 30


def _pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3).astype(int)


def _count(pixels: np.ndarray, colour: str, alpha: float = 1.0) -> int:
    """Pixels of ``colour`` drawn with ``alpha`` over white (±2 per channel for rounding)."""
    target = np.round((alpha * _rgb(colour) + (1 - alpha)) * 255)
    return int((np.abs(pixels - target) <= 2).all(axis=1).sum())


def test_positive_colour_is_the_same_in_every_figure():
    from radpipe.explain import plots

    rng = np.random.default_rng(0)
    cols = ["original_firstorder_Energy", "original_shape_MeshVolume", "log-sigma-3-0-mm-3D_glcm_Idmn"]
    names = {c: display_name(c) for c in cols}
    units = {c: feature_unit(c, "HU") for c in cols}
    contrib = pd.Series([0.2, -0.1, 0.05], index=cols)
    values = pd.Series([455_612.3, 1_200.0, 0.91], index=cols)
    classes = {"positive": "metastasis", "negative": "no_metastasis"}
    figures = {
        "waterfall": plots.waterfall(contrib, values, 0.4, 0.55, threshold=0.5, display_names=names, units=units,
                                     **classes),
        "lime": plots.signed_bars(pd.Series([0.1, -0.05], index=["original_firstorder_Energy > 455612.30",
                                                                 "original_shape_MeshVolume <= 1200.00"]),
                                  xlabel="LIME weight", display_names=names, units=units, **classes),
        "beeswarm": plots.beeswarm(pd.DataFrame(rng.normal(0, 0.05, (40, 3)), columns=cols),
                                   pd.DataFrame(rng.normal(0, 1, (40, 3)), columns=cols), display_names=names,
                                   **classes),
    }
    for name, png in figures.items():
        pixels = _pixels(png)
        # bars and the beeswarm's direction words are drawn in exactly these two colours
        assert _count(pixels, plots.POSITIVE) > 30 and _count(pixels, plots.NEGATIVE) > 30, name
        assert _count(pixels, "#c0392b") == 0, name  # the old red is gone
    # dependence: the positive class's cases take the positive colour even when its label sorts first
    # ("metastasis" < "no_metastasis"; before, the first sorted class was blue)
    labels = pd.Series(["metastasis"] * 38 + ["no_metastasis"] * 2)
    x, s = pd.Series(rng.normal(5e5, 1e5, 40)), pd.Series(rng.normal(0, 0.05, 40))
    pixels = _pixels(plots.dependence(cols[0], x, s, labels, display_names=names, units=units, **classes))
    assert _count(pixels, plots.POSITIVE, alpha=0.8) > 5 * _count(pixels, plots.NEGATIVE, alpha=0.8) > 0
    assert plots.class_colours(labels, "metastasis") == {"metastasis": plots.POSITIVE,
                                                         "no_metastasis": plots.NEGATIVE}
    assert plots.CLASS_COLOURS[:2] == (plots.NEGATIVE, plots.POSITIVE)


def test_plain_numbers_and_readable_labels():
    from radpipe.explain import plots

    assert plots._fmt(455_612.3, "HU²") == "455,600 HU²"
    assert plots._fmt(152.0, "mm") == "152 mm"
    assert plots._fmt(25.94) == "25.9"
    assert plots._fmt(0.0123, "dimensionless") == "0.0123"
    assert plots._fmt(3.2e-6) == "3.20e-06"  # truly tiny values keep powers of ten
    assert plots._fmt(float("nan")) == "missing"
    names = {"log-sigma-3-0-mm-3D_glcm_Idmn": "GLCM IDMN · LoG σ = 3 mm", "original_firstorder_Range": "Intensity range"}
    units = {"original_firstorder_Range": "HU"}
    # digits inside the column name are left alone; numbers outside get plain form and unit
    assert plots._rule_label("0.53 < log-sigma-3-0-mm-3D_glcm_Idmn <= 0.91", names, units) == \
        "0.53 < GLCM IDMN · LoG σ = 3 mm <= 0.91"
    assert plots._rule_label("original_firstorder_Range > 1234.56", names, units) == "Intensity range > 1,235 HU"
    assert plots._rule_label("age > 60", names, units) == "age > 60"
    assert min(plots.FONT, plots.FONT_SMALL) >= 9


def test_codebook_of_a_real_pyradiomics_run_on_every_image_type():
    """Column names as pyradiomics really writes them (not built by hand) all get a unit, name and sentence."""
    import SimpleITK as sitk
    from radiomics import featureextractor

    rng = np.random.default_rng(0)
    image = sitk.GetImageFromArray(rng.normal(100, 20, (12, 16, 16)).astype(np.float32))
    image.SetSpacing((0.8, 0.8, 2.0))
    mask_array = np.zeros((12, 16, 16), np.uint8)
    mask_array[3:9, 4:12, 4:12] = 1
    mask = sitk.GetImageFromArray(mask_array)
    mask.CopyInformation(image)
    extractor = featureextractor.RadiomicsFeatureExtractor(binCount=8)
    extractor.enableAllFeatures()
    for name in ("Original", "Square", "SquareRoot", "Logarithm", "Exponential", "Gradient"):
        extractor.enableImageTypeByName(name)
    extractor.enableImageTypeByName("LoG", customArgs={"sigma": [1.0, 2.5]})
    extractor.enableImageTypeByName("Wavelet", customArgs={"start_level": 0, "level": 2})
    columns = [k for k in extractor.execute(image, mask) if not k.startswith("diagnostics")]
    assert {"log-sigma-2-5-mm-3D", "wavelet2-LLL", "squareroot"} <= {c.split("_")[0] for c in columns}
    book = codebook_table(columns, {"setting": {"binCount": 8}}, intensity_unit="HU").set_index("column")
    assert (book[["unit", "display_name", "description"]] != "").all().all()
    assert book["display_name"].is_unique
    assert book.loc["log-sigma-2-5-mm-3D_firstorder_Mean", "display_name"] == "Mean intensity · LoG σ = 2.5 mm"
    assert book.loc["wavelet2-LLL_glcm_Contrast", "display_name"] == "GLCM contrast · wavelet LLL, level 2"
    assert book.loc["original_firstorder_Variance", "unit"] == "HU²"
    assert book.loc["gradient_firstorder_Variance", "unit"] == "a.u.² (filtered)"


def test_shape_of_a_2d_image_without_spacing_is_in_pixels(tmp_path):
    """A PNG carries no pixel spacing: radpipe measures in pixels, so the codebook must not say mm."""
    import numpy as np
    import SimpleITK as sitk

    from radpipe.cohort import load_cohort
    from radpipe.extract.settings import ExtractSettings
    from radpipe.extract.stage import extract_cohort

    rng = np.random.default_rng(1)
    for sub in ("images", "masks"):
        (tmp_path / "cohort" / sub).mkdir(parents=True)
    for i in range(3):
        image = rng.integers(0, 255, (64, 64)).astype(np.uint8)
        mask = np.zeros((64, 64), np.uint8)
        mask[20:40 + i, 18:44] = 255
        sitk.WriteImage(sitk.GetImageFromArray(image), str(tmp_path / "cohort" / "images" / f"c{i}.png"))
        sitk.WriteImage(sitk.GetImageFromArray(mask), str(tmp_path / "cohort" / "masks" / f"c{i}.png"))
    settings = ExtractSettings(setting={"force2D": True, "binWidth": 16}, featureClass={"shape2D": [],
                                                                                       "firstorder": ["Mean"]})
    extract_cohort(load_cohort(tmp_path / "cohort"), settings, tmp_path / "out")
    book = pd.read_csv(tmp_path / "out" / "codebook.csv").set_index("column")
    assert book.loc["original_shape2D_PixelSurface", "unit"] == "px²"
    assert book.loc["original_shape2D_Perimeter", "unit"] == "px"
    assert book.loc["original_firstorder_Mean", "unit"] == "a.u."
