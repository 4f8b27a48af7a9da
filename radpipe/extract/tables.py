"""Tables a statistician can open: wide and long CSV, Parquet, codebook, diagnostics and QC ledger.

CSV conventions (chosen so R's ``read.csv`` and Excel open them without surprises): UTF-8 without
BOM, ``.`` decimal, comma separator, ``\\n`` line endings, empty cell for a missing value, no index
column, full float precision (``repr``) so values round-trip exactly.
"""

from __future__ import annotations

import hashlib
import io as _io
import re
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from radpipe._io import atomic_write_bytes
from radpipe.extract.features import CaseResult

ID_COLUMNS = ("case_id", "roi")
QC_COLUMNS = ["case_id", "roi", "status", "action", "reason"]
LONG_COLUMNS = ["case_id", "roi", "image_type", "feature_class", "feature", "value"]
CODEBOOK_COLUMNS = ["column", "pyradiomics_column", "ibsi_column", "display_name", "unit", "description",
                    "image_type", "feature_class", "feature", "family", "ibsi_code", "ibsi_name", "ibsi_note",
                    "discretisation", "resampling", "normalisation", "preprocessing", "feature_qc", "pyradiomics_doc"]


def split_feature_name(column: str) -> tuple[str, str, str]:
    """``log-sigma-2-0-mm-3D_glcm_Contrast`` → (``log-sigma-2-0-mm-3D``, ``glcm``, ``Contrast``)."""
    parts = column.split("_", 2)
    if len(parts) != 3:
        return "", "", column
    return parts[0], parts[1], parts[2]


def feature_table(results: list[CaseResult]) -> pd.DataFrame:
    """Wide table, one row per case (per ROI when a case has several), columns in pyradiomics' order."""
    rows = [row for result in results if result.status != "failed" for row in result.features]
    if not rows:
        return pd.DataFrame(columns=["case_id"])
    columns: list[str] = []
    seen: set[str] = set()
    for row in rows:  # pyradiomics emits image type → class → feature; keep that order, append newcomers
        for column in row:
            if column not in seen and column not in ID_COLUMNS:
                seen.add(column)
                columns.append(column)
    table = pd.DataFrame(rows)
    multi_roi = table["roi"].nunique() > 1 or (table["roi"] != "roi").any()
    ids = ["case_id", "roi"] if multi_roi else ["case_id"]
    return table[ids + columns].reset_index(drop=True)


def long_table(wide: pd.DataFrame) -> pd.DataFrame:
    """The tidy form: one row per case, ROI and feature (feature by feature, cases in table order)."""
    if wide.empty:
        return pd.DataFrame(columns=LONG_COLUMNS)
    frame = wide if "roi" in wide.columns else wide.assign(roi="roi")
    columns = [column for column in frame.columns if column not in ID_COLUMNS]
    values = frame[columns]
    # what DataFrame.melt gives, built from arrays: melt is ~10x slower on a 1,000-column table
    n_rows = len(frame)
    parts = [split_feature_name(column) for column in columns]
    return pd.DataFrame({
        "case_id": np.tile(frame["case_id"].to_numpy(), len(columns)),
        "roi": np.tile(frame["roi"].to_numpy(), len(columns)),
        "image_type": np.repeat([part[0] for part in parts], n_rows),
        "feature_class": np.repeat([part[1] for part in parts], n_rows),
        "feature": np.repeat([part[2] for part in parts], n_rows),
        "value": values.to_numpy().ravel(order="F"),
    }, columns=LONG_COLUMNS)


def diagnostics_table(results: list[CaseResult]) -> pd.DataFrame:
    return pd.DataFrame([row for result in results for row in result.diagnostics])


def qc_table(results: list[CaseResult], extra_rows: list[dict] | None = None) -> pd.DataFrame:
    """The QC ledger: every case, with what was fixed and why anything failed."""
    rows = [vars(row) for result in results for row in result.qc] + list(extra_rows or [])
    table = pd.DataFrame(rows, columns=QC_COLUMNS)
    return table.sort_values(["case_id", "roi"], kind="stable").reset_index(drop=True)


@cache
def _feature_docs() -> dict[tuple[str, str], str]:
    """Each pyradiomics feature's docstring on one line (title without its number, formula, notes),
    keyed by (class, feature): the source that the codebook's plain sentences were written from."""
    from radiomics import getFeatureClasses

    docs = {}
    for class_name, feature_class in getFeatureClasses().items():
        for feature in feature_class.getFeatureNames():
            method = getattr(feature_class, f"get{feature}FeatureValue", None)
            text = (method.__doc__ or "").strip() if method else ""
            text = re.sub(r"^\*\*\d+\.\s*(.*?)\*\*", r"\1.", text)  # "**16. Elongation**" -> "Elongation."
            text = text.replace(".. math::", "Formula:")
            docs[(class_name, feature)] = " ".join(text.replace("**", "").split())
    return docs


def codebook_table(columns: list[str], params: dict, ibsi: pd.DataFrame | None = None,
                   preprocessing: str = "", *, intensity_unit: str = "a.u.", length_unit: str = "mm",
                   feature_qc: dict[str, str] | None = None, names: str = "pyradiomics") -> pd.DataFrame:
    """One row per feature column: what it is, its unit, and the settings that produced it.

    ``columns`` are pyradiomics names. ``pyradiomics_column`` and ``ibsi_column`` give each feature's name in
    both conventions (:mod:`radpipe.extract.ibsi_names`); ``column`` is the one the tables use, as chosen by
    ``names`` (``"pyradiomics"`` or ``"ibsi"``).

    ``display_name``, ``unit`` and ``description`` (one plain sentence) come from
    :mod:`radpipe.extract.feature_docs`; ``pyradiomics_doc`` keeps the first paragraph of pyradiomics' own
    docstring for the feature, so the formula's source stays one look-up away. ``intensity_unit`` is the
    image's unit (``"HU"``, ``"SUV"``, ``"a.u."``), ``length_unit`` that of lengths (``"px"`` for 2D images
    without a pixel spacing); ``feature_qc`` maps a column to a note about its values
    (empty when there is none).

    Examples
    --------
    >>> from radpipe.extract.tables import codebook_table
    >>> book = codebook_table(["original_firstorder_Variance"], {"setting": {"binWidth": 25}}, intensity_unit="HU")
    >>> book.loc[0, ["display_name", "unit"]].tolist()
    ['Intensity variance', 'HU²']
    """
    from radpipe.extract import feature_docs
    from radpipe.extract.ibsi_names import ibsi_names

    setting = params.get("setting", {})
    ibsi_columns = ibsi_names([c for c in columns if c not in ID_COLUMNS], params)
    discretisation = (f"binCount={setting['binCount']}" if "binCount" in setting
                      else f"binWidth={setting.get('binWidth', 25)}")
    if setting.get("normalize"):  # pyradiomics' z-score normalisation leaves no physical unit
        intensity_unit = "a.u."
    codes = _ibsi_rows(ibsi)
    docs = _feature_docs()
    feature_qc = feature_qc or {}
    rows = []
    for column in columns:
        if column in ID_COLUMNS:
            continue
        image_type, feature_class, feature = split_feature_name(column)
        family = ("shape" if feature_class.startswith("shape") else
                  "first order" if feature_class == "firstorder" else "texture")
        code = codes.get((feature_class, feature), {})
        rows.append({
            "column": ibsi_columns[column] if names == "ibsi" else column,
            "pyradiomics_column": column,
            "ibsi_column": ibsi_columns[column],
            "display_name": feature_docs.display_name(column),
            "unit": feature_docs.feature_unit(column, intensity_unit, length_unit),
            "description": feature_docs.description(column),
            "image_type": image_type,
            "feature_class": feature_class,
            "feature": feature,
            "family": family,
            "ibsi_code": code.get("ibsi_code", ""),
            "ibsi_name": code.get("ibsi_name", ""),
            "ibsi_note": code.get("ibsi_note", ""),
            "discretisation": "" if family == "shape" else discretisation,
            "resampling": str(setting.get("resampledPixelSpacing") or "none"),
            "normalisation": "normalize" if setting.get("normalize") else "none",
            "preprocessing": preprocessing,
            "feature_qc": feature_qc.get(column, ""),
            "pyradiomics_doc": docs.get((feature_class, feature), ""),
        })
    return pd.DataFrame(rows, columns=CODEBOOK_COLUMNS)


def _ibsi_rows(ibsi: pd.DataFrame | None) -> dict[tuple[str, str], dict[str, str]]:
    """{(feature_class, feature): {"ibsi_code": ..., ...}}: one dict look-up per column, not a ``.loc``."""
    if ibsi is None:
        return {}
    return {key: dict(zip(ibsi.columns, values, strict=True))
            for key, values in zip(ibsi.index, ibsi.itertuples(index=False, name=None), strict=True)}


def to_csv_bytes(table: pd.DataFrame) -> bytes:
    buffer = _io.StringIO()
    table.to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue().encode("utf-8")


def to_parquet_bytes(table: pd.DataFrame) -> bytes:
    buffer = _io.BytesIO()
    table.to_parquet(buffer, index=False)
    return buffer.getvalue()


def write_extraction_tables(out_dir: Path, wide: pd.DataFrame, long: pd.DataFrame, codebook: pd.DataFrame,
                            qc: pd.DataFrame, diagnostics: pd.DataFrame, formats) -> dict[str, str]:
    """Write an extraction's tables (features in the requested formats, codebook, diagnostics, QC) into
    ``out_dir``; return {file name: sha256} for the manifest. One place, so a single-image and a merged
    multimodal extraction lay out their folders the same way."""
    written = {}
    if "csv" in formats:
        written["features.csv"] = write_csv(wide, out_dir / "features.csv")
        written["features_long.csv"] = write_csv(long, out_dir / "features_long.csv")
    if "parquet" in formats:
        written["features.parquet"] = write_parquet(wide, out_dir / "features.parquet")
    written["codebook.csv"] = write_csv(codebook, out_dir / "codebook.csv")
    written["diagnostics.csv"] = write_csv(diagnostics, out_dir / "diagnostics.csv")
    written["qc.csv"] = write_csv(qc, out_dir / "qc.csv")
    return written


def write_csv(table: pd.DataFrame, path: Path) -> str:
    """Write ``table`` as CSV (atomically); return the sha256 of the bytes written."""
    return _write(path, to_csv_bytes(table))


def write_parquet(table: pd.DataFrame, path: Path) -> str:
    """Write ``table`` as Parquet (atomically); return the sha256 of the bytes written."""
    return _write(path, to_parquet_bytes(table))


def _write(path: Path, data: bytes) -> str:
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def read_feature_table(path: str | Path) -> pd.DataFrame:
    """Read a feature table written by radpipe (CSV or Parquet), indexed by case id."""
    path = Path(path)
    table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype={"case_id": str})
    if "case_id" not in table.columns:
        from radpipe.errors import ConfigError

        raise ConfigError("a feature table needs a 'case_id' column", file=str(path))
    return table.set_index("case_id")


def aggregate_rois(table: pd.DataFrame, method: str, volume_column: str | None = None) -> pd.DataFrame:
    """Per-lesion rows → one row per patient: the largest lesion, a volume-weighted mean, or the max."""
    if "roi" not in table.columns:
        return table
    numeric = table.drop(columns=["roi"])
    volume_column = volume_column or next(
        (c for c in table.columns if c.endswith("shape_VoxelVolume") or c.endswith("shape2D_PixelSurface")
         or c == "morph_vol_approx"), None)  # the last: extract.names ibsi
    if method == "max":
        return numeric.groupby(level=0, sort=False).max()
    if volume_column is None:
        raise ValueError("aggregation by lesion size needs a shape VoxelVolume/PixelSurface column")
    if method == "largest":
        best = table.reset_index().sort_values(volume_column, ascending=False, kind="stable")
        return best.drop_duplicates("case_id").set_index("case_id").drop(columns=["roi"]).loc[
            list(dict.fromkeys(table.index))]
    if method == "volume_weighted_mean":
        weights = table[volume_column]
        weighted = numeric.mul(weights, axis=0).groupby(level=0, sort=False).sum()
        return weighted.div(weights.groupby(level=0, sort=False).sum(), axis=0)
    return table
