"""Intraclass correlation per feature, vectorised: ICC(1,1), ICC(2,1) and ICC(3,1) with 95% CIs.

Definitions from the two-way ANOVA mean squares of an n cases x k versions table (Shrout & Fleiss, Psychol
Bull 1979;86:420; McGraw & Wong, Psychol Methods 1996;1:30): ICC(1,1) one-way random (each case rated by its
own set of versions), ICC(2,1) two-way random, absolute agreement, ICC(3,1) two-way mixed, consistency.
The confidence intervals are the F-distribution intervals of those papers (for ICC(2,1) with Satterthwaite's
degrees of freedom), the ones ``pingouin.intraclass_corr`` reports, against which the tests check these.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import f as f_dist

ICC_NAMES = {"ICC1": "ICC(1,1)", "ICC2": "ICC(2,1)", "ICC3": "ICC(3,1)"}


def icc_table(values: np.ndarray, alpha: float = 0.05) -> dict[str, np.ndarray]:
    """ICCs of every feature of ``values`` (n cases x k versions x m features, no missing values).

    Returns a dict of arrays of length m: ``ICC1``, ``ICC2``, ``ICC3`` and their ``_low`` / ``_high``
    (1 - ``alpha``) confidence bounds, plus the mean squares ``msr`` (cases), ``msc`` (versions), ``mse``
    (residual) and ``msw`` (within cases). A feature constant over every case and version has no defined ICC
    (NaN).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> truth = rng.normal(size=(30, 1, 1))
    >>> out = icc_table(truth + 0.1 * rng.normal(size=(30, 4, 1)))
    >>> bool(out["ICC1"][0] > 0.95 and out["ICC1_low"][0] < out["ICC1"][0] < out["ICC1_high"][0])
    True
    """
    y = np.asarray(values, dtype=np.float64)
    if y.ndim == 2:
        y = y[:, :, None]
    n, k, _ = y.shape
    if n < 2 or k < 2:
        raise ValueError(f"an ICC needs at least 2 cases and 2 versions (got {n} cases x {k} versions)")
    grand = y.mean(axis=(0, 1))
    case_means = y.mean(axis=1)
    version_means = y.mean(axis=0)
    ss_total = ((y - grand) ** 2).sum(axis=(0, 1))
    ss_cases = k * ((case_means - grand) ** 2).sum(axis=0)
    ss_versions = n * ((version_means - grand) ** 2).sum(axis=0)
    ss_error = ss_total - ss_cases - ss_versions
    df_cases, df_versions, df_error = n - 1, k - 1, (n - 1) * (k - 1)
    df_within = n * (k - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        msr = ss_cases / df_cases
        msc = ss_versions / df_versions
        mse = ss_error / df_error
        msw = (ss_versions + ss_error) / df_within

        icc1 = (msr - msw) / (msr + (k - 1) * msw)
        icc2 = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
        icc3 = (msr - mse) / (msr + (k - 1) * mse)

        q = 1 - alpha / 2
        f1 = msr / msw
        f1_low = f1 / f_dist.ppf(q, df_cases, df_within)
        f1_high = f1 * f_dist.ppf(q, df_within, df_cases)
        f3 = msr / mse
        f3_low = f3 / f_dist.ppf(q, df_cases, df_error)
        f3_high = f3 * f_dist.ppf(q, df_error, df_cases)
        # ICC(2,1): the Satterthwaite degrees of freedom of McGraw & Wong's interval
        fj = msc / mse
        numerator = df_error * (k * icc2 * fj + n * (1 + (k - 1) * icc2) - k * icc2) ** 2
        denominator = df_cases * k ** 2 * icc2 ** 2 * fj ** 2 + (n * (1 + (k - 1) * icc2) - k * icc2) ** 2
        v = numerator / denominator
        fu = f_dist.ppf(q, df_cases, v)
        fl = f_dist.ppf(q, v, df_cases)
        scale = k * msc + (k * n - k - n) * mse
        icc2_low = n * (msr - fu * mse) / (fu * scale + n * msr)
        icc2_high = n * (fl * msr - mse) / (scale + n * fl * msr)
        return {
            "ICC1": icc1, "ICC1_low": (f1_low - 1) / (f1_low + k - 1), "ICC1_high": (f1_high - 1) / (f1_high + k - 1),
            "ICC2": icc2, "ICC2_low": icc2_low, "ICC2_high": icc2_high,
            "ICC3": icc3, "ICC3_low": (f3_low - 1) / (f3_low + k - 1), "ICC3_high": (f3_high - 1) / (f3_high + k - 1),
            "msr": msr, "msc": msc, "mse": mse, "msw": msw,
        }


def feature_icc(long: pd.DataFrame, *, case: str = "case_id", version: str = "version",
                icc: str = "ICC1", threshold: float = 0.75, alpha: float = 0.05) -> pd.DataFrame:
    """One row per feature column of ``long`` (one row per case and version): every ICC with its CI, the
    chosen ``icc`` as ``icc`` / ``ci_low`` / ``ci_high``, and ``robust`` (``ci_low`` >= ``threshold``).

    Only cases with every version are used (the ICCs need a complete table); a feature missing for some of
    them, or constant everywhere, gets NaN and is not robust.

    Examples
    --------
    >>> import pandas as pd
    >>> long = pd.DataFrame({"case_id": ["a", "a", "b", "b", "c", "c"], "version": [0, 1] * 3,
    ...                      "original_shape_VoxelVolume": [10.0, 10.5, 20.0, 20.4, 30.0, 29.8]})
    >>> row = feature_icc(long).iloc[0]
    >>> row["feature"], round(float(row["icc"]), 3), bool(row["robust"])
    ('original_shape_VoxelVolume', 0.999, True)
    """
    if icc not in ICC_NAMES:
        raise ValueError(f"unknown ICC '{icc}' (choose from {', '.join(ICC_NAMES)})")
    features = [c for c in long.columns if c not in (case, version)]
    versions = sorted(long[version].unique())
    counts = long.groupby(case)[version].nunique()
    complete = list(counts.index[counts == len(versions)])
    wide = long.set_index([case, version])[features].unstack(version).loc[complete]
    cube = np.stack([wide[name].reindex(columns=versions).to_numpy(dtype=float) for name in features], axis=2)
    usable = np.isfinite(cube).all(axis=(0, 1))
    safe = np.where(np.isfinite(cube), cube, 0.0)
    stats = icc_table(safe, alpha=alpha)
    table = pd.DataFrame({"feature": features})
    for key in ("ICC1", "ICC2", "ICC3"):
        for suffix in ("", "_low", "_high"):
            table[key + suffix] = np.where(usable, stats[key + suffix], np.nan)
    table.insert(1, "icc_type", ICC_NAMES[icc])
    table.insert(2, "icc", table[icc])
    table.insert(3, "ci_low", table[icc + "_low"])
    table.insert(4, "ci_high", table[icc + "_high"])
    table.insert(5, "robust", (table["ci_low"] >= threshold).fillna(False).astype(bool))
    table["threshold"] = threshold
    table["n_cases"] = len(complete)
    table["n_versions"] = len(versions)
    return table
