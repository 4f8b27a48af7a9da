"""The joint search: the whole pipeline (selection method, k, decorrelation threshold, model family and its
hyper-parameters) chosen inside the inner cross-validation, by successive halving.

One scikit-learn Pipeline (``impute -> variance -> scale -> decorrelate -> select -> clf``) is searched over a
list of parameter distributions, one per model family, whose ``clf`` entry swaps the final estimator
(``Pipeline.set_params(clf=...)``). The family is therefore a hyper-parameter like any other: it is picked on
the inner folds of each outer training fold, and the outer folds score the whole procedure, with no "best of N
families afterwards" on the outer folds. :func:`draw_candidates` draws ``search_budget`` random candidates, an
equal share per family, and scikit-learn's ``HalvingGridSearchCV`` (Jamieson & Talwalkar 2016; Li et al. 2017)
screens them on a subsample of the cases and keeps the best third for each larger round, the last on all of
them; a training fold too small for a first round of :data:`MIN_ROUND_CASES` cases gets a single round on all
its cases. The budget is a number of candidates, so a seed gives the same candidates, the same scores and the
same winner on any machine and any ``n_jobs``.

With ``search_top`` > 1 the model is an ensemble of the best configurations of the last round, refitted on the
whole training fold (see :mod:`radpipe.model.ensemble`), as WORC does (Starmans et al. 2021).
"""

from __future__ import annotations

from collections import Counter
from math import ceil, floor, log
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import loguniform, randint, uniform
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.experimental import enable_halving_search_cv  # noqa: F401  (makes HalvingGridSearchCV importable)
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import HalvingGridSearchCV, ParameterSampler
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.svm import SVC

from radpipe.model.settings import SEARCH_FAMILIES, ModelSettings
from radpipe.model.transformers import CorrelationFilter, FeatureSelector

SEARCH_K = (4, 8, 12, 16, 24, 32, 48, 64)
#: 1.0 keeps every feature that is not an exact copy of a more relevant one
SEARCH_CORRELATION = (0.8, 0.9, 0.95, 1.0)
#: smallest subsample (cases) of the first halving round. With 40, the first rounds ranked candidates on inner
#: test folds of ~13 cases, i.e. at random, and the search anti-learned on weak radMLBench tables (mean nested AUC
#: 0.48 against 0.53 without halving on 6 of them); so cohorts under 300 training cases get one full round
MIN_ROUND_CASES = 100
HALVING_FACTOR = 3


def _family_estimator(family: str, settings: ModelSettings) -> Any:
    seed, weight = settings.seed, settings.class_weight
    if family.startswith("logreg"):
        l1 = {"logreg_l1": 1.0, "logreg_l2": 0.0, "logreg_en": 0.5}[family]
        return LogisticRegression(solver="saga", l1_ratio=l1, C=1.0, class_weight=weight, max_iter=2000, tol=1e-3,
                                  random_state=seed)
    if family in ("svm", "svm_linear"):
        kernel = "rbf" if family == "svm" else "linear"
        return CalibratedClassifierCV(SVC(kernel=kernel, class_weight=weight), method="sigmoid",
                                      cv=settings.calibration_folds)
    if family in ("rf", "extra_trees"):
        forest = RandomForestClassifier if family == "rf" else ExtraTreesClassifier
        # 100 trees: the candidates are ranked, not used; 200 trees changed no inner AUC by more than its noise
        return forest(n_estimators=100, max_features="sqrt", random_state=seed, n_jobs=1, class_weight=weight)
    if family == "xgb":
        from xgboost import XGBClassifier

        return XGBClassifier(n_estimators=150, max_depth=3, learning_rate=0.05, subsample=0.8, colsample_bytree=0.8,
                             tree_method="hist", eval_metric="logloss", random_state=seed, n_jobs=1, verbosity=0)
    if family == "naive_bayes":
        return GaussianNB()
    if family == "knn":
        return KNeighborsClassifier(n_neighbors=7)
    raise ValueError(f"unknown search family {family!r}; choose from {list(SEARCH_FAMILIES)}")


def _family_distributions(family: str) -> dict[str, Any]:
    if family == "logreg_l2":
        return {"C": loguniform(1e-3, 1e2)}
    # an L1 term with C below ~0.1 zeroes every coefficient on cohorts of ~100 cases (constant predictions: all four
    # elastic-net draws of the default seed had C < 0.008 and outer AUC 0.50 on BUSI and STS-PET)
    if family == "logreg_l1":
        return {"C": loguniform(1e-1, 1e2)}
    if family == "logreg_en":
        return {"C": loguniform(1e-1, 1e2), "l1_ratio": uniform(0.1, 0.8)}
    if family == "svm_linear":
        return {"estimator__C": loguniform(1e-3, 1e1)}
    if family == "svm":
        return {"estimator__C": loguniform(1e-2, 1e2), "estimator__gamma": loguniform(1e-4, 1e0)}
    if family in ("rf", "extra_trees"):
        return {"max_features": ["sqrt", 0.1, 0.3, 0.5], "min_samples_leaf": randint(1, 8), "max_depth": [None, 3, 6]}
    if family == "xgb":
        return {"max_depth": randint(1, 6), "learning_rate": loguniform(1e-2, 3e-1), "min_child_weight": randint(1, 6)}
    if family == "naive_bayes":
        return {"var_smoothing": loguniform(1e-9, 1e-1)}
    if family == "knn":
        return {"n_neighbors": randint(3, 16), "weights": ["uniform", "distance"]}
    raise ValueError(f"unknown search family {family!r}; choose from {list(SEARCH_FAMILIES)}")


def search_pipeline(settings: ModelSettings, pandas: bool = True) -> Pipeline:
    """The Pipeline whose steps the joint search sets: the zoo's preprocessing with a decorrelation step and a
    selection step that are always present (their parameters are searched), and a placeholder ``clf``.

    ``pandas=False`` passes arrays between the steps: the same numbers, without pandas' per-column checks, which
    took most of the search's time on tables of 700 columns.
    """
    from radpipe.model.zoo import preprocessing_steps

    steps = []
    for name, step in preprocessing_steps(settings):
        if name == "decorrelate":
            step = CorrelationFilter(0.9)
        elif name == "select":
            step = FeatureSelector(method="univariate", k=16)
        steps.append((name, step))
    pipeline_class = Pipeline
    if settings.rebalance:
        from imblearn.pipeline import Pipeline as pipeline_class
    first = settings.search_families[0]
    pipeline = pipeline_class([*steps, ("clf", _family_estimator(first, settings))])
    return pipeline.set_output(transform="pandas") if pandas else pipeline


def search_distributions(settings: ModelSettings) -> list[dict[str, Any]]:
    """One parameter-distribution dict per family of ``settings.search_families`` (:func:`draw_candidates`
    draws each family's share of the budget from its dict)."""
    shared = {
        "decorrelate__threshold": list(SEARCH_CORRELATION),
        "select__method": list(settings.search_selections),
        "select__k": list(SEARCH_K),
    }
    return [{"clf": [_family_estimator(family, settings)], **shared,
             **{f"clf__{key}": value for key, value in _family_distributions(family).items()}}
            for family in settings.search_families]


def draw_candidates(settings: ModelSettings) -> list[dict[str, list]]:
    """The ``search_budget`` candidate pipelines, the families taking turns.

    Each family gets an equal share of the budget (the first ones one more when it does not divide), its
    values drawn from its own distributions with its own seed, and the families alternate in the list, whose
    order breaks ties. Drawing a family at random for each candidate instead (``HalvingRandomSearchCV`` over a
    list of dicts) left random forest out of all 24 candidates with the default seed, in every outer fold.
    A budget smaller than the number of families leaves the last families out.
    """
    spaces = search_distributions(settings)
    budget, n_families = settings.search_budget, len(spaces)
    shares = [budget // n_families + (i < budget % n_families) for i in range(n_families)]
    drawn = [list(ParameterSampler(space, share, random_state=settings.seed + i))
             for i, (space, share) in enumerate(zip(spaces, shares, strict=True))]
    return [{key: [value] for key, value in family[j].items()}
            for j in range(max(shares)) for family in drawn if j < len(family)]


def family_of(estimator: Any) -> str:
    """The search family name of a final estimator (inverse of the search's ``clf`` choices)."""
    name = type(estimator).__name__
    if name == "LogisticRegression":
        return {1.0: "logreg_l1", 0.0: "logreg_l2"}.get(float(estimator.l1_ratio), "logreg_en")
    if name == "CalibratedClassifierCV":
        return "svm" if estimator.estimator.kernel == "rbf" else "svm_linear"
    return {"RandomForestClassifier": "rf", "ExtraTreesClassifier": "extra_trees", "XGBClassifier": "xgb",
            "GaussianNB": "naive_bayes", "KNeighborsClassifier": "knn"}.get(name, name)


def describe(params: dict) -> dict:
    """A candidate's parameters as plain JSON-able text: family, selection, k, threshold, hyper-parameters."""
    out: dict[str, Any] = {"family": family_of(params["clf"]), "selection": params["select__method"],
                           "k": None if params["select__method"] == "none" else int(params["select__k"]),
                           "correlation_threshold": float(params["decorrelate__threshold"])}
    for key in sorted(params):
        if key.startswith("clf__"):
            value = params[key]
            out[key.removeprefix("clf__").removeprefix("estimator__")] = (
                value.item() if isinstance(value, np.generic) else value)
    return out


def halving_rounds(n_cases: int, budget: int, top: int) -> tuple[int, int]:
    """``(rounds, min_resources)`` of the halving search on ``n_cases``: as many rounds (at most 3) as keep the
    first round's subsample at :data:`MIN_ROUND_CASES` cases or more and the last round at ``top`` candidates or
    more."""
    rounds = 1
    while (rounds < 3 and n_cases // HALVING_FACTOR ** rounds >= MIN_ROUND_CASES
           and ceil(budget / HALVING_FACTOR ** rounds) >= max(top, 1)):
        rounds += 1
    rounds = min(rounds, 1 + floor(log(max(budget, 1), HALVING_FACTOR)))
    return rounds, max(n_cases // HALVING_FACTOR ** (rounds - 1), 1)


class JointSearch(BaseEstimator, ClassifierMixin):
    """Successive-halving random search over whole pipelines, optionally ending in an ensemble of the best.

    Behaves like a fitted scikit-learn search for :func:`radpipe.model.validate.tune`: after ``fit``,
    ``best_estimator_`` is the refitted winner (a Pipeline, or an ensemble Pipeline of the ``top`` best
    configurations of the last round) and ``best_params_`` describes it.

    Parameters
    ----------
    settings : ModelSettings
        Budget (``search_budget``), families, selection methods, ``search_top``/``search_combine``, seed, jobs.
    cv : cross-validation splitter or list of (train, test) pairs
        The inner folds.
    scoring : str, default="roc_auc"

    Attributes
    ----------
    search_ : HalvingGridSearchCV
        Over the candidates of :func:`draw_candidates`.
    best_estimator_ : Pipeline
    best_params_ : dict
        ``{"family", "selection", "k", "correlation_threshold", <hyper-parameters>, "inner_auc"}`` of the
        winner; with an ensemble also ``"members"``, the same for each member.
    ranking_ : DataFrame
        The candidates of the last round, best first (configuration and mean inner score).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from sklearn.model_selection import StratifiedKFold
    >>> rng = np.random.default_rng(0)
    >>> y = np.tile([0, 1], 30)
    >>> X = pd.DataFrame(rng.normal(size=(60, 5)) + y[:, None] * [1, 0, 0, 0, 0], columns=list("abcde"))
    >>> settings = ModelSettings(search_budget=6, search_families=["logreg_l2", "naive_bayes"])
    >>> search = JointSearch(settings, StratifiedKFold(3, shuffle=True, random_state=0)).fit(X, y)
    >>> search.best_params_["family"] in ("logreg_l2", "naive_bayes")
    True
    """

    def __init__(self, settings: ModelSettings, cv=3, scoring: str = "roc_auc"):
        self.settings = settings
        self.cv = cv
        self.scoring = scoring

    def fit(self, X, y, groups=None):
        from radpipe.model.ensemble import fit_top_ensemble

        settings = self.settings
        rounds, min_resources = halving_rounds(len(y), settings.search_budget, settings.search_top)
        # arrays unless ComBat must find the batch column by name: the same steps, without pandas overhead
        as_array = not settings.harmonise and isinstance(X, pd.DataFrame)
        X_search = X.to_numpy(dtype=float) if as_array else X
        self.search_ = HalvingGridSearchCV(
            search_pipeline(settings, pandas=not as_array), draw_candidates(settings), factor=HALVING_FACTOR,
            resource="n_samples", min_resources=min_resources, max_resources=len(y),
            aggressive_elimination=False, cv=self.cv, scoring=self.scoring, refit=False, error_score=np.nan,
            random_state=settings.seed, n_jobs=settings.n_jobs,
        )
        # the halving subsamples are drawn without stratification: a tiny class can leave an inner test fold
        # one-class, whose NaN score only drops that candidate
        self.search_.fit(X_search, y, groups=groups) if groups is not None else self.search_.fit(X_search, y)
        self.ranking_ = last_round_ranking(self.search_.cv_results_)
        self.family_configs_ = family_best_configs(self.search_.cv_results_)
        if self.ranking_.empty:
            raise ValueError("every candidate of the joint search failed on the inner folds")
        top = self.ranking_.head(max(settings.search_top, 1))
        configs = [self.search_.cv_results_["params"][i] for i in top["candidate"]]
        pipelines = [clone(search_pipeline(settings)).set_params(**clone(c, safe=False)) for c in configs]
        winner = {**describe(configs[0]), "inner_auc": round(float(top["score"].iloc[0]), 4)}
        if len(pipelines) == 1:
            self.best_estimator_ = pipelines[0].fit(X, y)
            self.best_params_ = winner
        else:
            self.best_estimator_ = fit_top_ensemble(pipelines, X, y, settings, self.cv, groups)
            self.best_params_ = {**winner, "ensemble": f"{settings.search_combine} of the top {len(pipelines)}",
                                 "members": [{**describe(c), "inner_auc": round(float(s), 4)}
                                             for c, s in zip(configs, top["score"], strict=True)]}
        self.classes_ = self.best_estimator_.classes_
        return self

    def predict_proba(self, X):
        return self.best_estimator_.predict_proba(X)

    def family_probabilities(self, X, y, X_test) -> dict[str, np.ndarray]:
        """For information only: each family's best configuration (:func:`family_best_configs`) refitted on
        (X, y), and its ``predict_proba`` on ``X_test``.

        Scored on an outer test fold, these give per-family outer AUCs. They describe the search; choosing a
        family by them afterwards would be the "best of N on the outer folds" the search exists to avoid.
        """
        out = {}
        for family, config in self.family_configs_.items():
            pipeline = clone(search_pipeline(self.settings)).set_params(**clone(config, safe=False))
            out[family] = pipeline.fit(X, y).predict_proba(X_test)
        return out

    def predict(self, X):
        return self.best_estimator_.predict(X)


def last_round_ranking(results: dict) -> pd.DataFrame:
    """Candidates of the halving search's last round, best mean inner score first (ties: the earlier drawn)."""
    frame = pd.DataFrame({"candidate": np.arange(len(results["params"])), "iter": results["iter"],
                          "score": results["mean_test_score"]})
    last = frame[(frame["iter"] == frame["iter"].max()) & np.isfinite(frame["score"])]
    return last.sort_values(["score", "candidate"], ascending=[False, True], kind="stable").reset_index(drop=True)


def family_best_configs(results: dict) -> dict[str, dict]:
    """Each family's best configuration in a search's ``cv_results_``: the latest halving round it reached, then
    its best mean inner score (scores of different rounds come from different subsamples). Families by name."""
    params = results["params"]
    frame = pd.DataFrame({"candidate": np.arange(len(params)), "iter": results["iter"],
                          "score": results["mean_test_score"], "family": [family_of(p["clf"]) for p in params]})
    frame = frame[np.isfinite(frame["score"])].sort_values(
        ["iter", "score", "candidate"], ascending=[False, False, True], kind="stable")
    best = frame.drop_duplicates("family").sort_values("family")
    return {row.family: params[row.candidate] for row in best.itertuples()}


#: the column that says what search_families.csv is, in every row, so a copied table keeps its label
FAMILY_AUC_NOTE = ("information only: the model is the joint search; picking a family by this outer AUC would be "
                   "a choice made on the outer folds, and optimistic")


def family_outer_aucs(fold_fits, y_idx: np.ndarray, auc_of) -> pd.DataFrame:
    """Per family, the outer-CV AUC of its best inner configuration of each outer fold (``FoldFit.family_test_prob``),
    pooled over the folds of a repeat and averaged over repeats, and the outer folds whose search it won.

    ``auc_of(y, prob)`` is the AUC of the outcome (binary or macro one-vs-rest). A family absent from some
    fold's search (every candidate failed) is scored on the folds where it was present (``cases``).
    """
    wins = Counter(fit.best_params.get("family") for fit in fold_fits)
    families = sorted({f for fit in fold_fits for f in (fit.family_test_prob or {})})
    rows = []
    for family in families:
        per_repeat = []
        cases = 0
        for repeat in sorted({fit.repeat for fit in fold_fits}):
            fits = [f for f in fold_fits if f.repeat == repeat and family in (f.family_test_prob or {})]
            idx = np.concatenate([f.test_idx for f in fits])
            prob = np.concatenate([f.family_test_prob[family] for f in fits])
            per_repeat.append(auc_of(y_idx[idx], prob))
            cases = max(cases, len(idx))
        rows.append({"family": family, "outer_auc": round(float(np.mean(per_repeat)), 4), "cases": cases,
                     "outer_folds_won": wins.get(family, 0), "note": FAMILY_AUC_NOTE})
    return pd.DataFrame(rows, columns=["family", "outer_auc", "cases", "outer_folds_won", "note"])


def search_summary(fold_params: list[tuple[int, int, dict]]) -> dict:
    """For the model card: the configuration chosen in each outer fold and how often each family and
    selection method won (in an ensemble, the winner is its best member)."""
    chosen = [{"repeat": r, "fold": f, **{k: v for k, v in p.items() if k != "members"}} for r, f, p in fold_params]
    families = Counter(p["family"] for _, _, p in fold_params)
    selections = Counter(p["selection"] for _, _, p in fold_params)
    return {"chosen_per_outer_fold": chosen,
            "family_wins": {k: families[k] for k in sorted(families)},
            "selection_wins": {k: selections[k] for k in sorted(selections)}}
