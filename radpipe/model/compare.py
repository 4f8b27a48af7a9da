"""Comparing models scored on the same cases: DeLong's test and a paired bootstrap of the AUC difference.

``comparison.csv`` has one row per model: its kind (clinical, radiomics, combined), its AUC with a
95% CI, and against a reference model (the clinical model when there is one, else the best
radiomics model) the AUC difference with a paired-bootstrap 95% CI and DeLong's p value.

- DeLong's test for two correlated ROC AUCs (DeLong, DeLong & Clarke-Pearson, Biometrics 1988) in the
  fast form of Sun & Xu (IEEE Signal Process Lett 2014), :func:`radpipe.model.metrics.delong_test`.
- The paired bootstrap resamples cases (within each class, so every resample has both) and scores
  *both* models on the same resample, so their correlation is kept in the CI of the difference.

Both use one probability per case: with repeated cross-validation, the case's out-of-fold
probabilities averaged over the repeats. These AUCs can therefore differ a little from
``metrics.csv``, which averages the per-repeat AUCs.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from radpipe.model.metrics import delong_test, roc_auc, stratified_bootstrap_indices

COMPARISON_COLUMNS = ["model", "kind", "auc", "auc_ci_low", "auc_ci_high", "reference", "auc_difference",
                      "difference_ci_low", "difference_ci_high", "delong_p", "probabilities"]


def paired_bootstrap(y_true, prob_a, prob_b, n_boot: int = 1000, seed: int = 42,
                     level: float = 0.95) -> dict[str, float]:
    """AUCs of two models on the same cases and of their difference (a - b), with percentile CIs from the same
    stratified resamples of the cases.

    Examples
    --------
    >>> y = np.array([0, 0, 0, 1, 1, 1])
    >>> out = paired_bootstrap(y, [0.1, 0.2, 0.3, 0.6, 0.7, 0.8], [0.1, 0.7, 0.3, 0.6, 0.2, 0.8], n_boot=200)
    >>> round(out["difference"], 3), out["difference_ci_low"] >= 0
    (0.333, True)
    """
    y_true = np.asarray(y_true).astype(int)
    prob_a, prob_b = np.asarray(prob_a, dtype=float), np.asarray(prob_b, dtype=float)
    auc_a, auc_b = roc_auc(y_true, prob_a), roc_auc(y_true, prob_b)
    out = {"auc_a": auc_a, "auc_b": auc_b, "difference": auc_a - auc_b}
    if n_boot <= 0:
        return {**out, **{f"{k}_ci_{s}": float("nan") for k in ("auc_a", "auc_b", "difference")
                          for s in ("low", "high")}}
    samples = np.empty((n_boot, 2))
    for b, idx in enumerate(stratified_bootstrap_indices(y_true, n_boot, seed)):
        samples[b] = roc_auc(y_true[idx], prob_a[idx]), roc_auc(y_true[idx], prob_b[idx])
    alpha = (1 - level) / 2
    for name, values in (("auc_a", samples[:, 0]), ("auc_b", samples[:, 1]),
                         ("difference", samples[:, 0] - samples[:, 1])):
        values = values[np.isfinite(values)]
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = (
            (float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))) if values.size
            else (float("nan"), float("nan")))
    return out


def case_probabilities(predictions: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series, int]:
    """Out-of-fold rows of ``predictions.csv`` as one probability per case and model (mean over repeats):
    a (cases x models) table, the 0/1 outcome per case and the number of repeats."""
    cv = predictions[predictions["cohort"].astype(str) == "cv"] if "cohort" in predictions.columns else predictions
    table = cv.pivot_table(index="case_id", columns="model", values="y_prob", aggfunc="mean", sort=False)
    y = cv.groupby("case_id", sort=False)["y_true"].first().reindex(table.index).astype(int)
    repeats = int(cv["repeat"].nunique()) if "repeat" in cv.columns else 1
    return table, y, repeats


def compare_models(predictions: pd.DataFrame, kinds: Mapping[str, str], reference: str, *, n_boot: int = 1000,
                   seed: int = 42) -> pd.DataFrame:
    """The rows of ``comparison.csv`` for every model of the out-of-fold ``predictions`` (see the module docstring).

    ``kinds`` maps model names to clinical / radiomics / combined; ``reference`` is the model every other one is
    compared with (its own row has empty comparison columns).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = np.tile([0, 1], 20)
    >>> rows = [{"case_id": f"c{i}", "model": m, "repeat": 0, "cohort": "cv", "y_true": y[i],
    ...          "y_prob": p} for m, noise in (("clinical", 0.3), ("rf", 2.0))
    ...         for i, p in enumerate(y + rng.normal(0, noise, 40))]
    >>> table = compare_models(pd.DataFrame(rows), {"clinical": "clinical", "rf": "radiomics"}, "clinical",
    ...                        n_boot=200)
    >>> table[["model", "reference"]].fillna("").values.tolist()
    [['clinical', ''], ['rf', 'clinical']]
    >>> bool(table.loc[1, "delong_p"] < 0.05 and table.loc[1, "difference_ci_high"] < 0)
    True
    """
    table, y, repeats = case_probabilities(predictions)
    what = (f"out-of-fold, mean of {repeats} repeats per case" if repeats > 1 else "out-of-fold")
    rows = []
    for model in table.columns:
        prob = table[model].to_numpy()
        row = {"model": model, "kind": kinds.get(model, "radiomics"), "reference": np.nan, "probabilities": what}
        if model == reference or reference not in table.columns:
            boot = paired_bootstrap(y, prob, prob, n_boot=n_boot, seed=seed)
            row.update(auc=boot["auc_a"], auc_ci_low=boot["auc_a_ci_low"], auc_ci_high=boot["auc_a_ci_high"])
        else:
            boot = paired_bootstrap(y, prob, table[reference].to_numpy(), n_boot=n_boot, seed=seed)
            try:
                p = delong_test(y.to_numpy(), prob, table[reference].to_numpy())[2]
            except ValueError:
                p = float("nan")
            row.update(auc=boot["auc_a"], auc_ci_low=boot["auc_a_ci_low"], auc_ci_high=boot["auc_a_ci_high"],
                       reference=reference, auc_difference=boot["difference"],
                       difference_ci_low=boot["difference_ci_low"], difference_ci_high=boot["difference_ci_high"],
                       delong_p=p)
        rows.append(row)
    order = {"clinical": 0, "radiomics": 1, "combined": 2}
    out = pd.DataFrame(rows).reindex(columns=COMPARISON_COLUMNS)
    out = out.sort_values("kind", key=lambda k: k.map(order), kind="stable").reset_index(drop=True)
    return out
