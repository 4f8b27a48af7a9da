"""Feature columns that carry no information, or carry a value pyradiomics made up, named with a plain reason.

When a ROI has a single grey level after discretisation (a flat region), pyradiomics cannot compute most texture
features and returns a fixed stand-in instead of failing. Those numbers look like measurements: a model can
split on them, and an explanation can quote them. The stand-ins, as pyradiomics' own source documents them
(pyradiomics 3.x, ``radiomics/<module>.py``):

- ``ngtdm.py``, ``getCoarsenessFeatureValue``: 10^6 when the neighbourhood differences sum to 0 (flat region);
- ``ngtdm.py``, ``getContrastFeatureValue``, ``getBusynessFeatureValue``: 0 when the divisor is 0 (a single level);
  ``getComplexityFeatureValue`` and ``getStrengthFeatureValue`` are 0 there as well;
- ``glcm.py``, ``getCorrelationFeatureValue``: 1 when both marginal standard deviations are 0 (flat region);
- ``glcm.py``, ``getMCCFeatureValue``: 1 when the GLCM is 1x1 (flat region);
- ``glcm.py``, ``getImc1FeatureValue``: 0 when both marginal entropies are 0 (flat region);
- ``firstorder.py``, ``getSkewnessFeatureValue`` and ``getKurtosisFeatureValue``: 0 when the variance is 0.

Only Coarseness' 10^6 can be recognised from its value alone; the others are ordinary-looking numbers. So a flat
ROI is recognised from the table itself (first-order Uniformity or GLCM Joint Energy equal to 1: one grey level)
and every texture column of that image type is flagged for it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: (feature class, feature) -> (value, where pyradiomics sets it): placeholders recognisable from the value alone.
PLACEHOLDER_VALUES: dict[tuple[str, str], tuple[float, str]] = {
    ("ngtdm", "Coarseness"): (1e6, "radiomics/ngtdm.py getCoarsenessFeatureValue, for a flat region"),
}
#: Feature classes computed from the discretised grey levels: meaningless on a ROI with a single level.
TEXTURE_CLASSES = ("glcm", "glrlm", "glszm", "gldm", "ngtdm")
#: First-order features computed from the discretised histogram (the others use raw intensities).
BINNED_FIRSTORDER = ("Entropy", "Uniformity")
#: Columns equal to 1 exactly when the ROI has one grey level: p(i)^2 summed over a single bin.
_SINGLE_LEVEL_MARKERS = (("firstorder", "Uniformity"), ("glcm", "JointEnergy"))
_ID_COLUMNS = ("case_id", "roi")


def degenerate_features(table: pd.DataFrame) -> dict[str, str]:
    """Map each degenerate feature column of ``table`` to a plain reason; columns not named are fine.

    A column is degenerate when it is missing in every case, constant across the cohort, holds a pyradiomics
    placeholder value (NGTDM Coarseness 10^6) in some cases, or is a texture feature of an image type whose ROI
    had a single grey level in some cases (pyradiomics then returns fixed stand-ins; see this module's notes).

    Parameters
    ----------
    table
        A wide feature table (one row per case or ROI), as ``extract_cohort`` writes it; non-numeric and id
        columns are ignored.

    Returns
    -------
    dict
        ``{column: reason}``, in the table's column order.

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({
    ...     "original_firstorder_Mean": [1.0, 2.0, 3.0],
    ...     "original_firstorder_Uniformity": [1.0, 0.4, 0.3],
    ...     "original_glcm_Contrast": [0.0, 1.5, 2.5],
    ...     "original_ngtdm_Coarseness": [1e6, 0.01, 0.02],
    ...     "original_shape_Sphericity": [0.8, 0.8, 0.8],
    ... }, index=["a", "b", "c"])
    >>> for column, reason in degenerate_features(table).items():
    ...     print(column, "|", reason)
    original_firstorder_Uniformity | single grey level in 1 of 3 cases: the ROI falls in one bin, ...
    original_glcm_Contrast | single grey level in 1 of 3 cases: the ROI falls in one bin, ...
    original_ngtdm_Coarseness | pyradiomics placeholder 1e+06 in 1 of 3 cases (radiomics/ngtdm.py ...
    original_shape_Sphericity | constant across the cohort (0.8 in all 3 cases)
    """
    features = table[[c for c in table.columns if c not in _ID_COLUMNS]].select_dtypes("number")
    n = len(features)
    flat = _single_level_rows(features)
    reasons: dict[str, str] = {}
    for column in features.columns:
        values = features[column]
        present = values.dropna()
        image_type, feature_class, feature = _split(column)
        if present.empty:
            reasons[column] = f"missing in all {n} cases"
            continue
        placeholder = PLACEHOLDER_VALUES.get((feature_class, feature))
        if placeholder is not None and (hits := int(np.isclose(present, placeholder[0], rtol=1e-9).sum())):
            reasons[column] = (f"pyradiomics placeholder {placeholder[0]:g} in {hits} of {n} cases "
                               f"({placeholder[1]}): not a measurement")
            continue
        flat_rows = flat.get(image_type)
        binned = feature_class in TEXTURE_CLASSES or (feature_class == "firstorder" and feature in BINNED_FIRSTORDER)
        if binned and flat_rows is not None and flat_rows.any():
            reasons[column] = (f"single grey level in {int(flat_rows.sum())} of {n} cases: the ROI falls in one "
                               "bin, so pyradiomics returns fixed stand-in values; use a smaller binWidth")
            continue
        if n > 1 and present.nunique() == 1:
            reasons[column] = f"constant across the cohort ({present.iloc[0]:g} in all {len(present)} cases)"
    return reasons


def _single_level_rows(features: pd.DataFrame) -> dict[str, pd.Series]:
    """{image type: boolean rows whose ROI had one grey level}, from the first marker column available."""
    found: dict[str, pd.Series] = {}
    for column in features.columns:
        image_type, feature_class, feature = _split(column)
        if (feature_class, feature) in _SINGLE_LEVEL_MARKERS:
            rows = pd.Series(np.isclose(features[column].to_numpy(dtype=float), 1.0, rtol=0, atol=1e-12),
                             index=features.index)
            found[image_type] = found[image_type] | rows if image_type in found else rows
    return found


def _split(column: str) -> tuple[str, str, str]:
    parts = column.split("_", 2)
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else ("", "", column)
