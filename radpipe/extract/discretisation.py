"""Grey-level discretisation chosen from the data: one fixed bin width for the whole cohort, frozen for new cohorts.

pyradiomics falls back to a bin width of 25 when a recipe says nothing. That suits CT in HU, but on PET in SUV
(ROI values of about 0-20) it puts the whole ROI in one or two bins and the texture matrices become trivial.
pyradiomics' documentation advises a bin width that gives between about 30 and 130 bins; radpipe aims at the
lower half of that range (32-64 grey levels for the median ROI), rounded to a readable width (1, 2, 2.5 or 5
times a power of ten), so the value can be written in a methods section and typed into the next recipe.

The width is learnt from the training cohort only. An external cohort or a prediction reuses it (``reference``):
recomputing it from test data would give their features a different meaning.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from radpipe.errors import ConfigError

if TYPE_CHECKING:
    from radpipe.extract.settings import ExtractSettings

#: Grey levels the median ROI should get from an automatic bin width.
TARGET_LEVELS = (32, 64)
#: A bin width the user chose is questioned when the median ROI gets fewer or more levels than this.
SENSIBLE_LEVELS = (8, 512)
_READABLE = (1.0, 2.0, 2.5, 5.0)
PYRADIOMICS_DEFAULT_BIN_WIDTH = 25.0


def recipe_discretisation(params: dict) -> dict | None:
    """What the pyradiomics parameters themselves say: ``{"binWidth": w}``, ``{"binCount": n}`` or None.

    Only the general ``setting`` counts: a bin width given for one image type (``imageType: {LoG: {binWidth: 5}}``)
    overrides the general one for that type only, so the others still need a cohort-wide choice.
    """
    setting = params.get("setting") or {}
    if setting.get("binCount") is not None:
        return {"binCount": int(setting["binCount"])}
    if setting.get("binWidth") is not None:
        return {"binWidth": float(setting["binWidth"])}
    return None


def grey_levels(low, high, width: float) -> np.ndarray:
    """Grey levels a ROI with intensities in ``[low, high]`` gets with a fixed bin ``width``.

    pyradiomics starts the first bin at the multiple of the width at or below the ROI minimum, so a ROI spans
    ``floor(high / width) - floor(low / width) + 1`` bins.

    Examples
    --------
    >>> grey_levels([0.5, 1.0], [20.0, 30.0], 25.0).tolist()
    [1, 2]
    """
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    return (np.floor(high / width) - np.floor(low / width) + 1).astype(int)


def readable_widths(smallest: float, largest: float) -> list[float]:
    """Widths 1, 2, 2.5 and 5 times a power of ten between ``smallest`` and ``largest`` (inclusive)."""
    widths = []
    for exponent in range(math.floor(math.log10(smallest)) - 1, math.ceil(math.log10(largest)) + 2):
        for mantissa in _READABLE:
            width = float(f"{mantissa}e{exponent}")  # through text: 2.5e-2 is 0.025, not 0.025000000000000001
            if smallest <= width <= largest:
                widths.append(width)
    return widths


def choose_bin_width(low: Sequence[float], high: Sequence[float]) -> float | None:
    """The readable bin width that gives the median ROI 32-64 grey levels (closest to 45, their geometric mean).

    ``low`` and ``high`` are each ROI's intensity minimum and maximum (one value per case). None when every
    ROI is flat (a single intensity): no width can give such ROIs texture.

    Examples
    --------
    PET-like ROIs spanning 0.3-8 to 1-25 SUV:

    >>> choose_bin_width([0.3, 0.5, 1.0], [8.0, 12.0, 25.0])
    0.25
    """
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    ranges = high - low
    median_range = float(np.median(ranges)) if len(ranges) else 0.0
    if not median_range > 0:
        return None
    lowest, highest = TARGET_LEVELS
    best, best_distance = None, math.inf
    for width in readable_widths(median_range / (4 * highest), 4 * median_range / lowest):
        levels = float(np.median(grey_levels(low, high, width)))
        # inside the target range first, then closest to its middle on a log scale
        distance = abs(math.log(levels / math.sqrt(lowest * highest))) + (0 if lowest <= levels <= highest else 10)
        if distance < best_distance:
            best, best_distance = width, distance
    return best


def level_summary(low: Sequence[float], high: Sequence[float], width: float) -> dict:
    """Median and 5th/95th percentiles of the grey levels the cohort's ROIs get with ``width``."""
    levels = grey_levels(low, high, width)
    if not len(levels):
        return {"median_levels": None, "levels_p5": None, "levels_p95": None}
    return {"median_levels": round(float(np.median(levels)), 1),
            "levels_p5": round(float(np.percentile(levels, 5)), 1),
            "levels_p95": round(float(np.percentile(levels, 95)), 1)}


def level_warning(width: float, low: Sequence[float], high: Sequence[float], unit: str = "", *,
                  suggest: bool = True) -> str | None:
    """A warning when ``width`` gives the median ROI fewer than 8 or more than 512 grey levels, else None."""
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    if not len(low):
        return None
    median = float(np.median(grey_levels(low, high, width)))
    lowest, highest = SENSIBLE_LEVELS
    if lowest <= median <= highest:
        return None
    suggestion = choose_bin_width(low, high) if suggest else None
    span = f"{_num(float(np.median(low)))}-{_num(float(np.median(high)))}{' ' + unit if unit else ''}"
    consequence = ("texture features will be degenerate (one or a few grey levels)" if median < lowest
                   else "texture matrices will be sparse and slow to compute")
    advice = f"; try binWidth {_num(suggestion)}" if suggestion else ""
    return (f"binWidth {_num(width)} gives the median ROI {median:g} grey levels (median ROI range {span}): "
            f"{consequence}{advice}")


def read_discretisation(path: str | Path) -> dict | None:
    """The discretisation an extraction used, read from the ``manifest.json`` beside a feature table.

    ``path`` is a feature table (``features.csv`` / ``.parquet``), the folder holding it, its ``manifest.json``,
    or a model folder whose ``model_card.json`` or ``manifest.json`` carries a ``discretisation`` record.
    Returns ``{"binWidth": ..., "source": ..., "median_levels": ..., ...}`` (or ``binCount``), or None when the
    folder has no record (tables written by another tool). An extraction manifest without the record (written
    before radpipe recorded it) gives the width its pyradiomics parameters used: the recipe's, or 25.

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "manifest.json").write_text(json.dumps({"discretisation": {"binWidth": 0.25, "source": "auto"}}))
    >>> read_discretisation(folder / "features.csv")["binWidth"]
    0.25
    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    candidates = [path] if path.is_file() and path.suffix == ".json" else [
        folder / "manifest.json", folder / "model_card.json"]
    for candidate in candidates:
        try:
            record = json.loads(candidate.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(record, dict):
            continue
        if isinstance(record.get("discretisation"), dict):
            return dict(record["discretisation"])
        if record.get("stage") == "extract" and isinstance(record.get("pyradiomics_params"), dict):
            used = recipe_discretisation(record["pyradiomics_params"]) or {"binWidth": PYRADIOMICS_DEFAULT_BIN_WIDTH}
            return {**used, "source": "recipe"}
    return None


def reference_discretisation(reference: str | Path) -> dict:
    """The frozen discretisation of ``reference`` (see :func:`read_discretisation`); ConfigError when absent."""
    path = Path(reference)
    if not path.exists():
        raise ConfigError(f"reference not found: {path} (expected a features folder, its manifest.json, or a "
                          "model folder)", key="--reference")
    record = read_discretisation(path)
    if record is None or not ("binWidth" in record or "binCount" in record):
        raise ConfigError(f"{path} records no discretisation (no manifest.json or model_card.json with a bin "
                          "width): point --reference at the training cohort's features folder or model folder",
                          key="--reference")
    return record


def _num(value: float | None) -> str:
    return "?" if value is None else f"{value:.3g}"


def resolve_discretisation(settings: ExtractSettings, low: Sequence[float], high: Sequence[float], *,
                           reference: dict | None = None, unit: str = ""
                           ) -> tuple[ExtractSettings, dict | None, list[str]]:
    """The settings to extract with, the ``discretisation`` record for the manifest, and warnings.

    The recipe's own ``binWidth``/``binCount`` is used as it is (``source: recipe``), and questioned when the
    median ROI gets fewer than 8 or more than 512 grey levels from it. Otherwise the ``reference``'s frozen
    width is used (``source: reference``), or one is chosen from ``low``/``high``, the ROIs' intensity minima
    and maxima (``source: auto``). The returned settings carry the width in ``setting``, so it is part of the
    cache key, the manifest's resolved settings and the codebook.
    """
    recipe = recipe_discretisation(settings.pyradiomics_params())
    warnings: list[str] = []
    if recipe is not None:
        record = {**recipe, "source": "recipe"}
        frozen = {k: reference[k] for k in ("binWidth", "binCount") if reference and k in reference}
        if frozen and frozen != recipe:
            warnings.append(f"the recipe's {_describe(recipe)} differs from the reference's {_describe(frozen)}: "
                            "features of the two cohorts are not comparable; drop the recipe's value to reuse "
                            "the reference's")
    elif reference is not None:
        record = {k: reference[k] for k in ("binWidth", "binCount") if k in reference}
        record["source"] = "reference"
    else:
        width = choose_bin_width(low, high)
        if width is None:
            if len(low):
                warnings.append("every ROI has a single intensity: no bin width can give texture features; "
                                f"pyradiomics' default binWidth {PYRADIOMICS_DEFAULT_BIN_WIDTH:g} is used")
            return settings, None, warnings
        record = {"binWidth": width, "source": "auto"}
    settings = settings.model_copy(update={"setting": {
        **{k: v for k, v in settings.setting.items() if k not in ("binWidth", "binCount")},
        **{k: record[k] for k in ("binWidth", "binCount") if k in record}}})
    if "binWidth" in record:
        record.update(level_summary(low, high, record["binWidth"]))
        if record["source"] != "auto":
            warning = level_warning(record["binWidth"], low, high, unit,
                                    suggest=record["source"] == "recipe")
            if warning:
                if record["source"] == "reference":
                    warning += " (the width is frozen from the training cohort; check that this cohort's " \
                               "intensities are in the same unit)"
                warnings.append(warning)
    else:
        count = float(record["binCount"])
        record.update({"median_levels": count, "levels_p5": count, "levels_p95": count})
    if unit:
        record["intensity_unit"] = unit
    return settings, record, warnings


def describe_discretisation(record: dict | None) -> str:
    """One line for the console: ``binWidth 0.25 SUV (auto: the median ROI gets 42 grey levels)``."""
    if not record:
        return "discretisation: pyradiomics' default"
    unit = f" {record['intensity_unit']}" if record.get("intensity_unit") and "binWidth" in record else ""
    levels = record.get("median_levels")
    tail = f": the median ROI gets {levels:g} grey levels" if levels is not None and "binWidth" in record else ""
    return f"discretisation: {_describe(record)}{unit} ({record.get('source', '?')}{tail})"


def _describe(record: dict) -> str:
    return f"binCount {record['binCount']}" if "binCount" in record else f"binWidth {record['binWidth']:g}"
