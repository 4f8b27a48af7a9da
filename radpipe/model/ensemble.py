"""Ensembles of the best configurations of the joint search (:mod:`radpipe.model.search`), and their SHAP values.

``mean``: the (weighted) mean of the members' probabilities, as WORC averages its best workflows (Starmans et
al. 2021); each member is a whole pipeline with its own selection, so the ensemble sees every input column.
``stacking``: a logistic regression on the members' out-of-fold probabilities within the training fold (scikit-learn's
``StackingClassifier``). Both are fitted on an outer training fold only, so the outer folds score them like any
model.

SHAP values of a ``mean`` ensemble are the weighted mean of its members' SHAP values, each summed onto the input
features first (probability scale, as :func:`radpipe.explain.shap_values.compute_shap` does single models): a
weighted mean of additive explanations is additive, so base + sum is the ensemble's probability. A stacked
ensemble is not a mean of its members and is explained model-agnostically on its inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.ensemble import StackingClassifier, VotingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from radpipe.model.settings import ModelSettings


class MeanEnsemble(VotingClassifier):
    """Soft voting over whole pipelines: ``predict_proba`` is the ``weights``-weighted mean of the members'.

    scikit-learn's ``VotingClassifier(voting="soft")`` under its own name, so the explain stage knows it may
    average the members' SHAP values (see :func:`ensemble_shap`).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.naive_bayes import GaussianNB
    >>> rng = np.random.default_rng(0)
    >>> y = np.tile([0, 1], 20)
    >>> X = rng.normal(size=(40, 3)) + y[:, None]
    >>> ens = MeanEnsemble([("lr", LogisticRegression()), ("nb", GaussianNB())], weights=[3, 1]).fit(X, y)
    >>> bool(np.allclose(ens.predict_proba(X), 0.75 * ens.estimators_[0].predict_proba(X)
    ...                  + 0.25 * ens.estimators_[1].predict_proba(X)))
    True
    """

    def __init__(self, estimators, *, weights=None, n_jobs=None):
        super().__init__(estimators, voting="soft", weights=weights, n_jobs=n_jobs)

    def member_weights(self) -> np.ndarray:
        """The members' weights, normalised to sum to 1."""
        w = np.ones(len(self.estimators_)) if self.weights is None else np.asarray(self.weights, dtype=float)
        return w / w.sum()


def fit_top_ensemble(pipelines: list[Pipeline], X: pd.DataFrame, y: np.ndarray, settings: ModelSettings, cv,
                     groups=None) -> Pipeline:
    """The ``settings.search_combine`` ensemble of ``pipelines`` (best first), fitted on (X, y).

    Members get equal weights: the inner AUCs that ranked them are too close and too noisy to weight by.
    ``cv`` and ``groups`` (the inner folds) are not used: stacking draws its own seeded stratified folds.
    """
    members = [(f"top{i + 1}", clone(p)) for i, p in enumerate(pipelines)]
    if settings.search_combine == "mean":
        clf: Any = MeanEnsemble(members)
        clf.fit(X, y)
    else:
        # a splitter, not fixed folds, so a clone refits on other cases (the inner OOF for the threshold); it is
        # stratified but not grouped, as the zoo's stacking: it only shapes the meta-learner's training fit
        folds = StratifiedKFold(settings.inner_folds, shuffle=True, random_state=settings.seed)
        clf = StackingClassifier(members, final_estimator=LogisticRegression(C=1.0), cv=folds,
                                 stack_method="predict_proba").fit(X, y)
    # an identity first step: pipeline[:-1].get_feature_names_out() is the input feature list, as for the zoo's
    return Pipeline([("inputs", FunctionTransformer(feature_names_out="one-to-one")), ("clf", clf)]).fit(X, y)


def is_mean_ensemble(pipeline) -> bool:
    """Whether the final step of ``pipeline`` is a fitted :class:`MeanEnsemble`."""
    est = pipeline[-1] if hasattr(pipeline, "steps") else pipeline
    return isinstance(est, MeanEnsemble) and hasattr(est, "estimators_")


def ensemble_shap(pipeline, X: pd.DataFrame, X_train: pd.DataFrame, **shap_args):
    """SHAP values of a :class:`MeanEnsemble` pipeline on the positive-class probability, on the input features.

    Each member is explained by :func:`radpipe.explain.shap_values.compute_shap` (its own explainer), its values
    summed onto the input features; the ensemble's values and base value are the weighted means. The check that
    base + sum of values equals the ensemble's probability is recorded in the notes (and raises if it fails by
    more than 1e-6 for members explained exactly).
    """
    from radpipe.explain.shap_values import ShapResult, compute_shap, to_original

    ens = pipeline[-1] if hasattr(pipeline, "steps") else pipeline
    weights = ens.member_weights()
    inputs = [str(c) for c in X.columns]
    values = pd.DataFrame(0.0, index=X.index, columns=inputs)
    base, kinds, notes = 0.0, [], []
    for w, member in zip(weights, ens.estimators_, strict=True):
        res = compute_shap(member, X, X_train, **shap_args)
        values = values.add(w * to_original(res.values, inputs)[inputs], fill_value=0.0)
        base += w * float(res.base_value)
        kinds.append(res.explainer)
    pos = list(map(str, ens.classes_)).index(str(shap_args["positive_class"])) if str(
        shap_args["positive_class"]) in map(str, ens.classes_) else 1
    prob = pipeline.predict_proba(X)[:, pos]
    gap = float(np.max(np.abs(base + values.sum(axis=1).to_numpy() - prob))) if len(X) else 0.0
    exact = all(k == "tree" for k in kinds)
    if exact and gap > 1e-6:
        raise AssertionError(f"ensemble SHAP values are not additive: base + sum differs from the probability by {gap}")
    values.index.name = X.index.name or "case_id"
    notes.append(f"mean ensemble of {len(weights)} pipelines: SHAP values are the weighted mean of the members' "
                 f"values ({', '.join(kinds)} explainers), each summed onto the input features; base + sum of "
                 f"values matches the ensemble's probability to within {gap:.1e}")
    return ShapResult(values=values, base_value=base, features=X.copy(), explainer="ensemble (" + ", ".join(
        sorted(set(kinds))) + ")", notes=notes)
