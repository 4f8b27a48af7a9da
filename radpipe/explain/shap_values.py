"""SHAP values of a fitted radpipe pipeline on the probability of the positive class (of every class, for a
multi-class model), as tidy tables.

The explainer follows the final estimator: exact interventional TreeSHAP for tree ensembles, the
linear explainer for logistic regression, a model-agnostic explainer (permutation or kernel) with a
k-means summary of the training data for everything else. Values are attributed to the features the
final estimator sees and can be summed back onto the input radiomics features.
"""

from __future__ import annotations

import re
import warnings
import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

PROBABILITY_TREES = {"RandomForestClassifier", "ExtraTreesClassifier", "DecisionTreeClassifier", "ExtraTreeClassifier"}
TREE_MODELS = {
    "RandomForestClassifier", "ExtraTreesClassifier", "GradientBoostingClassifier",
    "DecisionTreeClassifier", "ExtraTreeClassifier", "XGBClassifier", "LGBMClassifier",
}
LINEAR_MODELS = {"LogisticRegression", "LogisticRegressionCV", "SGDClassifier"}
EXPLAINERS = ("tree", "linear", "permutation", "kernel")


@dataclass
class ShapResult:
    """SHAP values of one cohort.

    Attributes
    ----------
    values : DataFrame
        case_id x final-estimator feature, on the probability scale of the positive class.
    base_value : float or Series
        Mean predicted probability over the background (sigmoid of the mean log-odds for the linear
        explainer); ``base_value + values.sum(axis=1)`` is each case's predicted probability. A Series
        (per case) when each case is explained for its own class (see :func:`predicted_class_view`).
    features : DataFrame
        The values the final estimator saw (after imputation, scaling, selection, ...).
    explainer : str
        ``tree``, ``linear``, ``permutation`` or ``kernel``.
    notes : list of str
        Plain-language notes on how the values were computed (for the reports).
    """

    values: pd.DataFrame
    base_value: float
    features: pd.DataFrame
    explainer: str
    notes: list[str] = field(default_factory=list)

    def to_frame(self) -> pd.DataFrame:
        """The ``shap_values.csv`` table: one row per case, one column per feature, then ``base_value``."""
        out = self.values.copy()
        out["base_value"] = self.base_value
        return out


def final_estimator(pipeline):
    """The estimator at the end of ``pipeline`` (a search object is unwrapped to its best estimator)."""
    est = pipeline[-1] if hasattr(pipeline, "steps") else pipeline
    return getattr(est, "best_estimator_", est)


def final_features(pipeline, X: pd.DataFrame) -> pd.DataFrame:
    """The table the final estimator of ``pipeline`` sees for ``X`` (index kept, columns named)."""
    if not hasattr(pipeline, "steps") or len(pipeline.steps) == 1:
        return X.copy()
    head = pipeline[:-1]
    out = head.transform(X)
    if isinstance(out, pd.DataFrame):
        out.index = X.index
        return out
    try:
        names = [str(n) for n in head.get_feature_names_out()]
    except Exception:  # a transformer without get_feature_names_out
        names = [f"x{i}" for i in range(np.shape(out)[1])]
    return pd.DataFrame(np.asarray(out, dtype=float), index=X.index, columns=names)


def positive_index(classes, positive_class) -> int:
    """Column of ``predict_proba`` that holds the positive class.

    Labels encoded as 0/1 (e.g. for XGBoost) follow the convention 1 = positive class.
    """
    classes = [str(c) for c in classes]
    if str(positive_class) in classes:
        return classes.index(str(positive_class))
    if len(classes) == 2:
        return 1
    raise ValueError(f"positive class {positive_class!r} is not among the model's classes {classes}")


def choose_explainer(estimator, requested: str = "auto") -> str:
    """The explainer used for ``estimator``: ``requested`` unless it is ``auto``."""
    if requested != "auto":
        if requested not in EXPLAINERS:
            raise ValueError(f"unknown explainer {requested!r}: choose one of auto, {', '.join(EXPLAINERS)}")
        return requested
    name = type(estimator).__name__
    if name in TREE_MODELS:
        # shap's TreeExplainer gives probabilities of multi-class boosted trees only for random forests' kind
        if len(getattr(estimator, "classes_", ())) > 2 and name not in PROBABILITY_TREES:
            return "permutation"
        return "tree"
    if name in LINEAR_MODELS and np.ndim(getattr(estimator, "coef_", None)) == 2 and len(estimator.classes_) == 2:
        return "linear"
    return "permutation"


def case_seed(seed: int, case_id) -> int:
    """A per-case seed that depends on the case, not on its position or on how work is split."""
    return (int(seed) * 1_000_003 + zlib.crc32(str(case_id).encode())) % (2**32 - 1)


def sample_background(Xt_train: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """``n`` training rows drawn without replacement (all rows when there are fewer)."""
    if len(Xt_train) <= n:
        return Xt_train
    return Xt_train.sample(n=n, random_state=seed)


def kmeans_background(Xt_train: pd.DataFrame, k: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """k-means centroids of the training rows and the share of rows in each cluster."""
    from sklearn.cluster import KMeans

    data = Xt_train.to_numpy(dtype=float)
    if len(data) <= k:
        return Xt_train, np.full(len(data), 1.0 / len(data))
    km = KMeans(n_clusters=k, random_state=seed, n_init=4).fit(data)
    weights = np.bincount(km.labels_, minlength=k) / len(data)
    return pd.DataFrame(km.cluster_centers_, columns=Xt_train.columns), weights


def compute_shap(
    pipeline,
    X: pd.DataFrame,
    X_train: pd.DataFrame,
    *,
    positive_class,
    explainer: str = "auto",
    background: int = 50,
    agnostic_background: int = 20,
    max_evals: int | None = None,
    seed: int = 42,
    n_jobs: int = 1,
) -> ShapResult:
    """SHAP values of ``pipeline`` for the cases in ``X`` on the positive-class probability.

    Parameters
    ----------
    pipeline : fitted sklearn Pipeline whose last step has ``predict_proba``.
    X : DataFrame
        Cases to explain (index = case_id), with the columns the pipeline expects.
    X_train : DataFrame
        Training cases, the source of the background distribution.
    positive_class : label of the positive class.
    explainer : ``auto``, ``tree``, ``linear``, ``permutation`` or ``kernel``.
    background : training rows sampled as background (boosted trees, linear).
    agnostic_background : k-means centroids of the training rows (permutation, kernel).
    max_evals : model evaluations per case for the permutation / kernel explainers.
    seed : makes sampling, k-means and permutations reproducible; each case gets its own seed, so
        the values do not depend on ``n_jobs``.
    n_jobs : worker processes over chunks of cases.

    Examples
    --------
    >>> result = compute_shap(pipe, X, X, positive_class="malignant")  # doctest: +SKIP
    >>> (result.base_value + result.values.sum(axis=1)).round(6).equals(
    ...     pd.Series(pipe.predict_proba(X)[:, 1], index=X.index).round(6))  # doctest: +SKIP
    True
    """
    from radpipe.model.ensemble import ensemble_shap, is_mean_ensemble

    if is_mean_ensemble(pipeline):  # the weighted mean of its members' values, each explained as a single model
        return ensemble_shap(pipeline, X, X_train, positive_class=positive_class, explainer=explainer,
                             background=background, agnostic_background=agnostic_background, max_evals=max_evals,
                             seed=seed, n_jobs=n_jobs)
    est = final_estimator(pipeline)
    kind = choose_explainer(est, explainer)
    pos = positive_index(est.classes_, positive_class)
    Xt = final_features(pipeline, X)
    Xt_train = final_features(pipeline, X_train)
    notes: list[str] = []
    if kind == "linear" and not _is_logistic(est, Xt_train.iloc[: min(20, len(Xt_train))]):
        notes.append("the linear model's probabilities are not a logistic function of its scores: "
                     "fell back to the permutation explainer")
        kind = "permutation"
    bg, parts = _explain_in_chunks(Xt, Xt_train, kind=kind, est=est, pos=pos, background=background,
                                   agnostic_background=agnostic_background, max_evals=max_evals, seed=seed,
                                   n_jobs=n_jobs)
    values = np.vstack([p[0] for p in parts]) if parts else np.zeros((0, Xt.shape[1]))
    base = float(parts[0][1]) if parts else float("nan")
    notes.extend(_NOTES[kind](len(bg)))
    frame = pd.DataFrame(values, index=Xt.index, columns=Xt.columns)
    frame.index.name = X.index.name or "case_id"
    return ShapResult(values=frame, base_value=base, features=Xt, explainer=kind, notes=notes)


def _explain_in_chunks(Xt: pd.DataFrame, Xt_train: pd.DataFrame, *, kind: str, est, pos, background: int,
                       agnostic_background: int, max_evals: int | None, seed: int, n_jobs: int):
    """The background for ``kind`` and ``_explain_rows``' (values, base) for chunks of ``Xt``, in row order."""
    if kind in ("tree", "linear"):
        bg, weights = sample_background(Xt_train, background, seed), None
    else:
        bg, weights = kmeans_background(Xt_train, agnostic_background, seed)
    seeds = [case_seed(seed, c) for c in Xt.index]
    # building a tree explainer converts every tree (seconds for a large forest): one chunk per worker;
    # per-case explainers are cheap to build, so smaller chunks balance the load
    chunks = _chunks(len(Xt), n_jobs, per_job=1 if kind in ("tree", "linear") else 4)
    args = dict(kind=kind, est=est, bg=bg, weights=weights, pos=pos, max_evals=max_evals)
    if n_jobs == 1 or len(chunks) == 1:
        return bg, [_explain_rows(Xt.iloc[sl], seeds[sl], **args) for sl in chunks]
    from joblib import Parallel, delayed

    return bg, Parallel(n_jobs=n_jobs)(delayed(_explain_rows)(Xt.iloc[sl], seeds[sl], **args) for sl in chunks)


def compute_shap_classes(
    pipeline,
    X: pd.DataFrame,
    X_train: pd.DataFrame,
    *,
    class_names: list[str] | None = None,
    explainer: str = "auto",
    background: int = 50,
    agnostic_background: int = 20,
    max_evals: int | None = None,
    seed: int = 42,
    n_jobs: int = 1,
) -> dict[str, ShapResult]:
    """SHAP values of a multi-class ``pipeline`` on the probability of every class, in one pass.

    Returns ``{class name: ShapResult}`` in the order of ``predict_proba``'s columns (``class_names``
    names them; default: the estimator's ``classes_``). The explainer is chosen as in
    :func:`compute_shap`, except that the linear explainer (one log-odds, not a softmax) and TreeSHAP
    of boosted trees (no probability output for several classes in shap) give way to the permutation
    explainer. For each class, ``base_value + values.sum(axis=1)`` is that class's probability.
    Parameters as in :func:`compute_shap`.
    """
    est = final_estimator(pipeline)
    n_classes = len(est.classes_)
    names = [str(c) for c in (class_names if class_names is not None else est.classes_)]
    if len(names) != n_classes:
        raise ValueError(f"{len(names)} class names for a model with {n_classes} classes")
    kind = choose_explainer(est, explainer)
    notes: list[str] = []
    if kind == "linear" or (kind == "tree" and type(est).__name__ not in PROBABILITY_TREES):
        notes.append(f"the {kind} explainer cannot give the class probabilities of this multi-class model: "
                     "fell back to the permutation explainer")
        kind = "permutation"
    Xt = final_features(pipeline, X)
    Xt_train = final_features(pipeline, X_train)
    bg, parts = _explain_in_chunks(Xt, Xt_train, kind=kind, est=est, pos=list(range(n_classes)),
                                   background=background, agnostic_background=agnostic_background,
                                   max_evals=max_evals, seed=seed, n_jobs=n_jobs)
    values = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, Xt.shape[1], n_classes))
    base = np.asarray(parts[0][1], dtype=float) if parts else np.full(n_classes, np.nan)
    notes.extend(_NOTES[kind](len(bg)))
    out = {}
    for k, name in enumerate(names):
        frame = pd.DataFrame(values[:, :, k], index=Xt.index, columns=Xt.columns)
        frame.index.name = X.index.name or "case_id"
        out[name] = ShapResult(values=frame, base_value=float(base[k]), features=Xt, explainer=kind, notes=notes)
    return out


def predicted_class_view(by_class: dict[str, ShapResult], predicted: pd.Series) -> ShapResult:
    """One ShapResult explaining each case's own class ``predicted[case]`` (a key of ``by_class``).

    Its ``base_value`` is a Series: each case's class's base value.
    """
    first = next(iter(by_class.values()))
    values = pd.DataFrame([by_class[str(predicted[c])].values.loc[c] for c in first.values.index],
                          index=first.values.index, columns=first.values.columns)
    base = pd.Series([by_class[str(predicted[c])].base_value for c in values.index], index=values.index,
                     name="base_value")
    return ShapResult(values=values, base_value=base, features=first.features, explainer=first.explainer,
                      notes=first.notes)


_NOTES = {
    "tree": lambda n: [
        "Exact TreeSHAP on the predicted probability: path-dependent for random forests and extra trees (whose "
        "trees output class shares, relative to the training cases in the leaves), interventional through the "
        f"logistic link for boosted trees (relative to {n} training cases)."
    ],
    "linear": lambda n: [
        f"Exact linear SHAP on the log-odds relative to the mean of {n} training cases, carried to the "
        "probability scale by the rescale rule (each contribution x (p - p0) / (logit p - logit p0)), so "
        "signs and ranks are those of the exact log-odds values and contributions add up to the probability."
    ],
    "permutation": lambda n: [
        f"Model-agnostic permutation SHAP (antithetic permutations, seeded per case) against {n} k-means "
        "centroids of the training data; contributions add up exactly, individual values are estimates."
    ],
    "kernel": lambda n: [
        f"Model-agnostic Kernel SHAP (seeded per case) against {n} weighted k-means centroids of the "
        "training data; contributions add up exactly, individual values are estimates."
    ],
}


def _chunks(n: int, n_jobs: int, per_job: int = 4) -> list[slice]:
    if n == 0:
        return []
    k = max(1, min(n, n_jobs * per_job if n_jobs > 1 else 1))
    edges = np.linspace(0, n, k + 1).astype(int)
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:], strict=False) if b > a]


def _is_logistic(est, Xs: pd.DataFrame) -> bool:
    try:
        score = np.ravel(est.decision_function(Xs))
        proba = est.predict_proba(Xs)[:, 1]
    except Exception:
        return False
    return bool(np.allclose(1.0 / (1.0 + np.exp(-score)), proba, atol=1e-9))


def _explain_rows(Xt, seeds, *, kind, est, bg, weights, pos, max_evals):
    """SHAP values (rows x features) and the base value for one chunk of cases."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # small problems: BLAS threads only contend with the other workers
        return _explain_rows_1(Xt, seeds, kind=kind, est=est, bg=bg, weights=weights, pos=pos, max_evals=max_evals)


def _explain_rows_1(Xt, seeds, *, kind, est, bg, weights, pos, max_evals):
    import shap

    several = isinstance(pos, list)  # every listed class of a multi-class model: values are cases x features x classes
    if kind == "tree":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if type(est).__name__ in PROBABILITY_TREES:
                # leaves hold class shares: the raw output is the probability, and path-dependent TreeSHAP is
                # exact on it without a background (several times faster than interventional)
                explainer = shap.TreeExplainer(est, feature_perturbation="tree_path_dependent")
            else:  # boosted trees output log-odds: interventional TreeSHAP through the logistic link
                explainer = shap.TreeExplainer(est, data=bg, model_output="probability",
                                               feature_perturbation="interventional")
            raw = explainer.shap_values(Xt, check_additivity=False)
        values, base = np.asarray(raw), np.atleast_1d(explainer.expected_value)
        if several:
            return values[:, :, pos], base[pos]
        if values.ndim == 3:  # one output per class
            return values[:, :, pos], float(base[pos])
        if pos == 0:  # a single output is the probability of class 1
            return -values, 1.0 - float(base[0])
        return values, float(base[0])
    if kind == "linear":
        explainer = shap.LinearExplainer(est, shap.maskers.Independent(bg, max_samples=len(bg)))
        phi = np.asarray(explainer.shap_values(Xt), dtype=float)
        z0 = float(np.ravel(explainer.expected_value)[0])
        if pos == 0:
            phi, z0 = -phi, -z0
        z = z0 + phi.sum(axis=1)
        p, p0 = _sigmoid(z), _sigmoid(z0)
        dz = z - z0
        small = np.abs(dz) < 1e-12
        factor = np.where(small, p0 * (1 - p0), (p - p0) / np.where(small, 1.0, dz))
        return phi * factor[:, None], float(p0)

    columns = list(Xt.columns)

    def f(A):
        return est.predict_proba(pd.DataFrame(np.asarray(A, dtype=float), columns=columns))[:, pos]

    d = Xt.shape[1]
    rows = []
    if kind == "permutation":
        explainer = shap.explainers.Permutation(f, shap.maskers.Independent(bg.to_numpy(), max_samples=len(bg)))
        evals = max_evals or max(500, 2 * d + 1)
        base = np.mean(f(bg.to_numpy()), axis=0) if several else float(np.mean(f(bg.to_numpy())))
        for i in range(len(Xt)):
            np.random.seed(seeds[i])
            n_evals = max(evals, 2 * d + 1)
            # one model call per case: per-call overhead (input validation, calibrated ensembles) dominates otherwise
            exp = explainer(Xt.iloc[[i]].to_numpy(dtype=float), max_evals=n_evals, batch_size=n_evals, silent=True)
            rows.append(np.asarray(exp.values)[0])
    else:  # kernel
        from shap.utils._legacy import DenseData

        data = DenseData(bg.to_numpy(), columns, None, np.asarray(weights))
        explainer = shap.KernelExplainer(f, data)
        base = np.ravel(explainer.expected_value) if several else float(np.ravel(explainer.expected_value)[0])
        nsamples = max_evals or 2 * d + 2048
        for i in range(len(Xt)):
            np.random.seed(seeds[i])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                phi = explainer.shap_values(Xt.iloc[[i]].to_numpy(dtype=float), nsamples=nsamples, silent=True)
            if several:  # (1, features, classes), or a list of (1, features) per class in older shap
                phi = np.asarray(phi)
                rows.append(phi[0] if phi.ndim == 3 and phi.shape[1] == d else np.moveaxis(phi, 0, -1)[0])
            else:
                rows.append(np.ravel(np.asarray(phi))[:d])
    if several:
        return (np.stack(rows) if rows else np.zeros((0, d, len(pos)))), base
    values = np.vstack(rows) if rows else np.zeros((0, d))
    return values, base


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=float)))


def original_name_map(final_names, input_names) -> dict[str, str]:
    """Map each final-estimator feature to the input feature it comes from (itself when it is new).

    Selection and harmonisation keep names, and a ColumnTransformer prefixes them (``num__``).
    """
    inputs = set(map(str, input_names))
    mapping = {}
    for name in map(str, final_names):
        if name in inputs:
            mapping[name] = name
        elif "__" in name and name.split("__", 1)[1] in inputs:
            mapping[name] = name.split("__", 1)[1]
        else:
            mapping[name] = name
    return mapping


def to_original(values: pd.DataFrame, input_names) -> pd.DataFrame:
    """Sum SHAP values onto the input features; features dropped by selection get zero.

    Derived features that match no input name (e.g. principal components) keep their own column,
    after the input features.
    """
    mapping = original_name_map(values.columns, input_names)
    summed = values.T.groupby(lambda c: mapping[c], sort=False).sum().T
    extra = [c for c in summed.columns if c not in set(map(str, input_names))]
    out = summed.reindex(columns=[str(c) for c in input_names] + extra, fill_value=0.0)
    out.index = values.index
    return out


_CLASSES = {
    "shape": "shape", "shape2D": "shape", "firstorder": "first order", "glcm": "texture",
    "glrlm": "texture", "glszm": "texture", "gldm": "texture", "ngtdm": "texture", "gtdm": "texture",
}
_FILTER_RE = re.compile(
    r"^(original|wavelet(?:2D)?-[LH]+|log-sigma-[0-9-]+mm-[23]D|square|squareroot|logarithm|exponential|"
    r"gradient|lbp-2D|lbp-3D-[a-z0-9]+)$"
)


def parse_feature_name(name: str) -> dict[str, str]:
    """Image filter, feature class, family and feature of a pyradiomics column name.

    >>> parse_feature_name("wavelet-LLH_firstorder_Mean")["family"]
    'first order'
    >>> parse_feature_name("log-sigma-2-0-mm-3D_glszm_ZoneEntropy")["filter_detail"]
    'log-sigma-2-0-mm-3D'
    >>> parse_feature_name("age")["family"]
    'other'
    """
    base = str(name).split("__", 1)[1] if "__" in str(name) else str(name)
    parts = base.split("_", 2)
    if len(parts) == 3 and parts[1] in _CLASSES and (_FILTER_RE.match(parts[0]) or "-" in parts[0]):
        image_filter = parts[0].split("-")[0] if parts[0].startswith(("wavelet", "log-sigma", "lbp")) else parts[0]
        if parts[0].startswith("log-sigma"):
            image_filter = "LoG"
        return {"filter": image_filter, "filter_detail": parts[0], "class": parts[1],
                "family": _CLASSES[parts[1]], "feature": parts[2]}
    from radpipe.extract.ibsi_names import pyradiomics_parts

    ibsi = pyradiomics_parts(base)  # an IBSI-style name (extract.names: ibsi), e.g. cm_contrast_d1_3d_avg_fbs_w25
    if ibsi is not None:
        return parse_feature_name("_".join(ibsi))
    return {"filter": "none", "filter_detail": "none", "class": "other", "family": "other", "feature": base}


def grouped(values: pd.DataFrame, by: str) -> pd.DataFrame:
    """Sum SHAP values per feature family (``by="family"``) or image filter (``by="filter"``)."""
    keys = {c: parse_feature_name(c)[by] for c in values.columns}
    return values.T.groupby(lambda c: keys[c], sort=True).sum().T
