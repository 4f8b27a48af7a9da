"""LIME explanations per patient over the whole pipeline's ``predict_proba``, as a long table.

LIME perturbs the input radiomics features (before imputation, scaling and selection), so its rules
read in the units of the feature table. Each case is explained with its own seed, so the weights do
not depend on the order of cases or on the number of workers.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from radpipe.explain._format import plain_number
from radpipe.explain.shap_values import case_seed

LIME_COLUMNS = ["case_id", "rank", "feature_rule", "feature", "weight", "intercept", "local_prediction", "score"]


def compute_lime(
    pipeline,
    X: pd.DataFrame,
    X_train: pd.DataFrame,
    *,
    positive_index: int,
    class_names: list[str] | None = None,
    num_samples: int = 1000,
    top: int = 10,
    seed: int = 42,
    n_jobs: int = 1,
    perturb: list[str] | None = None,
    case_classes: dict | None = None,
    fixed: list[str] | None = None,
) -> pd.DataFrame:
    """LIME weights for the positive-class probability of each case in ``X``.

    Parameters
    ----------
    pipeline : fitted sklearn Pipeline with ``predict_proba``.
    X : DataFrame
        Cases to explain (index = case_id), columns in the order the pipeline expects.
    X_train : DataFrame
        Training cases: LIME samples perturbations from their quartiles. Missing values are replaced by the
        training median for LIME's statistics and for the case being explained (LIME cannot perturb NaN).
    positive_index : column of ``predict_proba`` that holds the positive class.
    num_samples : perturbed samples per case.
    top : features reported per case.
    seed : base seed; each case's seed is derived from it and the case id.
    perturb : the columns LIME varies (default: all). ``explain`` passes the input features that reach the final
        estimator: columns dropped by feature selection cannot change the prediction, and perturbing them only
        adds noise to LIME's local fit (and time). The other columns keep the case's own values.
    case_classes : case_id -> column of ``predict_proba`` to explain for that case (e.g. its predicted class
        under a multi-class model); cases not in it use ``positive_index``.
    fixed : columns that are not features (e.g. the batch column a ComBat step reads, possibly text): every
        perturbed sample keeps the case's own value, they are never perturbed and never reported, whatever
        ``perturb`` says.

    Returns
    -------
    DataFrame with columns ``case_id, rank, feature_rule, feature, weight, intercept, local_prediction, score``
    (``score`` is the R^2 of LIME's local linear fit), ``top`` rows per case.
    """
    columns = list(X.columns)
    kept = [c for c in columns if c in set(fixed or ())]
    numeric = [c for c in columns if c not in kept]
    medians = X_train[numeric].median(numeric_only=True).reindex(numeric).fillna(0.0)
    train = X_train[numeric].astype(float).fillna(medians).to_numpy()
    cases = X[numeric].astype(float).fillna(medians)
    varied = [c for c in numeric if perturb is None or c in set(perturb)] or numeric
    args = dict(pipeline=pipeline, train=train[:, [numeric.index(c) for c in varied]], columns=columns,
                numeric=numeric, kept=X[kept], varied=varied, pos=positive_index, case_classes=case_classes or {},
                class_names=class_names, num_samples=num_samples, top=top, seed=seed)
    n = len(cases)
    if n == 0:
        return pd.DataFrame(columns=LIME_COLUMNS)
    if n_jobs == 1:
        parts = [_explain_cases(cases, **args)]
    else:
        from joblib import Parallel, delayed

        edges = np.linspace(0, n, min(n, n_jobs * 4) + 1).astype(int)
        parts = Parallel(n_jobs=n_jobs)(
            delayed(_explain_cases)(cases.iloc[a:b], **args) for a, b in zip(edges[:-1], edges[1:], strict=False) if b > a
        )
    return pd.concat(parts, ignore_index=True)[LIME_COLUMNS]


def _explain_cases(cases, **kwargs):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # LIME's ridge fits are small: threads only contend with other workers
        return _explain_cases_1(cases, **kwargs)


def _explain_cases_1(cases, *, pipeline, train, columns, numeric, kept, varied, pos, case_classes, class_names,
                     num_samples, top, seed):
    from lime.lime_tabular import LimeTabularExplainer

    explainer = LimeTabularExplainer(
        train, feature_names=varied, class_names=class_names, mode="classification",
        discretize_continuous=True, random_state=seed,
    )
    if explainer.discretizer is not None:
        _plain_conditions(explainer.discretizer, train, varied)
    where = [numeric.index(c) for c in varied]

    rows = []
    default = pos
    for case_id, full in cases.iterrows():
        row = full[varied]
        pos = int(case_classes.get(case_id, default))

        def predict(A, full=full.to_numpy(dtype=float), own=kept.loc[case_id]):
            table = np.repeat(full[None, :], len(A), axis=0)
            table[:, where] = A
            frame = pd.DataFrame(table, columns=numeric)
            if len(own):  # the columns held at the case's own value (e.g. its scanner), in the pipeline's order
                frame = frame.assign(**own.to_dict())[columns]
            return pipeline.predict_proba(frame)

        rng = np.random.RandomState(case_seed(seed, case_id))
        explainer.random_state = rng  # both draw from the case's own stream
        if explainer.discretizer is not None:
            explainer.discretizer.random_state = rng
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exp = explainer.explain_instance(
                row.to_numpy(), predict, labels=(pos,), num_features=min(top, len(varied)),
                num_samples=num_samples,
            )
        rules = exp.as_list(label=pos)
        for rank, ((index, weight), (rule, _)) in enumerate(zip(exp.as_map()[pos], rules, strict=False), start=1):
            rows.append({
                "case_id": case_id, "rank": rank, "feature_rule": rule, "feature": varied[index],
                "weight": float(weight), "intercept": float(exp.intercept[pos]),
                "local_prediction": float(np.ravel(exp.local_pred)[0]), "score": float(exp.score),
            })
    return pd.DataFrame(rows, columns=LIME_COLUMNS)


def _plain_conditions(discretizer, train: np.ndarray, names: list[str]) -> None:
    """Rewrite LIME's condition texts with 3 significant digits: it prints two decimals, so a bin edge of 0.0019
    reads "<= 0.00" and one of 67883.78 carries noise digits. The edges are the discretizer's own (``bins``)."""
    edges = [np.unique(q) for q in discretizer.bins(train, None)]
    for feature, qts in zip(discretizer.to_discretize, edges, strict=True):
        name, q = names[feature], [plain_number(v, thousands=False) for v in qts]
        discretizer.names[feature] = ([f"{name} <= {q[0]}"] + [f"{q[i]} < {name} <= {q[i + 1]}" for i in range(len(q) - 1)]
                                      + [f"{name} > {q[-1]}"])


def agreement(shap_row: pd.Series, lime_rows: pd.DataFrame, k: int = 10) -> dict[str, float]:
    """How far the top-``k`` SHAP features (by |value|) and LIME's top-``k`` agree for one case.

    ``overlap`` is the share of LIME's top features that are also among SHAP's top ``k``;
    ``sign_agreement`` the share of those shared features pushing the prediction the same way.
    """
    shap_top = shap_row.abs().sort_values(ascending=False, kind="stable").index[:k]
    lime_top = lime_rows.sort_values("rank").head(k)
    if len(lime_top) == 0:
        return {"overlap": float("nan"), "sign_agreement": float("nan"), "shared": 0}
    shared = [f for f in lime_top["feature"] if f in set(shap_top)]
    weights = lime_top.set_index("feature")["weight"]
    same = [np.sign(weights[f]) == np.sign(shap_row[f]) for f in shared]
    return {
        "overlap": len(shared) / len(lime_top),
        "sign_agreement": float(np.mean(same)) if same else float("nan"),
        "shared": len(shared),
    }
