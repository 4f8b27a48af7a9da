"""What each pyradiomics feature column means for a person: its unit, a readable name and one plain sentence.

The per-feature facts live in ``data/feature_descriptions.csv`` (one row per pyradiomics feature class and
feature: ``display_name``, ``unit``, ``description``), written for radpipe from the formulas in pyradiomics'
docstrings. The functions here add what depends on the column: the image the feature was computed on
(original, LoG, wavelet, ...) and the image's intensity unit.

Unit rule, applied per feature from its formula:

* shape features are lengths (mm), areas (mm²), volumes (mm³), their ratios (1/mm) or dimensionless;
* first-order features are written with the word ``intensity``, replaced by the image's unit (``HU``,
  ``SUV``, ``a.u.``): ``intensity`` for values on the intensity scale (mean, percentiles, range, deviations,
  root mean square), ``intensity²`` for Energy and Variance, ``intensity² · mm³`` for TotalEnergy (energy
  times the voxel volume), dimensionless for Entropy, Uniformity, Skewness and Kurtosis;
* texture features are computed on the discretised image, whose values are bin numbers 1..N, not
  intensities. Their unit is the power of the bin number ("grey levels") in the formula, times the power of
  the size the formula weights by (run length, zone size or number of similar neighbours, counted in
  "voxels"); the non-normalised non-uniformity features count runs, zones or voxels. A feature with neither
  is dimensionless.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pandas as pd

DESCRIPTIONS_FILE = Path(__file__).with_name("data") / "feature_descriptions.csv"

# The placeholder in the data file's unit column that stands for the image's intensity unit.
INTENSITY = "intensity"

_FIXED_IMAGE_TYPES = {
    "original": ("", ""),
    "square": ("square", "the image with every intensity squared (after rescaling), which stresses bright voxels"),
    "squareroot": ("square root", "the square root of the intensities (sign kept, after rescaling), which "
                                  "compresses bright values"),
    "logarithm": ("logarithm", "the logarithm of the intensities (after rescaling), which compresses bright values"),
    "exponential": ("exponential", "the exponential of the intensities (after rescaling), which stresses bright "
                                   "voxels"),
    "gradient": ("gradient", "the gradient magnitude, which is high where intensity changes quickly (edges)"),
    "lbp-2D": ("LBP 2D", "the 2D local binary pattern image, which encodes which neighbours of each pixel are "
                         "brighter or darker"),
    "lbp-3D-k": ("LBP 3D kurtosis", "the kurtosis of the 3D local binary patterns, which is high where a few "
                                    "neighbourhood patterns dominate"),
}


@cache
def feature_docs_table() -> pd.DataFrame:
    """The data file, indexed by (feature_class, feature).

    Examples
    --------
    >>> from radpipe.extract.feature_docs import feature_docs_table
    >>> feature_docs_table().loc[("shape", "MeshVolume"), "unit"]
    'mm³'
    """
    table = pd.read_csv(DESCRIPTIONS_FILE, dtype=str, keep_default_na=False)
    return table.set_index(["feature_class", "feature"])


def _split(column: str) -> tuple[str, str, str]:
    """``log-sigma-2-0-mm-3D_glcm_Contrast`` → (``log-sigma-2-0-mm-3D``, ``glcm``, ``Contrast``)."""
    parts = str(column).split("_", 2)
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else ("", "", str(column))


@cache
def _rows() -> dict[tuple[str, str], dict[str, str]]:
    """The data file as plain dicts: a codebook of 2,000 columns looks each up three times."""
    return {key: dict(row) for key, row in feature_docs_table().iterrows()}


def _row(column: str) -> dict[str, str] | None:
    _, feature_class, feature = _split(column)
    return _rows().get((feature_class, feature))


def image_type_label(image_type: str) -> tuple[str, str]:
    """(short label, plain phrase) for a pyradiomics image type; ("", "") for the original image.

    Examples
    --------
    >>> from radpipe.extract.feature_docs import image_type_label
    >>> image_type_label("log-sigma-1-5-mm-3D")[0]
    'LoG σ = 1.5 mm'
    >>> image_type_label("wavelet2-HLL")[0]
    'wavelet HLL, level 2'
    """
    if image_type in _FIXED_IMAGE_TYPES:
        return _FIXED_IMAGE_TYPES[image_type]
    if match := re.fullmatch(r"log-sigma-(\d+)-(\d+)-mm-3D", image_type):
        sigma = f"{float(f'{match[1]}.{match[2]}'):g}"
        return (f"LoG σ = {sigma} mm",
                f"the image after a Laplacian-of-Gaussian filter with σ = {sigma} mm, which brings out blobs and "
                f"edges about that size")
    if match := re.fullmatch(r"wavelet(\d*)-([LH]+)", image_type):
        level = f", level {match[1]}" if match[1] else ""
        return (f"wavelet {match[2]}{level}",
                f"the wavelet band {match[2]}{level} (one letter per image axis: L smoothed, H edges kept)")
    if match := re.fullmatch(r"lbp-3D-m(\d+)", image_type):
        return (f"LBP 3D level {match[1]}",
                f"the 3D local binary pattern image (level {match[1]}), which encodes which neighbours of each "
                f"voxel are brighter or darker")
    return (image_type, f"the '{image_type}' image") if image_type else ("", "")


def _tidy(name: str) -> str:
    """``MaximumProbability`` → ``Maximum probability``; other text only loses its underscores."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name.replace("_", " ")).split()
    return " ".join([words[0]] + [w.lower() if w[1:].islower() else w for w in words[1:]]) if words else name


def display_name(column: str) -> str:
    """A readable name for a feature column: the feature, then the image it was computed on.

    An unknown column (a clinical variable, a feature of a newer pyradiomics) gets a tidied version of
    its own name.

    Examples
    --------
    >>> from radpipe.extract.feature_docs import display_name
    >>> display_name("original_glcm_Contrast")
    'GLCM contrast'
    >>> display_name("log-sigma-3-0-mm-3D_glcm_Idmn")
    'GLCM IDMN · LoG σ = 3 mm'
    >>> display_name("wavelet-LHH_firstorder_Mean")
    'Mean intensity · wavelet LHH'
    >>> display_name("age_at_diagnosis")
    'age at diagnosis'
    """
    image_type, feature_class, feature = _split(column)
    row = _row(column)
    if row is None and feature_class not in {key[0] for key in _rows()}:
        return _tidy(str(column))
    name = row["display_name"] if row else f"{_tidy(feature)} ({feature_class})"
    label = image_type_label(image_type)[0]
    return f"{name} · {label}" if label else name


def feature_unit(column: str, intensity_unit: str = "a.u.", length_unit: str = "mm") -> str:
    """The unit of a feature column's values; "" for a column that is not a known pyradiomics feature.

    ``intensity_unit`` is the unit of the image the features were computed from: ``"HU"`` for CT,
    ``"SUV"`` for PET converted to SUV, ``"a.u."`` otherwise (and whenever intensities were normalised).
    ``length_unit`` is ``"px"`` for 2D images that carry no pixel spacing (shape is then in pixels).

    Examples
    --------
    >>> from radpipe.extract.feature_docs import feature_unit
    >>> feature_unit("original_shape_MeshVolume")
    'mm³'
    >>> feature_unit("original_firstorder_Variance", "HU")
    'HU²'
    >>> feature_unit("wavelet-LHH_firstorder_Mean", "HU")
    'a.u. (filtered)'
    >>> feature_unit("original_glcm_Contrast", "HU")
    'grey levels²'
    >>> feature_unit("original_shape2D_PixelSurface", length_unit="px")
    'px²'
    """
    row = _row(column)
    if row is None:
        return ""
    unit = row["unit"].replace("mm", length_unit)
    if INTENSITY not in unit:
        return unit
    if _split(column)[0] in ("", "original"):
        return _with_intensity(unit, intensity_unit)
    # A filtered image is no longer on the original intensity scale: pyradiomics rescales the square,
    # square-root, logarithm and exponential images, LoG and wavelet give band-pass responses, the gradient is
    # per mm and LBP images are pattern codes. No one unit fits them all, so they are arbitrary units.
    return _with_intensity(unit, "a.u.") + " (filtered)"


def _with_intensity(unit: str, intensity_unit: str) -> str:
    return unit.replace(INTENSITY, intensity_unit)


def description(column: str) -> str:
    """One plain sentence saying what the feature measures, plus one naming the filter for a filtered image.

    "" for a column that is not a known pyradiomics feature.

    Examples
    --------
    >>> from radpipe.extract.feature_docs import description
    >>> description("original_firstorder_Maximum")
    'The brightest voxel in the lesion.'
    >>> description("gradient_firstorder_Maximum")
    'The brightest voxel in the lesion. Computed on the gradient magnitude, which is high where intensity changes quickly (edges).'
    """
    row = _row(column)
    if row is None:
        return ""
    phrase = image_type_label(_split(column)[0])[1]
    return f"{row['description']} Computed on {phrase}." if phrase else row["description"]
