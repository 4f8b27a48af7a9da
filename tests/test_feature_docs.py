"""Readable features: units, display names and plain descriptions in the codebook, and the explain figures'
one colour meaning (towards the positive class is always the same colour)."""

from __future__ import annotations

import doctest
import re

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


def test_module_examples_run():
    from radpipe.extract import tables

    for module in (feature_docs, tables):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0 and result.attempted > 0, (module.__name__, result)
