"""``extract.engine: mirp``: features computed by MIRP (Zwanenburg et al., IBSI-compliant), settings from the recipe.

MIRP (pip ``mirp``, EUPL-1.2, installed by ``pip install "radpipe[ibsi]"``) reproduces the IBSI-1 reference
values. radpipe keeps reading, mask QC and the cohort map (one case per worker, MIRP itself sequential
with one CPU: it only starts ray when given ``num_cpus``), and hands MIRP one image and mask per case.

Mapping from the recipe (anything else is refused with a ConfigError before any case runs):

=======================================  ===================================================================
recipe                                   MIRP keyword
=======================================  ===================================================================
``setting.binWidth`` / ``binCount``      ``base_discretisation_method`` fixed_bin_size / fixed_bin_number
                                         (default bin width 25, pyradiomics' default)
``setting.resegmentRange``               ``resegmentation_intensity_range`` (``resegmentMode: absolute``) or
(+ ``resegmentMode: sigma``)             ``resegmentation_sigma``
``setting.force2D``                      ``by_slice``
``setting.resampledPixelSpacing``        ``new_spacing`` (+ ``interpolator`` -> ``spline_order``)
``setting.distances``                    ``glcm_distance`` and ``ngldm_distance``
``setting.gldm_a``                       ``ngldm_difference_level``
a ``resample`` preprocessing step        ``new_spacing``, ``spline_order``, ``roi_interpolation_mask_inclusion_threshold``
``resegment`` steps after it             ``resegmentation_intensity_range``
``imageType: Original`` / ``LoG``        base features / ``laplacian_of_gaussian`` response maps
``featureClass``                         ``base_feature_families`` (whole classes only)
``mirp:``                                further MIRP keywords, passed as they are (e.g. ``glcm_spatial_method``)
=======================================  ===================================================================

Preprocessing steps before the ``resample`` step (normalise, N4, denoise, ...) run in radpipe as usual.

Columns keep MIRP's IBSI-based names (``morph_volume``, ``cm_joint_max_d1_3d_avg``); the codebook gives each its
IBSI code (:func:`ibsi_code_of`).
"""

from __future__ import annotations

import importlib.metadata
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from radpipe.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK as sitk

    from radpipe.extract.features import CaseInput, CaseResult
    from radpipe.extract.settings import ExtractSettings

__all__ = ["mirp_version", "require_mirp", "mirp_keywords", "mirp_features", "extract_case_mirp", "ibsi_code_of",
           "mirp_codebook"]

INSTALL_HINT = 'MIRP is not installed: pip install "radpipe[ibsi]"'

#: pyradiomics settings that MIRP has no use for and that do not change IBSI values
_IGNORED_SETTINGS = {"additionalInfo", "label", "geometryTolerance", "correctMask", "minimumROIDimensions",
                     "minimumROISize", "symmetricalGLCM", "force2Ddimension", "preCrop", "padDistance",
                     "voxelArrayShift", "resegmentShape"}
_INTERPOLATION_ORDER = {"sitkNearestNeighbor": 0, "sitkLinear": 1, "sitkBSpline": 3,
                        "nearest": 0, "linear": 1, "bspline": 3}
_FAMILIES = {"shape": ["morphology"], "firstorder": ["statistics", "intensity_histogram"], "glcm": ["glcm"],
             "glrlm": ["glrlm"], "glszm": ["glszm"], "gldm": ["ngldm"], "ngtdm": ["ngtdm"]}
_METADATA_PREFIXES = ("sample_name", "image_")


def mirp_version() -> str:
    """The installed MIRP version; ConfigError with the install command when MIRP is missing."""
    try:
        return importlib.metadata.version("mirp")
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(INSTALL_HINT, key="extract.engine") from None


def require_mirp() -> None:
    """Raise a ConfigError saying how to install MIRP when it is not importable."""
    mirp_version()
    try:
        import mirp  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"{INSTALL_HINT} (import failed: {exc})", key="extract.engine") from None


def mirp_keywords(settings: ExtractSettings, source: str | None = None) -> tuple[dict[str, Any], list]:
    """MIRP ``extract_features`` keywords for a recipe's ``extract:`` section, and the preprocessing steps that
    radpipe runs itself before MIRP (those before a ``resample`` step).

    Raises
    ------
    ConfigError
        Naming the first setting MIRP cannot carry out.

    Examples
    --------
    >>> from radpipe.extract.settings import ExtractSettings
    >>> keywords, steps = mirp_keywords(ExtractSettings(setting={"binCount": 32, "force2D": True}))
    >>> keywords["base_discretisation_method"], keywords["base_discretisation_n_bins"], keywords["by_slice"]
    ('fixed_bin_number', 32, True)
    >>> mirp_keywords(ExtractSettings(setting={"normalize": True}))
    Traceback (most recent call last):
    ...
    radpipe.errors.ConfigError: ...extract.setting.normalize...
    """
    if settings.roi_mode != "single":
        raise _refuse("roi_mode", "'single' (the MIRP engine extracts one ROI per case)", source)
    if settings.extra_masks:
        raise _refuse("extra_masks", "none (the MIRP engine extracts one ROI per case)", source)
    params = settings.pyradiomics_params(source=source)
    setting = dict(params["setting"])
    keywords: dict[str, Any] = {"by_slice": bool(setting.pop("force2D", False)), "anti_aliasing": False}
    if "binCount" in setting:
        keywords.update(base_discretisation_method="fixed_bin_number",
                        base_discretisation_n_bins=int(setting.pop("binCount")))
        setting.pop("binWidth", None)
    else:
        keywords.update(base_discretisation_method="fixed_bin_size",
                        base_discretisation_bin_width=float(setting.pop("binWidth", 25)))
    mode = setting.pop("resegmentMode", "absolute")
    reseg = setting.pop("resegmentRange", None)
    if reseg is not None:
        if mode == "sigma":
            if len(reseg) != 2 or -float(reseg[0]) != float(reseg[1]):
                raise _refuse("setting.resegmentRange", "a symmetric sigma range [-k, k]", source)
            keywords["resegmentation_sigma"] = float(reseg[1])
        elif mode == "absolute":
            keywords["resegmentation_intensity_range"] = [float(reseg[0]), float(reseg[1]) if len(reseg) > 1
                                                          else float("inf")]
        else:
            raise _refuse("setting.resegmentMode", "'absolute' or 'sigma'", source)
    spacing = setting.pop("resampledPixelSpacing", None)
    interpolator = setting.pop("interpolator", "sitkBSpline")
    if spacing:
        keywords.update(new_spacing=_mirp_spacing(spacing, keywords["by_slice"]),
                        spline_order=_order(interpolator, "setting.interpolator", source))
    if "distances" in setting:
        distances = [float(d) for d in setting.pop("distances")]
        keywords.update(glcm_distance=distances, ngldm_distance=distances)
    if "gldm_a" in setting:
        keywords["ngldm_difference_level"] = [float(setting.pop("gldm_a"))]
    if setting.get("symmetricalGLCM") is False:
        raise _refuse("setting.symmetricalGLCM", "true (MIRP's co-occurrence matrices are symmetric)", source)
    if float(setting.get("voxelArrayShift", 0) or 0) != 0:
        raise _refuse("setting.voxelArrayShift", "0 (IBSI energy has no intensity shift)", source)
    unknown = sorted(set(setting) - _IGNORED_SETTINGS)
    if unknown:
        raise _refuse(f"setting.{unknown[0]}", "a setting MIRP has an equivalent of", source)

    # no featureClass: every IBSI family, including those pyradiomics lacks (local intensity, IVH, GLDZM)
    families: list[str] | str = "all"
    classes = params.get("featureClass") or {}
    if classes:
        families = []
        for name, features in classes.items():
            if features:
                raise _refuse(f"featureClass.{name}", "whole feature classes (MIRP computes families)", source)
            families += _FAMILIES[name] if name in _FAMILIES else [name]
    keywords["base_feature_families"] = families
    for image_type, custom in params["imageType"].items():
        if image_type == "Original":
            continue
        if image_type == "LoG":
            sigma = (custom or {}).get("sigma") or params["setting"].get("sigma")
            if not sigma:
                raise _refuse("imageType.LoG.sigma", "a list of sigmas in mm", source)
            keywords.update(filter_kernels=["laplacian_of_gaussian"], laplacian_of_gaussian_sigma=list(sigma),
                            response_map_feature_families=families)
            continue
        raise _refuse(f"imageType.{image_type}", "Original or LoG (MIRP's other filters are not mapped)", source)

    before, after, seen_resample = [], [], False
    for step in settings.preprocessing:
        if step.step == "resample":
            if seen_resample or spacing:
                raise _refuse("extract.preprocessing", "one resampling (a resample step or resampledPixelSpacing)",
                              source)
            seen_resample = True
            keywords.update(new_spacing=_mirp_spacing(step.spacing, keywords["by_slice"]),
                            spline_order=_INTERPOLATION_ORDER[step.interpolator],
                            roi_interpolation_mask_inclusion_threshold=float(step.mask_threshold))
        elif step.step == "resegment" and seen_resample:
            after.append(step)
        elif seen_resample:
            raise _refuse(f"extract.preprocessing ({step.step})",
                          "only resegment steps after resample (MIRP resamples inside its own pipeline)", source)
        else:
            before.append(step)
    if after:
        if len(after) > 1 or "resegmentation_intensity_range" in keywords:
            raise _refuse("extract.preprocessing (resegment)", "one re-segmentation range", source)
        low, high = after[0].range
        keywords["resegmentation_intensity_range"] = [float("-inf") if low is None else float(low),
                                                      float("inf") if high is None else float(high)]
    keywords.update(settings.mirp)
    return keywords, before


def _refuse(key: str, expected: str, source: str | None) -> ConfigError:
    return ConfigError(f"extract.engine: mirp cannot carry out '{key}' (expected {expected})",
                       file=source, key=f"extract.{key}" if not key.startswith("extract.") else key)


def _order(interpolator: str, key: str, source: str | None) -> int:
    if interpolator not in _INTERPOLATION_ORDER:
        raise _refuse(key, f"one of {', '.join(k for k in _INTERPOLATION_ORDER if k.startswith('sitk'))}", source)
    return _INTERPOLATION_ORDER[interpolator]


def _mirp_spacing(spacing, by_slice: bool):
    values = [float(s) for s in spacing]
    if by_slice:  # MIRP interpolates in-plane only when by slice; the z spacing is kept
        values = values[:2]
    if any(v <= 0 for v in values):
        raise ConfigError("extract.engine: mirp needs every resampling spacing > 0 (3D) or in-plane (by slice)",
                          key="extract.preprocessing.resample.spacing")
    return values[0] if len(set(values)) == 1 else values[::-1]  # MIRP orders spacing z, y, x


def mirp_features(image: sitk.Image, mask: sitk.Image, keywords: dict[str, Any], *,
                  modality: str | None = "ct") -> dict[str, float]:
    """MIRP's features for one image and mask (SimpleITK images), as ``{MIRP column: value}``.

    The pair is written to temporary NIfTI files and MIRP runs sequentially in this process. ``modality``:
    "ct", "pet", "mr", or None for MIRP's generic image.

    Examples
    --------
    >>> import SimpleITK as sitk, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> image = sitk.GetImageFromArray(rng.integers(0, 6, (6, 8, 8)).astype(np.float32))
    >>> mask = sitk.GetImageFromArray(np.pad(np.ones((4, 6, 6), np.uint8), 1))
    >>> values = mirp_features(image, mask, {"base_feature_families": ["morphology"]}, modality=None)
    >>> values["morph_vol_approx"], round(values["morph_volume"], 1)  # voxel count; mesh volume
    (144.0, 136.7)
    """
    import SimpleITK as sitk

    require_mirp()
    from mirp import extract_features

    # MIRP calls logging.basicConfig(level=INFO, stream=stdout) and logs each case's progress on the root
    # logger: a handler already on the root makes basicConfig a no-op, and INFO is muted for the call only
    guard, muted = logging.NullHandler(), logging.root.manager.disable
    logging.root.addHandler(guard)
    logging.disable(max(muted, logging.INFO))
    with tempfile.TemporaryDirectory(prefix="radpipe-mirp-") as folder:
        image_path, mask_path = Path(folder) / "image.nii.gz", Path(folder) / "mask.nii.gz"
        sitk.WriteImage(sitk.Cast(image, sitk.sitkFloat32), str(image_path))
        sitk.WriteImage(sitk.Cast(mask > 0, sitk.sitkUInt8), str(mask_path))
        try:
            extra = {"image_modality": modality} if modality else {}
            tables = extract_features(write_features=False, export_features=True, image=str(image_path),
                                      mask=str(mask_path), **extra, **keywords)
        finally:
            logging.disable(muted)
            logging.root.removeHandler(guard)
    table = tables[0]
    return {column: float(np.asarray(table[column])[0]) for column in table.columns
            if not column.startswith(_METADATA_PREFIXES)}


def extract_case_mirp(case: CaseInput, settings: ExtractSettings) -> CaseResult:
    """Read, check, preprocess (steps radpipe runs) and extract one case with MIRP; errors propagate to
    :func:`radpipe.extract.features.extract_case`, which turns them into a failed case."""
    from radpipe.extract import io, preprocess, qc
    from radpipe.extract.features import CaseResult, QCRow, _diagnostics, read_case_mask

    keywords, before = mirp_keywords(settings)
    result = CaseResult(case.case_id)
    image, notes = io.read_image(case.image, spacing_2d=case.spacing_2d)
    modality = io.image_modality(image)
    mask, mask_notes = read_case_mask(Path(case.mask), image, settings.roi_name, case.spacing_2d)
    label = settings.label if settings.label is not None else case.label
    mask, fixes = qc.check_mask(image, mask, label=label, min_voxels=settings.min_voxels,
                                geometry_tolerance=settings.geometry_tolerance)
    image, mask, records = preprocess.apply_preprocessing(image, mask, before)
    unit = (settings.intensity_unit or ("HU" if modality == "CT" else "")).upper()
    # MIRP treats CT (integer HU after interpolation), PET and MR images by modality; others stay generic
    kind = "ct" if unit == "HU" else {"PT": "pet", "MR": "mr"}.get(modality)
    if (kind is None and keywords.get("base_discretisation_method") == "fixed_bin_size"
            and "resegmentation_intensity_range" not in keywords):
        from radpipe.errors import CaseError

        raise CaseError("MIRP's fixed bin size needs the lower bound of the intensity range, which it knows only for "
                        "CT and PET: set extract.setting.resegmentRange, extract.setting.binCount, or "
                        "extract.intensity_unit: HU")
    values = mirp_features(image, mask, keywords, modality=kind)
    result.features.append({"case_id": case.case_id, "roi": None, **values})
    records.append({"step": "mirp", "params": {k: repr(v) for k, v in keywords.items()},
                    "result": f"MIRP {mirp_version()}, {len(values)} features"})
    result.diagnostics.append(_diagnostics(case, None, image, image, mask, notes + mask_notes, records,
                                           modality=modality))
    for record in fixes:
        result.qc.append(QCRow(case.case_id, "", "fixed", record.action, record.reason))
    if fixes:
        result.status = "fixed"
    else:
        result.qc.append(QCRow(case.case_id, None, "ok", "", ""))
    return result


def ibsi_code_of(column: str) -> tuple[str, str, str]:
    """(IBSI code, IBSI feature name, family) of a MIRP column, from the IBSI-1 tags; empty when unknown.

    Examples
    --------
    >>> ibsi_code_of("cm_joint_max_d1_3d_avg")
    ('GYBY', 'Joint maximum', 'GLCM')
    >>> ibsi_code_of("morph_volume")[0]
    'RNU0'
    """
    from radpipe.extract.ibsi_check import mirp_key

    return _mirp_codes().get(_base_tag(mirp_key(column)), ("", "", ""))


def _base_tag(key: str) -> str:
    import re

    return re.sub(r"_(2d|2\.5d|3d)(_avg|_s_mrg|_d_mrg|_v_mrg)?$", "", key)


_CODES: dict[str, tuple[str, str, str]] = {}


def _mirp_codes() -> dict[str, tuple[str, str, str]]:
    """{MIRP base tag: (code, name, family)} from the packaged tag table."""
    if not _CODES:
        table = pd.read_csv(Path(__file__).with_name("data") / "ibsi_mirp_tags.csv", dtype=str, keep_default_na=False)
        _CODES.update({row.mirp_tag: (row.ibsi_code, row.ibsi_feature, row.family) for row in table.itertuples()})
    return _CODES


def mirp_codebook(columns: list[str], keywords: dict[str, Any], preprocessing: str = "", *,
                  intensity_unit: str = "a.u.") -> pd.DataFrame:
    """The codebook rows (:data:`radpipe.extract.tables.CODEBOOK_COLUMNS`) for MIRP's columns: family, IBSI code
    and name from the IBSI-1 tags, the discretisation MIRP was given, and ``engine: MIRP <version>`` in the note.

    Examples
    --------
    >>> book = mirp_codebook(["morph_volume", "cm_contrast_d1_3d_avg_fbs_w25.0"],
    ...                      {"base_discretisation_method": "fixed_bin_size", "base_discretisation_bin_width": 25.0})
    >>> book[["column", "family", "ibsi_code", "feature_class"]].values.tolist()
    [['morph_volume', 'shape', 'RNU0', 'morphology'], ['cm_contrast_d1_3d_avg_fbs_w25.0', 'texture', 'ACUI', 'GLCM']]
    """
    from radpipe.extract.tables import CODEBOOK_COLUMNS, ID_COLUMNS

    method = keywords.get("base_discretisation_method", "fixed_bin_size")
    discretisation = {"fixed_bin_size": f"FBS {keywords.get('base_discretisation_bin_width', 25)}",
                      "fixed_bin_number": f"FBN {keywords.get('base_discretisation_n_bins', '')}"}.get(method, method)
    spacing = keywords.get("new_spacing")
    try:
        version = f"MIRP {mirp_version()}"
    except ConfigError:
        version = "MIRP"
    rows = []
    for column in columns:
        if column in ID_COLUMNS:
            continue
        code, name, family = ibsi_code_of(column)
        kind = ("shape" if family == "morphology" else
                "first order" if family in ("intensity-based statistics", "intensity histogram", "local intensity",
                                            "intensity-volume histogram") else "texture" if family else "")
        rows.append({
            "column": column, "pyradiomics_column": "", "ibsi_column": column, "display_name": name or column, "unit": "", "description": name,
            "image_type": "original" if not column.startswith(("log_", "laplacian")) else column.split("_", 1)[0],
            "feature_class": family, "feature": name, "family": kind, "ibsi_code": code, "ibsi_name": name,
            "ibsi_note": f"engine: {version}; IBSI definition" if code else f"engine: {version}",
            "discretisation": "" if kind in ("shape", "") else discretisation,
            "resampling": str(spacing) if spacing else "none", "normalisation": "none",
            "preprocessing": preprocessing, "feature_qc": "", "pyradiomics_doc": "",
        })
    return pd.DataFrame(rows, columns=CODEBOOK_COLUMNS)
