"""Measure an extraction engine against the IBSI-1 reference values (digital phantom, CT phantom A–E).

The reference table (``ibsi1_reference_values.csv`` in the IBSI data folder) has one row per
(data set, feature, aggregation). An engine's values are joined to it through the IBSI feature code
(the codebook's ``ibsi_code`` for pyradiomics columns, the feature tag for MIRP columns) and the texture
aggregation, and a row matches when the value rounded to 3 significant digits lies within the
reference tolerance (the IBSI / MIRP match rule).

What each CT configuration does (interpolation, re-segmentation, discretisation) is in :data:`CONFIGS`,
taken from the IBSI manual's "Reference data sets" chapter and MIRP's IBSI test settings.

Engines and resampling modes:

- ``pyradiomics`` with ``resampling="pyradiomics"``: pyradiomics' own ``resampledPixelSpacing``
  (grid anchored at the ROI box corner, nearest-neighbour mask, no rounding). This is the
  issue's baseline.
- ``pyradiomics`` with ``resampling="radpipe"``: radpipe's ``resample`` step with its defaults
  (grid centres aligned, nearest-neighbour mask), then pyradiomics.
- ``pyradiomics`` with ``resampling="ibsi"``: the ``resample`` step with ``mode: ibsi``
  (:mod:`radpipe.extract.ibsi_interpolation`), then pyradiomics.
- ``mirp``: radpipe's MIRP engine (:mod:`radpipe.extract.mirp_engine`), which reproduces IBSI itself.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from radpipe.errors import ConfigError

__all__ = [
    "CONFIGS", "IBSIConfig", "IBSICheck", "read_reference", "round_significant", "match_reference",
    "pyradiomics_values", "mirp_values", "ibsi_recipe", "check_engine", "mirp_key", "DATA_SETS", "match_counts", "read_phantom",
]

DATA_SETS = ("dig_phantom", "config_A", "config_B", "config_C", "config_D", "config_E")


@dataclass(frozen=True)
class IBSIConfig:
    """How one IBSI-1 data set is processed (manual, chapter "Reference data sets")."""

    name: str
    by_slice: bool
    spacing: tuple[float, float, float] | None = None  # None: no interpolation; 0 keeps an axis
    order: int = 1  # image spline order (1 linear, 3 cubic)
    resegment_range: tuple[float, float] | None = None
    outlier_sigma: float | None = None
    bin_width: float | None = None
    bin_count: int | None = None
    ivh: dict = field(default_factory=dict)  # MIRP's IVH discretisation keywords
    round_intensities: bool = True


CONFIGS: dict[str, IBSIConfig] = {
    "dig_phantom": IBSIConfig("dig_phantom", by_slice=False, bin_width=1.0, round_intensities=False,
                              ivh={"ivh_discretisation_method": "none"}),
    "config_A": IBSIConfig("config_A", by_slice=True, resegment_range=(-500.0, 400.0), bin_width=25.0,
                           ivh={"ivh_discretisation_method": "none"}),
    "config_B": IBSIConfig("config_B", by_slice=True, spacing=(2.0, 2.0, 0.0), order=1,
                           resegment_range=(-500.0, 400.0), bin_count=32,
                           ivh={"ivh_discretisation_method": "none"}),
    "config_C": IBSIConfig("config_C", by_slice=False, spacing=(2.0, 2.0, 2.0), order=1,
                           resegment_range=(-1000.0, 400.0), bin_width=25.0,
                           ivh={"ivh_discretisation_method": "fixed_bin_size", "ivh_discretisation_bin_width": 2.5}),
    "config_D": IBSIConfig("config_D", by_slice=False, spacing=(2.0, 2.0, 2.0), order=1, outlier_sigma=3.0,
                           bin_count=32, ivh={"ivh_discretisation_method": "none"}),
    "config_E": IBSIConfig("config_E", by_slice=False, spacing=(2.0, 2.0, 2.0), order=3,
                           resegment_range=(-1000.0, 400.0), outlier_sigma=3.0, bin_count=32,
                           ivh={"ivh_discretisation_method": "fixed_bin_number", "ivh_discretisation_n_bins": 1000}),
}

#: reference aggregation -> the suffix MIRP gives its output columns
_AGGREGATION_SUFFIX = {
    "2D, averaged": "2d_avg", "2D, slice-merged": "2d_s_mrg", "2.5D, direction-merged": "2.5d_d_mrg",
    "2.5D, merged": "2.5d_v_mrg", "3D, averaged": "3d_avg", "3D, merged": "3d_v_mrg",
    "2D": "2d", "2.5D": "2.5d", "3D": "3d",
}
#: MIRP column parameters that the reference tags leave out (distance, coarseness, discretisation)
_MIRP_PARAMETERS = re.compile(r"_(d\d+(\.\d+)?|a\d+(\.\d+)?|fbs_w[\d.]+|fbn_n\d+|fbsi_w[\d.]+|fbni_n\d+)(?=_|$)")

#: pyradiomics feature class -> IBSI families its coded features belong to
_PYRADIOMICS_FAMILIES = {
    "shape": {"morphology"}, "firstorder": {"intensity-based statistics", "intensity histogram"},
    "glcm": {"GLCM"}, "glrlm": {"GLRLM"}, "glszm": {"GLSZM"}, "gldm": {"NGLDM"}, "ngtdm": {"NGTDM"},
}
_MATRIX_AVERAGED = {"glcm", "glrlm"}  # pyradiomics averages these over directions
_COMPUTED_COLUMNS = ["data_set", "family", "ibsi_code", "ibsi_feature", "aggregation", "value", "source"]


def read_reference(path: str | Path) -> pd.DataFrame:
    """The IBSI-1 reference table, with numeric ``reference_value`` and ``tolerance``.

    Rows without a reference value (features the IBSI did not standardise) are dropped.

    Examples
    --------
    >>> import os
    >>> from pathlib import Path
    >>> data = Path(os.environ.get("RADPIPE_DATA", "../shared/data"))
    >>> ref = read_reference(data / "ibsi" / "ibsi1_reference_values.csv")  # doctest: +SKIP
    >>> ref.groupby("data_set").size().to_dict()  # doctest: +SKIP
    {'config_A': 346, 'config_B': 346, 'config_C': 209, 'config_D': 210, 'config_E': 210, 'dig_phantom': 482}
    """
    path = Path(path)
    if path.is_dir():
        path = path / "ibsi1_reference_values.csv"
    if not path.exists():
        raise ConfigError("IBSI reference table not found", key=str(path))
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    table = table[table.reference_value != ""].copy()
    table["reference_value"] = table.reference_value.astype(float)
    table["tolerance"] = table.tolerance.astype(float)
    return table.reset_index(drop=True)


def round_significant(value: float, digits: int = 3) -> float:
    """``value`` rounded to ``digits`` significant digits (IBSI's match rule rounds to 3).

    Examples
    --------
    >>> round_significant(0.0123456), round_significant(-1234.5), round_significant(0.0)
    (0.0123, -1230.0, 0.0)
    """
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - int(math.floor(math.log10(abs(value)))))


def mirp_key(tag: str, aggregation: str = "") -> str:
    """The name shared by a reference row (MIRP tag + aggregation) and a MIRP output column.

    Examples
    --------
    >>> mirp_key("cm_joint_max_2_5D_avg", "2.5D, direction-merged")
    'cm_joint_max_2.5d_d_mrg'
    >>> mirp_key("cm_joint_max_d1_2.5d_d_mrg")
    'cm_joint_max_2.5d_d_mrg'
    >>> mirp_key("ngl_lde_d1_a0.0_3d_fbn_n32")
    'ngl_lde_3d'
    """
    if aggregation:
        base = re.sub(r"_(2D|2_5D|3D)(_avg|_comb)?$", "", tag)
        return f"{base}_{_AGGREGATION_SUFFIX[aggregation]}"
    return _MIRP_PARAMETERS.sub("", tag)


def match_reference(computed: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Join computed values to the reference rows of their data sets and apply the match rule.

    ``computed`` has columns ``data_set, family, ibsi_code, ibsi_feature, aggregation, value, source`` (the
    engine's column name; IVH V10 and V90 share a code, so the IBSI feature name is part of the key). The result has one row per reference row of every data set in ``computed``: the
    reference columns plus ``value``, ``rounded``, ``source`` and ``match`` (False when the engine
    gave no value).

    Examples
    --------
    >>> ref = pd.DataFrame({"data_set": ["d"] * 2, "family": ["morphology"] * 2, "ibsi_code": ["RNU0", "C0JK"],
    ...                     "ibsi_feature": ["Volume (mesh)", "Surface area (mesh)"], "aggregation": ["", ""],
    ...                     "reference_value": [556.0, 388.0], "tolerance": [4.0, 3.0]})
    >>> got = pd.DataFrame({"data_set": ["d"], "family": ["morphology"], "ibsi_code": ["RNU0"],
    ...                     "ibsi_feature": ["Volume (mesh)"], "aggregation": [""], "value": [556.3],
    ...                     "source": ["morph_volume"]})
    >>> match_reference(got, ref)[["ibsi_code", "rounded", "match"]].to_dict("records")
    [{'ibsi_code': 'RNU0', 'rounded': 556.0, 'match': True}, {'ibsi_code': 'C0JK', 'rounded': nan, 'match': False}]
    """
    keys = ["data_set", "family", "ibsi_code", "ibsi_feature", "aggregation"]
    rows = reference[reference.data_set.isin(set(computed.data_set))]
    values = computed.drop_duplicates(keys)[keys + ["value", "source"]]
    table = rows.merge(values, on=keys, how="left")
    table["rounded"] = [round_significant(v) if pd.notna(v) else np.nan for v in table.value]
    # MIRP's test adds machine epsilon to the tolerance, so 0 tolerance is an exact match after rounding
    table["match"] = (table.rounded - table.reference_value).abs() <= table.tolerance + 1e-12
    return table


def match_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Per data set: reference rows, rows the engine computed, rows that match."""
    grouped = table.groupby("data_set", sort=True)
    return pd.DataFrame({
        "reference": grouped.size(),
        "computed": grouped.value.count(),
        "matched": grouped["match"].sum().astype(int),
    })


@dataclass
class IBSICheck:
    """The result of :func:`check_engine`: the joined ``table`` and per-data-set ``counts``."""

    engine: str
    table: pd.DataFrame
    counts: pd.DataFrame
    seconds: dict[str, float]

    def __repr__(self) -> str:
        lines = [f"IBSICheck({self.engine})"]
        for data_set, row in self.counts.iterrows():
            lines.append(f"  {data_set}: {row.matched}/{row.reference} matched "
                         f"({row.computed} computed, {self.seconds.get(data_set, float('nan')):.1f} s)")
        return "\n".join(lines)


def check_engine(engine: str, data_dir: str | Path, data_sets=DATA_SETS, *, resampling: str = "ibsi") -> IBSICheck:
    """Compute the IBSI-1 data sets with ``engine`` and count the reference values it reproduces.

    Parameters
    ----------
    engine : {"pyradiomics", "mirp"}
    data_dir : path
        The IBSI data folder (``ibsi1_reference_values.csv``, ``digital_phantom/``, ``ct_phantom/``).
    data_sets : names from ``DATA_SETS``
    resampling : {"pyradiomics", "radpipe", "ibsi"}
        pyradiomics engine only: whose interpolation runs for configurations B–E.

    Examples
    --------
    >>> import os
    >>> from pathlib import Path
    >>> ibsi = Path(os.environ.get("RADPIPE_DATA", "../shared/data")) / "ibsi"
    >>> check_engine("pyradiomics", ibsi, ["dig_phantom"]).counts.matched.to_dict()  # doctest: +SKIP
    {'dig_phantom': ...}
    """
    data_dir = Path(data_dir)
    reference = read_reference(data_dir)
    parts, seconds = [], {}
    for data_set in data_sets:
        start = time.perf_counter()
        if engine == "pyradiomics":
            parts.append(pyradiomics_values(data_set, data_dir, resampling=resampling, reference=reference))
        elif engine == "mirp":
            parts.append(mirp_values(data_set, data_dir, reference=reference))
        else:
            raise ConfigError(f"unknown engine '{engine}' (known: pyradiomics, mirp)", key="engine")
        seconds[data_set] = time.perf_counter() - start
    table = match_reference(pd.concat(parts, ignore_index=True), reference)
    return IBSICheck(engine, table, match_counts(table), seconds)


# --- reading the phantoms -----------------------------------------------------------------------------------


def read_phantom(data_set: str, data_dir: str | Path):
    """The image and mask of a data set as SimpleITK images (CT: float32, rounded to integers as the manual asks)."""
    import SimpleITK as sitk

    config = CONFIGS[data_set]
    folder = Path(data_dir) / ("digital_phantom" if data_set == "dig_phantom" else "ct_phantom")
    image = sitk.Cast(sitk.ReadImage(str(folder / "image.nii.gz")), sitk.sitkFloat32)
    if config.round_intensities:
        rounded = sitk.GetImageFromArray(np.round(sitk.GetArrayFromImage(image)))
        rounded.CopyInformation(image)
        image = rounded
    mask = sitk.Cast(sitk.ReadImage(str(folder / "mask.nii.gz")) > 0, sitk.sitkUInt8)
    return image, mask


# --- pyradiomics ---------------------------------------------------------------------------------------------


def pyradiomics_settings(config: IBSIConfig, *, resampling: str) -> tuple[dict, list[dict]]:
    """pyradiomics settings and radpipe preprocessing steps that carry out ``config``."""
    setting: dict[str, Any] = {
        "symmetricalGLCM": True, "distances": [1], "gldm_a": 0, "voxelArrayShift": 0, "label": 1,
        "force2D": config.by_slice, "force2Ddimension": 0, "additionalInfo": False,
    }
    if config.bin_width is not None:
        setting["binWidth"] = config.bin_width
    else:
        setting["binCount"] = config.bin_count
    steps: list[dict] = []
    if config.spacing is not None:
        if resampling == "pyradiomics":
            setting["resampledPixelSpacing"] = list(config.spacing)
            setting["interpolator"] = "sitkLinear" if config.order == 1 else "sitkBSpline"
        elif resampling in ("radpipe", "ibsi"):
            step = {"step": "resample", "spacing": list(config.spacing),
                    "interpolator": "linear" if config.order == 1 else "bspline"}
            if resampling == "ibsi":
                step.update(mode="ibsi", round_intensities=True)
            steps.append(step)
        else:
            raise ConfigError(f"unknown resampling '{resampling}' (known: pyradiomics, radpipe, ibsi)", key="resampling")
    if config.resegment_range is not None and config.outlier_sigma is not None:
        # pyradiomics re-segments by one rule only: the range here, the 3-sigma rule in pyradiomics
        steps.append({"step": "resegment", "range": list(config.resegment_range)})
    if config.outlier_sigma is not None:
        setting["resegmentMode"] = "sigma"
        setting["resegmentRange"] = [-config.outlier_sigma, config.outlier_sigma]
    elif config.resegment_range is not None:
        setting["resegmentRange"] = list(config.resegment_range)
    return setting, steps


def pyradiomics_values(data_set: str, data_dir: str | Path, *, resampling: str = "ibsi",
                       reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """pyradiomics' values for one data set, as rows ``data_set, family, ibsi_code, aggregation, value, source``.

    The digital phantom is computed in 3D and by slice (pyradiomics' ``force2D``: "2.5D" aggregation);
    the CT configurations as the manual says (A, B by slice; C–E in 3D). Texture families map to IBSI's
    "3D, averaged" / "3D" (GLCM, GLRLM / the others) in 3D and "2.5D, direction-merged" / "2.5D" by slice,
    which is how pyradiomics merges slices.
    """
    from radiomics import featureextractor

    from radpipe.extract.features import _to_float
    from radpipe.extract.ibsi import ibsi_table
    from radpipe.extract.preprocess import apply_preprocessing
    from radpipe.extract.settings import quiet_pyradiomics

    quiet_pyradiomics()
    if reference is None:
        reference = read_reference(data_dir)
    config = CONFIGS[data_set]
    image, mask = read_phantom(data_set, data_dir)
    setting, steps = pyradiomics_settings(config, resampling=resampling)
    image, mask, _ = apply_preprocessing(image, mask, steps)
    # (mode, everything): "3d", "2.5d" (force2D: slices merged) or "2d" (each slice alone, then averaged)
    runs = [("2.5d" if config.by_slice else "3d", True)]
    if config.by_slice or data_set == "dig_phantom":
        runs.append(("2d", False))
    if data_set == "dig_phantom":
        runs.append(("2.5d", False))
    codes = ibsi_table()
    families = reference.drop_duplicates(["family", "ibsi_code"]).groupby("ibsi_code").family.apply(set).to_dict()
    rows = []
    for mode, everything in runs:
        if mode == "2d":
            values = _per_slice_mean(image, mask, setting)
        else:
            extractor = featureextractor.RadiomicsFeatureExtractor(**{**setting, "force2D": mode != "3d"})
            values = extractor.execute(image, mask, label=1)
        for name, value in values.items():
            if not name.startswith("original_"):
                continue
            _, feature_class, feature = name.split("_", 2)
            if not everything and feature_class not in ("glcm", "glrlm", "glszm", "gldm", "ngtdm"):
                continue
            code = codes.ibsi_code.get((feature_class, feature), "")
            if not code:
                continue
            family = families.get(code, set()) & _PYRADIOMICS_FAMILIES[feature_class]
            if len(family) != 1:
                continue
            if feature_class in ("shape", "firstorder"):
                aggregation = ""
            elif feature_class in _MATRIX_AVERAGED:
                aggregation = {"3d": "3D, averaged", "2.5d": "2.5D, direction-merged", "2d": "2D, averaged"}[mode]
            else:
                aggregation = {"3d": "3D", "2.5d": "2.5D", "2d": "2D"}[mode]
            rows.append({"data_set": data_set, "family": family.pop(), "ibsi_code": code,
                         "ibsi_feature": codes.ibsi_name[(feature_class, feature)], "aggregation": aggregation,
                         "value": _to_float(value), "source": name})
    return pd.DataFrame(rows, columns=_COMPUTED_COLUMNS)


def _per_slice_mean(image, mask, setting: dict) -> dict[str, float]:
    """pyradiomics on each slice (z) holding ROI voxels alone, features averaged over the slices: IBSI's
    "2D" aggregation ("2D, averaged" for GLCM and GLRLM, whose directions pyradiomics averages too).

    IBSI discretises the whole ROI before splitting it into slices, so this does too: the ROI is re-segmented
    and discretised once (pyradiomics' own bin edges over the whole ROI), and each slice then runs on the bin
    numbers with a bin width of 1. pyradiomics still numbers each slice's grey levels from that slice's lowest
    bin, which moves the features that use the grey-level number itself. A harness-only construction: radpipe's
    own pyradiomics path gives "3D" or, with ``force2D``, "2.5D" values.
    """
    import SimpleITK as sitk
    from radiomics import featureextractor, imageoperations

    from radpipe.extract.features import _to_float

    values = sitk.GetArrayFromImage(image).astype(np.float64)
    roi = sitk.GetArrayFromImage(mask) > 0
    low, high = setting.get("resegmentRange") or (None, None)
    if low is not None:
        roi &= (values >= low) & (values <= high)
    edges = imageoperations.getBinEdges(values[roi], **setting)
    bins = np.clip(np.digitize(values, edges), 1, len(edges) - 1).astype(np.float32)
    image = sitk.GetImageFromArray(bins)
    image.CopyInformation(mask)
    mask = sitk.GetImageFromArray(roi.astype(np.uint8))
    mask.CopyInformation(image)
    per_slice = {k: v for k, v in setting.items() if k not in ("binCount", "resegmentRange", "resegmentMode")}
    extractor = featureextractor.RadiomicsFeatureExtractor(**{**per_slice, "binWidth": 1, "force2D": True})
    roi = sitk.GetArrayViewFromImage(mask)
    sums: dict[str, list[float]] = {}
    for z in np.flatnonzero(roi.reshape(roi.shape[0], -1).any(axis=1)):
        size = [image.GetSize()[0], image.GetSize()[1], 1]
        piece_image = sitk.RegionOfInterest(image, size, [0, 0, int(z)])
        piece_mask = sitk.RegionOfInterest(mask, size, [0, 0, int(z)])
        try:
            values = extractor.execute(piece_image, piece_mask, label=1)
        except ValueError:  # pyradiomics refuses a slice (e.g. one voxel): IBSI would still count it
            continue
        for name, value in values.items():
            if name.startswith("original_"):
                sums.setdefault(name, []).append(_to_float(value))
    return {name: float(np.mean(v)) for name, v in sums.items()}


# --- MIRP --------------------------------------------------------------------------------------------------


def ibsi_recipe(config: IBSIConfig) -> dict[str, Any]:
    """The recipe ``extract:`` section (as a mapping) that carries out ``config`` with ``engine: mirp``.

    Everything maps from radpipe's own keys (pyradiomics ``setting``, a ``resample`` step, a ``resegment``
    step) except the texture aggregations and IVH discretisation, which pyradiomics has no words for and
    which go in ``mirp:`` as in MIRP's own IBSI-1 tests.

    Examples
    --------
    >>> recipe = ibsi_recipe(CONFIGS["config_E"])
    >>> recipe["setting"], [step["step"] for step in recipe["preprocessing"]]
    ({'binCount': 32, 'resegmentMode': 'sigma', 'resegmentRange': [-3.0, 3.0]}, ['resample', 'resegment'])
    """
    if config.name == "dig_phantom":
        texture2 = ["2d_average", "2d_slice_merge", "2.5d_direction_merge", "2.5d_volume_merge",
                    "3d_average", "3d_volume_merge"]
        texture1 = ["2d", "2.5d", "3d"]
    elif config.by_slice:
        texture2 = ["2d_average", "2d_slice_merge", "2.5d_direction_merge", "2.5d_volume_merge"]
        texture1 = ["2d", "2.5d"]
    else:
        texture2, texture1 = ["3d_average", "3d_volume_merge"], ["3d"]
    setting: dict[str, Any] = {}
    if config.by_slice:
        setting["force2D"] = True
    mirp: dict[str, Any] = {
        "glcm_spatial_method": texture2, "glrlm_spatial_method": texture2, "glszm_spatial_method": texture1,
        "gldzm_spatial_method": texture1, "ngtdm_spatial_method": texture1, "ngldm_spatial_method": texture1,
        "no_approximation": config.name == "dig_phantom", **config.ivh,
    }
    if config.name == "dig_phantom":
        mirp["base_discretisation_method"] = "none"
    elif config.bin_width is not None:
        setting["binWidth"] = config.bin_width
    else:
        setting["binCount"] = config.bin_count
    steps: list[dict] = []
    if config.spacing is not None:
        steps.append({"step": "resample", "spacing": list(config.spacing),
                      "interpolator": "linear" if config.order == 1 else "bspline"})
    if config.outlier_sigma is not None:
        setting.update(resegmentMode="sigma", resegmentRange=[-config.outlier_sigma, config.outlier_sigma])
        if config.resegment_range is not None:
            steps.append({"step": "resegment", "range": list(config.resegment_range)})
    elif config.resegment_range is not None:
        setting["resegmentRange"] = list(config.resegment_range)
    return {"engine": "mirp", "setting": setting, "preprocessing": steps, "mirp": mirp, "intensity_unit": "HU"}


def mirp_values(data_set: str, data_dir: str | Path, *, reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """Values of radpipe's MIRP engine (``extract_case`` with :func:`ibsi_recipe`) for one data set, as rows for
    :func:`match_reference`."""
    from radpipe.extract.features import CaseInput, extract_case
    from radpipe.extract.settings import ExtractSettings

    if reference is None:
        reference = read_reference(data_dir)
    folder = Path(data_dir) / ("digital_phantom" if data_set == "dig_phantom" else "ct_phantom")
    settings = ExtractSettings(**ibsi_recipe(CONFIGS[data_set]))
    result = extract_case(CaseInput(data_set, str(folder / "image.nii.gz"), str(folder / "mask.nii.gz")), settings)
    if result.status == "failed":
        raise RuntimeError(f"MIRP failed on {data_set}: {result.qc[0].reason}")
    features = {k: v for k, v in result.features[0].items() if k not in ("case_id", "roi")}
    by_key = {mirp_key(name): (name, value) for name, value in features.items()}
    rows = []
    for row in reference[reference.data_set == data_set].itertuples():
        hit = by_key.get(mirp_key(row.mirp_tag, row.aggregation))
        if hit is not None:
            rows.append({"data_set": data_set, "family": row.family, "ibsi_code": row.ibsi_code,
                         "ibsi_feature": row.ibsi_feature, "aggregation": row.aggregation,
                         "value": float(hit[1]), "source": hit[0]})
    return pd.DataFrame(rows, columns=_COMPUTED_COLUMNS)
