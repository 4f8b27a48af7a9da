"""A look at a cohort before extracting it: voxel spacing, modality and ROI intensities, read as extraction reads them.

The survey is what data-driven defaults are made of: the automatic bin width (:mod:`radpipe.extract.discretisation`),
the spacing warnings, and the ``extract:`` section ``radpipe init`` writes. Each case is read with the same reader,
mask checks and recipe preprocessing as extraction (a resampled or normalised image is surveyed as pyradiomics
will see it), and its row is cached beside the extraction cache under the same file digests, so a rerun reads
no image again.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from radpipe._io import atomic_write_text, software_versions
from radpipe.extract.discretisation import choose_bin_width, level_summary, recipe_discretisation
from radpipe.extract.features import CaseInput
from radpipe.extract.settings import ExtractSettings

SURVEY_FORMAT = 2  # 2: spacing_known. Bump when a survey row changes meaning: cached rows are then read again
#: Spacing along an axis "varies" when its range across the cohort exceeds this fraction of its median.
SPACING_TOLERANCE = 0.10
#: 3D texture on voxels whose longest side exceeds this many times the shortest mixes directions.
ANISOTROPY_LIMIT = 2.0
_PERCENTILES = (5, 25, 50, 75, 95)
_AXES = ("x", "y", "z")


@dataclass
class CohortSurvey:
    """What :func:`survey_cohort` found, and the extraction defaults that follow from it.

    Attributes
    ----------
    table
        One row per case: ``case_id``, ``status`` (``ok`` or ``skipped``), ``reason``, ``modality``,
        ``units`` (as the reader recorded them), ``dimension``, ``size``, ``spacing_x/y/z`` (mm, after the
        recipe's preprocessing), ``roi_voxels``, ``roi_min``, ``roi_p5`` ... ``roi_p95``, ``roi_max``.
    modality
        The cohort's DICOM modality (``CT``, ``PT``, ``MR``) when the images carry one, else None.
    intensity_unit
        ``HU`` for CT, ``SUV`` for PET converted to SUV, ``a.u.`` otherwise; the recipe's
        ``extract.intensity_unit`` wins.
    median_spacing
        Per-axis median voxel spacing (mm) of the readable cases.
    spacing_varies
        True when, along some axis, the spacing range exceeds 10% of its median and nothing resamples.
    anisotropic
        True when 3D texture would be computed on voxels longer than twice their shortest side and nothing
        resamples.
    suggested_bin_width
        The readable fixed bin width giving the median ROI 32-64 grey levels (None when every ROI is flat).
    median_levels
        Grey levels of the median ROI at the bin width in use (the recipe's, else the suggested one).
    warnings
        Sentences for the user, each with the numbers found and the recipe lines to use.
    """

    table: pd.DataFrame
    modality: str | None
    intensity_unit: str
    median_spacing: tuple[float, ...]
    length_unit: str
    spacing_varies: bool
    anisotropic: bool
    suggested_bin_width: float | None
    median_levels: float | None
    warnings: list[str] = field(default_factory=list)
    resampled: bool = False

    @property
    def ok(self) -> pd.DataFrame:
        """The rows of the cases that could be read."""
        return self.table[self.table["status"] == "ok"]

    @property
    def skipped(self) -> dict[str, str]:
        """{case_id: reason} of the cases that could not be read."""
        rows = self.table[self.table["status"] != "ok"]
        return dict(zip(rows["case_id"], rows["reason"], strict=True))

    def spacing_range(self) -> list[tuple[float, float]]:
        """(min, max) spacing per axis over the readable cases."""
        ok = self.ok
        return [(float(ok[f"spacing_{a}"].min()), float(ok[f"spacing_{a}"].max()))
                for a in _AXES[:len(self.median_spacing)]]

    def resample_spacing(self) -> list[float] | None:
        """The spacing a resample step should target: the median spacing, made isotropic (same voxel volume)
        when the median voxel is anisotropic beyond 2:1; None when no resampling is needed."""
        if not (self.spacing_varies or self.anisotropic) or not self.median_spacing:
            return None
        spacing = list(self.median_spacing)
        if self.anisotropic:
            side = float(np.prod(spacing)) ** (1 / len(spacing))
            spacing = [side] * len(spacing)
        return [_round3(s) for s in spacing]

    def recipe_extract(self) -> dict:
        """The ``extract:`` section of a recipe with these defaults filled in (what ``radpipe init`` writes).

        ``setting: {binWidth: ...}`` from the suggested bin width, a ``preprocessing`` resample step to the
        cohort's median spacing when spacing varies or voxels are anisotropic, and ``intensity_unit``.
        """
        section: dict = {}
        if self.suggested_bin_width is not None:
            section["setting"] = {"binWidth": self.suggested_bin_width}
        spacing = self.resample_spacing()
        if spacing is not None:
            section["preprocessing"] = [resample_step(spacing)]
        section["intensity_unit"] = self.intensity_unit
        return section

    def __repr__(self) -> str:
        ok = self.ok
        spacing = "x".join(f"{s:.3g}" for s in self.median_spacing) or "?"
        width = "none" if self.suggested_bin_width is None else f"{self.suggested_bin_width:g}"
        levels = "?" if self.median_levels is None else f"{self.median_levels:g}"
        parts = [f"{len(ok)} cases read"]
        if len(ok) < len(self.table):
            parts.append(f"{len(self.table) - len(ok)} skipped")
        parts += [f"modality {self.modality or 'unknown'}", f"unit {self.intensity_unit}",
                  f"median spacing {spacing} mm{' (varies)' if self.spacing_varies else ''}"
                  f"{' (anisotropic)' if self.anisotropic else ''}",
                  f"suggested binWidth {width} ({levels} grey levels on the median ROI)",
                  f"{len(self.warnings)} warning(s)"]
        return f"CohortSurvey({', '.join(parts)})"


def resample_step(spacing: list[float]) -> dict:
    """The recipe's resample step to ``spacing``: linear image interpolation (B-splines overshoot, e.g. to
    negative SUV) and a partial-volume mask."""
    return {"step": "resample", "spacing": list(spacing), "interpolator": "linear",
            "mask_interpolator": "partial_volume"}


def survey_cohort(cohort, settings: ExtractSettings | None = None, *, jobs: int = 1,
                  cache_dir: str | Path | None = None) -> CohortSurvey:
    """Survey every case of ``cohort`` as extraction would read it, and derive the extraction defaults.

    Parameters
    ----------
    cohort
        A :class:`radpipe.cohort.Cohort` (``load_cohort("path/to/folder")``).
    settings
        The recipe's ``extract:`` section; its mask options and preprocessing are applied before measuring,
        and its bin width (when set) is the one checked. Default: pyradiomics' defaults, no preprocessing.
    jobs
        Cases read in parallel (joblib) when > 1.
    cache_dir
        A folder for the cached survey rows (an extraction's ``.cache`` folder is the natural place).

    Returns
    -------
    CohortSurvey
        A case that cannot be read is a row with ``status`` ``skipped`` and the reason, never an exception.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from radpipe.cohort import load_cohort
    >>> from radpipe.demo import make_demo_cohort
    >>> folder = make_demo_cohort(pathlib.Path(tempfile.mkdtemp()) / "cohort", n_cases=4)
    >>> survey = survey_cohort(load_cohort(str(folder)))
    >>> survey.median_spacing, survey.suggested_bin_width
    ((1.0, 1.0, 2.0), 2.0)
    >>> survey.recipe_extract()
    {'setting': {'binWidth': 2.0}, 'intensity_unit': 'a.u.'}
    """
    from radpipe.extract.runner import DigestMemo, case_inputs

    settings = settings or ExtractSettings()
    memo = DigestMemo(Path(cache_dir) if cache_dir else None)
    items = case_inputs(cohort, settings, memo)
    memo.save()
    return summarise(survey_rows(items, settings, jobs=jobs, cache_dir=cache_dir), settings)


def survey_rows(items: list[CaseInput], settings: ExtractSettings, *, jobs: int = 1,
                cache_dir: str | Path | None = None) -> pd.DataFrame:
    """One survey row per work item, from the cache where it has one (``cache_dir/survey``)."""
    folder = Path(cache_dir) / "survey" if cache_dir else None
    fingerprint = _survey_fingerprint(settings)
    keys = {item.case_id: _row_key(item, fingerprint) for item in items}
    rows: dict[str, dict] = {}
    todo = []
    for item in items:
        cached = _read_cached(folder, keys[item.case_id]) if folder else None
        if cached is not None and cached.get("case_id") == item.case_id:
            rows[item.case_id] = cached
        else:
            todo.append(item)
    if jobs > 1 and len(todo) > 1:
        from joblib import Parallel, delayed

        computed = Parallel(n_jobs=jobs, backend="loky")(delayed(survey_case)(item, settings) for item in todo)
    else:
        computed = [survey_case(item, settings) for item in todo]
    for item, row in zip(todo, computed, strict=True):
        rows[item.case_id] = row
        if folder and row.pop("_cacheable", True):
            atomic_write_text(folder / keys[item.case_id][:2] / f"{keys[item.case_id]}.json", json.dumps(row))
        row.pop("_cacheable", None)
    return pd.DataFrame([rows[item.case_id] for item in items], columns=_COLUMNS)


_COLUMNS = ["case_id", "status", "reason", "modality", "units", "dimension", "size", "spacing_x", "spacing_y",
            "spacing_z", "spacing_known", "roi_voxels", "roi_min", *(f"roi_p{p}" for p in _PERCENTILES), "roi_max"]


def survey_case(item: CaseInput, settings: ExtractSettings) -> dict:
    """One case's survey row; a case that cannot be read gives ``status: skipped`` and the reason."""
    from radpipe.errors import CaseError

    try:
        return _survey_case(item, settings)
    except CaseError as exc:
        return {"case_id": item.case_id, "status": "skipped", "reason": exc.reason}
    except Exception as exc:  # an input nobody foresaw: the survey goes on, extraction will report it too
        return {"case_id": item.case_id, "status": "skipped", "reason": f"{type(exc).__name__}: {exc}",
                "_cacheable": False}


def _survey_case(item: CaseInput, settings: ExtractSettings) -> dict:
    import SimpleITK as sitk

    from radpipe.extract import io, preprocess, qc
    from radpipe.extract.dicom import KEY_INTENSITY_UNITS
    from radpipe.extract.features import read_case_mask

    image, _ = io.read_image(item.image, spacing_2d=item.spacing_2d)
    modality = io.image_modality(image)
    units = image.GetMetaData(KEY_INTENSITY_UNITS) if image.HasMetaDataKey(KEY_INTENSITY_UNITS) else ""
    mask, _ = read_case_mask(Path(item.mask), image, settings.roi_name, item.spacing_2d)
    label = settings.label if settings.label is not None else item.label
    split = settings.roi_mode != "single"
    mask, _ = qc.check_mask(image, mask, label=None if split else label, keep_labels=split,
                            min_voxels=settings.min_voxels, geometry_tolerance=settings.geometry_tolerance)
    image, mask, _ = preprocess.apply_preprocessing(image, mask, settings.preprocessing)
    setting = settings.pyradiomics_params()["setting"]
    if setting.get("normalize"):
        from radiomics import imageoperations

        image = imageoperations.normalizeImage(image, **setting)
    values = sitk.GetArrayViewFromImage(image)[sitk.GetArrayViewFromImage(mask) > 0].astype(float)
    if setting.get("resegmentRange"):  # pyradiomics drops ROI voxels outside the range before binning
        bounds = list(setting["resegmentRange"]) + [np.inf]
        values = values[(values >= bounds[0]) & (values <= bounds[1])]
    if not len(values):
        from radpipe.errors import CaseError

        raise CaseError("no ROI voxels left after preprocessing")
    spacing = list(image.GetSpacing()) + [np.nan] * (3 - image.GetDimension())
    row = {"case_id": item.case_id, "status": "ok", "reason": "", "modality": modality, "units": units,
           "dimension": image.GetDimension(), "size": "x".join(str(s) for s in image.GetSize()),
           **{f"spacing_{a}": float(s) for a, s in zip(_AXES, spacing, strict=True)},
           "spacing_known": not image.HasMetaDataKey(io.RASTER_WITHOUT_SPACING),
           "roi_voxels": int(len(values)), "roi_min": float(values.min())}
    for p, v in zip(_PERCENTILES, np.percentile(values, _PERCENTILES), strict=True):
        row[f"roi_p{p}"] = float(v)
    row["roi_max"] = float(values.max())
    return row


def summarise(table: pd.DataFrame, settings: ExtractSettings) -> CohortSurvey:
    """Turn survey rows into the cohort's defaults and warnings."""
    params = settings.pyradiomics_params()
    setting = params["setting"]
    ok = table[table["status"] == "ok"]
    modality = _most_common(ok["modality"])
    unit = settings.intensity_unit or _intensity_unit(modality, ok["units"], bool(setting.get("normalize")))
    dimension = int(ok["dimension"].max()) if len(ok) else 3
    axes = [f"spacing_{a}" for a in _AXES[:dimension]]
    median_spacing = tuple(float(ok[a].median()) for a in axes) if len(ok) else ()
    resampled = bool(setting.get("resampledPixelSpacing")) or any(
        step.step == "resample" for step in settings.preprocessing)
    varies = [a[-1] for a in axes
              if len(ok) and (ok[a].max() - ok[a].min()) > SPACING_TOLERANCE * ok[a].median()]
    spacing_varies = bool(varies) and not resampled
    texture_3d = dimension == 3 and not setting.get("force2D")
    ratio = max(median_spacing) / min(median_spacing) if median_spacing else 1.0
    anisotropic = texture_3d and ratio > ANISOTROPY_LIMIT and not resampled

    suggested = choose_bin_width(ok["roi_min"], ok["roi_max"]) if len(ok) else None
    chosen = recipe_discretisation(params)
    width = chosen.get("binWidth") if chosen else suggested
    median_levels = level_summary(ok["roi_min"], ok["roi_max"], width)["median_levels"] if width else None
    if chosen and "binCount" in chosen:
        median_levels = float(chosen["binCount"])
    # a 2D raster without spacing is measured in pixels; the column is absent from rows cached before it existed
    unknown_spacing = "spacing_known" in ok and (ok["spacing_known"] == False).any()  # noqa: E712 - NaN is unknown
    survey = CohortSurvey(table=table, modality=modality, intensity_unit=unit, median_spacing=median_spacing,
                          length_unit="px" if unknown_spacing else "mm",
                          spacing_varies=spacing_varies, anisotropic=anisotropic, suggested_bin_width=suggested,
                          median_levels=median_levels, resampled=resampled)
    survey.warnings = spacing_warnings(survey, varies)
    if len(table) and not len(ok):
        survey.warnings.append(f"none of the {len(table)} cases could be read: no defaults could be derived")
    return survey


def spacing_warnings(survey: CohortSurvey, varying_axes: list[str]) -> list[str]:
    """Sentences naming the spacings found and the recipe lines that resample them."""
    warnings = []
    spacing = survey.resample_spacing()
    lines = ""
    if spacing is not None:
        lines = ("; resample in the recipe: extract: {preprocessing: [{step: resample, spacing: "
                 f"[{', '.join(f'{s:g}' for s in spacing)}], interpolator: linear, "
                 "mask_interpolator: partial_volume}]}")
    if survey.spacing_varies:
        found = survey.ok.groupby([f"spacing_{a}" for a in _AXES[:len(survey.median_spacing)]]).size()
        listed = ", ".join(f"{'x'.join(f'{s:.3g}' for s in key)} mm ({n} case{'s' * (n != 1)})"
                           for key, n in found.sort_values(ascending=False).items())
        warnings.append(f"voxel spacing varies by more than {SPACING_TOLERANCE:.0%} across the cohort along "
                        f"{'/'.join(varying_axes)} ({listed}): texture features then measure different physical "
                        f"scales in different cases{lines}")
    if survey.anisotropic:
        shown = "x".join(f"{s:.3g}" for s in survey.median_spacing)
        warnings.append(f"3D texture on anisotropic voxels (median {shown} mm, more than "
                        f"{ANISOTROPY_LIMIT:g}:1) mixes in-plane and through-plane neighbours{lines}, "
                        "or compute texture per slice: extract: {setting: {force2D: true}}")
    return warnings


def _intensity_unit(modality: str | None, units: pd.Series, normalized: bool) -> str:
    if normalized:
        return "a.u."
    if modality == "CT":
        return "HU"
    if modality == "PT" and any("SUV" in str(u).upper() or str(u).upper() == "GML" for u in units):
        return "SUV"
    return "a.u."


def _most_common(values: pd.Series) -> str | None:
    counts = Counter(v for v in values if isinstance(v, str) and v)
    return counts.most_common(1)[0][0] if counts else None


def _survey_fingerprint(settings: ExtractSettings) -> str:
    """Everything a survey row depends on besides the files: mask options, preprocessing, pyradiomics' own
    normalisation and re-segmentation, and the reader versions."""
    setting = settings.pyradiomics_params()["setting"]
    versions = software_versions()
    return json.dumps({
        "format": SURVEY_FORMAT,
        "label": settings.label, "roi_name": settings.roi_name, "min_voxels": settings.min_voxels,
        "roi_mode": settings.roi_mode, "geometry_tolerance": settings.geometry_tolerance,
        "preprocessing": [step.model_dump(mode="json") for step in settings.preprocessing],
        "pyradiomics": {k: setting.get(k) for k in ("normalize", "normalizeScale", "removeOutliers",
                                                    "resegmentRange", "resegmentMode")},
        "radpipe": versions.get("radpipe"), "SimpleITK": versions.get("SimpleITK"),
    }, sort_keys=True, default=str)


def _row_key(item: CaseInput, fingerprint: str) -> str:
    payload = json.dumps({"settings": fingerprint, "image": item.image_sha256, "mask": item.mask_sha256,
                          "case_id": item.case_id, "spacing_2d": item.spacing_2d, "label": item.label},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _read_cached(folder: Path, key: str) -> dict | None:
    path = folder / key[:2] / f"{key}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _round3(value: float) -> float:
    return float(f"{value:.3g}")


__all__ = ["CohortSurvey", "survey_cohort", "survey_rows", "survey_case", "summarise", "resample_step"]
