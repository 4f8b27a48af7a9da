"""Delta radiomics: how each feature changed between two time points of one lesion.

A dataset with ``timepoints: {baseline: {images, masks}, follow_up: {images, masks}}`` is extracted per time
point (:mod:`radpipe.extract.multimodal`, columns ``baseline_…`` and ``follow_up_…``); this module adds, for each
feature both time points have, ``delta_…`` = follow-up − baseline and ``reldelta_…`` = (follow-up − baseline) /
|baseline|. A baseline of exactly zero leaves the relative change empty (never ±inf) and is written to the QC
ledger. The codebook's ``derivation`` column says how every column was computed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["delta_features", "delta_codebook"]


def delta_features(baseline: pd.DataFrame, follow_up: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]]:
    """Absolute and relative change of every numeric feature both tables have, case by case.

    Parameters
    ----------
    baseline, follow_up
        Wide feature tables indexed by case id, with the same (unprefixed) pyradiomics column names.

    Returns
    -------
    tuple
        ``(changes, notes)``: a table indexed like ``baseline`` with ``delta_<feature>`` columns followed by
        ``reldelta_<feature>`` columns (in the baseline's column order), and one dict per case whose baseline
        is zero in some feature (``case_id``, ``features``: the columns whose relative change was left empty).

    Examples
    --------
    >>> before = pd.DataFrame({"original_shape_VoxelVolume": [100.0, 50.0], "original_firstorder_Mean": [2.0, 0.0]},
    ...                       index=pd.Index(["a", "b"], name="case_id"))
    >>> after = before * 1.5 + 1
    >>> changes, notes = delta_features(before, after)
    >>> changes.loc["a", ["delta_original_shape_VoxelVolume", "reldelta_original_shape_VoxelVolume"]].tolist()
    [51.0, 0.51]
    >>> bool(np.isnan(changes.loc["b", "reldelta_original_firstorder_Mean"])), notes
    (True, [{'case_id': 'b', 'features': ['original_firstorder_Mean']}])
    """
    columns = [c for c in baseline.columns if c in follow_up.columns
               and pd.api.types.is_numeric_dtype(baseline[c]) and pd.api.types.is_numeric_dtype(follow_up[c])]
    before = baseline[columns].astype(float)
    after = follow_up[columns].reindex(before.index).astype(float)
    change = after - before
    zero = before == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = (change / before.abs()).mask(zero)  # a zero baseline has no relative change: empty, not inf
    changes = pd.concat([change.add_prefix("delta_"), relative.add_prefix("reldelta_")], axis=1)
    notes = [{"case_id": case_id, "features": [c for c in columns if row[c]]}
             for case_id, row in zero.iterrows() if row.any()]
    return changes, notes


def delta_codebook(baseline_book: pd.DataFrame, names: tuple[str, str], part_column: str = "timepoint"
                   ) -> pd.DataFrame:
    """Codebook rows for the ``delta_`` and ``reldelta_`` columns, built from the baseline's rows.

    ``baseline_book`` is the baseline extraction's own codebook (unprefixed ``column`` names); ``names`` are the
    two time points. Units: a delta has the feature's unit, a relative change none.
    """
    first, second = names
    frames = []
    for kind, formula, unit in (("delta", f"{second} − {first}", None),
                                ("reldelta", f"({second} − {first}) / |{first}|; empty where {first} is 0", "")):
        book = baseline_book.copy()
        book["column"] = f"{kind}_" + book["column"]
        word = "change" if kind == "delta" else "relative change"
        book["display_name"] = f"{word} of " + book["display_name"]
        if unit is not None:
            book["unit"] = unit
        book["description"] = f"{word.capitalize()} between {first} and {second}: {formula}. " + book["description"]
        book.insert(1, part_column, kind)
        book["derivation"] = formula
        frames.append(book)
    return pd.concat(frames, ignore_index=True)
