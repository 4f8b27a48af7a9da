"""The joint search (radpipe.model.search): the family is chosen inside the inner loop, noise stays at chance,
and the result does not depend on the number of jobs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import StratifiedKFold
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import Pipeline

import radpipe.model.search as search_module
from radpipe.model import ModelSettings, train_models
from radpipe.model.metrics import roc_auc
from radpipe.model.search import (
    FAMILY_AUC_NOTE,
    JointSearch,
    draw_candidates,
    family_outer_aucs,
    halving_rounds,
    search_distributions,
    search_summary,
)
from radpipe.model.transformers import CorrelationFilter, FeatureSelector
from radpipe.model.validate import nested_cv, outer_splits

CHEAP = ["logreg_l1", "logreg_l2", "naive_bayes", "knn"]


class OuterOracle(ClassifierMixin, BaseEstimator):
    """Reads case ids from column 0. Fitted on a whole outer training fold, it predicts the test cases' true
    labels (perfect outer AUC); fitted on anything else (an inner or halving training fold) it predicts the
    opposite of the truth (inner AUC 0). A search that looked at the outer test folds would pick it."""

    labels: dict = {}
    outer_train_sets: set = set()

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.outer_ = frozenset(np.asarray(X)[:, 0].astype(int).tolist()) in self.outer_train_sets
        return self

    def predict_proba(self, X):
        truth = np.array([self.labels[int(i)] for i in np.asarray(X)[:, 0]], dtype=float)
        p = truth if self.outer_ else 1 - truth
        return np.column_stack([1 - p, p])


def _raw_search_pipeline(settings, pandas=True):
    # no imputation or scaling, so the oracle reads the raw ids; the searched steps are kept
    pipe = Pipeline([("decorrelate", CorrelationFilter(1.0)), ("select", FeatureSelector("none")),
                     ("clf", GaussianNB())])
    return pipe.set_output(transform="pandas") if pandas else pipe


def test_a_family_that_wins_only_on_outer_test_folds_is_never_chosen(monkeypatch):
    rng = np.random.default_rng(1)
    n = 60
    y = np.tile([0, 1], n // 2)
    X = pd.DataFrame({"case": np.arange(n), "signal": y + rng.normal(0, 1.0, n), "noise": rng.normal(size=n)})
    settings = ModelSettings(models=["search"], outer_folds=3, search_budget=12, search_top=1,
                             search_families=["logreg_l2"], search_selections=["none"])
    settings.search_families = ["logreg_l2", "oracle"]  # after validation: "oracle" is a test-only family
    OuterOracle.labels = dict(enumerate(y.tolist()))
    OuterOracle.outer_train_sets = {frozenset(train.tolist()) for _, _, train, _ in outer_splits(y, settings)}
    family, distributions = search_module._family_estimator, search_module._family_distributions
    monkeypatch.setattr(search_module, "_family_estimator",
                        lambda f, s: OuterOracle() if f == "oracle" else family(f, s))
    monkeypatch.setattr(search_module, "_family_distributions", lambda f: {} if f == "oracle" else distributions(f))
    monkeypatch.setattr(search_module, "search_pipeline", _raw_search_pipeline)
    monkeypatch.setattr(search_module, "family_of",
                        lambda est: "oracle" if isinstance(est, OuterOracle) else type(est).__name__)

    result = nested_cv(X, y, settings)

    chosen = [fit.best_params["family"] for fit in result.folds["search"]]
    assert chosen == ["LogisticRegression"] * 3
    # ...although, fitted on an outer training fold, it scores perfectly on that fold's test cases
    for _, _, train, test in result.splits:
        oracle = OuterOracle().fit(X.iloc[train].to_numpy(), y[train])
        assert roc_auc(y[test], oracle.predict_proba(X.iloc[test].to_numpy())[:, 1]) == 1.0


def test_the_oracle_is_drawn_and_ranked_last_inside_a_search(monkeypatch):
    rng = np.random.default_rng(2)
    n = 45
    y = np.tile([0, 1, 1], n // 3)
    X = pd.DataFrame({"case": np.arange(n), "signal": y + rng.normal(0, 1.0, n)})
    OuterOracle.labels = dict(enumerate(y.tolist()))
    OuterOracle.outer_train_sets = set()  # every fit is an inner one here
    family, distributions = search_module._family_estimator, search_module._family_distributions
    monkeypatch.setattr(search_module, "_family_estimator",
                        lambda f, s: OuterOracle() if f == "oracle" else family(f, s))
    monkeypatch.setattr(search_module, "_family_distributions", lambda f: {} if f == "oracle" else distributions(f))
    monkeypatch.setattr(search_module, "search_pipeline", _raw_search_pipeline)
    monkeypatch.setattr(search_module, "family_of", lambda est: type(est).__name__)
    settings = ModelSettings(search_budget=10, search_top=1, search_selections=["none"])
    settings.search_families = ["naive_bayes", "oracle"]
    search = JointSearch(settings, StratifiedKFold(3, shuffle=True, random_state=0)).fit(X, y)
    scores = pd.DataFrame({"family": [type(p["clf"]).__name__ for p in search.search_.cv_results_["params"]],
                           "score": search.search_.cv_results_["mean_test_score"]})
    assert scores.loc[scores["family"] == "OuterOracle", "score"].max() == 0.0
    assert search.best_params_["family"] == "GaussianNB"


def test_search_space_has_one_dict_per_family_with_the_pipeline_choices():
    settings = ModelSettings(search_families=["logreg_en", "svm", "xgb"], search_selections=["none", "mrmr"])
    space = search_distributions(settings)
    assert [type(d["clf"][0]).__name__ for d in space] == ["LogisticRegression", "CalibratedClassifierCV",
                                                            "XGBClassifier"]
    assert all(d["select__method"] == ["none", "mrmr"] and max(d["select__k"]) == 64 for d in space)
    assert "clf__estimator__gamma" in space[1] and "clf__l1_ratio" in space[0]


def test_every_family_gets_its_share_of_the_budget_in_turn():
    settings = ModelSettings()  # 24 candidates over 7 families: with a family drawn per candidate, seed 42 had no rf
    candidates = draw_candidates(settings)
    families = [search_module.family_of(c["clf"][0]) for c in candidates]
    assert len(candidates) == 24 and families[:7] == list(settings.search_families)
    assert {f: families.count(f) for f in settings.search_families} == {
        "logreg_l2": 4, "logreg_en": 4, "svm_linear": 4, "svm": 3, "rf": 3, "extra_trees": 3, "xgb": 3}
    assert all(len(values) == 1 for c in candidates for values in c.values())
    again = draw_candidates(ModelSettings())
    assert [c["select__k"] for c in again] == [c["select__k"] for c in candidates]
    other = draw_candidates(ModelSettings(seed=7))
    assert [c["select__k"] for c in other] != [c["select__k"] for c in candidates]


def test_halving_rounds_keep_the_first_round_and_the_ensemble_large_enough():
    assert halving_rounds(50, 40, 3) == (1, 50)       # 50 // 3 < 100 cases: one round on all cases
    assert halving_rounds(290, 24, 10) == (1, 290)    # the largest radMLBench training fold: no halving
    assert halving_rounds(400, 40, 3) == (2, 133)     # 40 candidates on 133 cases, then 14 on 399
    assert halving_rounds(1000, 40, 3) == (3, 111)    # 40 -> 14 -> 5 candidates
    assert halving_rounds(1000, 40, 6) == (2, 333)    # a third round would leave fewer than 6


def test_unknown_search_family_is_a_settings_error():
    with pytest.raises(ValueError, match="unknown search_families"):
        ModelSettings(search_families=["svm", "tabpfn"])
    with pytest.raises(ValueError, match="unknown search_selections"):
        ModelSettings(search_selections=["relief"])


def test_search_summary_counts_wins():
    params = [(0, f, {"family": fam, "selection": sel, "k": 8}) for f, (fam, sel) in
              enumerate([("svm", "mrmr"), ("svm", "lasso"), ("rf", "mrmr")])]
    summary = search_summary(params)
    assert summary["family_wins"] == {"rf": 1, "svm": 2}
    assert summary["selection_wins"] == {"lasso": 1, "mrmr": 2}
    assert [c["fold"] for c in summary["chosen_per_outer_fold"]] == [0, 1, 2]


def _balanced_table(seed: int, n: int, p: int, shift: float = 0.0) -> tuple[pd.DataFrame, np.ndarray]:
    """n cases alternating 0/1 and p standard-normal features f0..f{p-1}; f0 moved by ``shift`` in class 1."""
    rng = np.random.default_rng(seed)
    y = np.tile([0, 1], n // 2)
    X = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"f{i}" for i in range(p)])
    X["f0"] += shift * y
    return X, y


def _noise_auc(seed: int, budget: int, n: int = 150) -> float:
    X, y = _balanced_table(seed, n, 20)
    settings = ModelSettings(models=["search"], outer_folds=3, search_budget=budget, search_top=1, seed=seed,
                             search_families=CHEAP, search_selections=["none", "univariate", "lasso"])
    result = nested_cv(X, y, settings)
    prob = np.empty(n)
    for fit in result.folds["search"]:
        prob[fit.test_idx] = fit.test_prob
    return roc_auc(y, prob)


def test_pure_noise_stays_at_chance_after_many_configurations():
    # 3 outer folds x 30 candidates: 90 whole pipelines tried, none of them sees an outer test case
    assert 0.40 <= _noise_auc(seed=0, budget=30) <= 0.60


@pytest.mark.slow
def test_pure_noise_stays_at_chance_over_seeds_with_hundreds_of_configurations():
    # 360 pipelines per seed. A leak would push AUCs up, so no seed may exceed 0.60. CV on noise leans below
    # chance (holding cases out moves the training fold's class means away from them; Parker et al., BMC
    # Bioinformatics 2007;8:326): seed 3 gave 0.385, so the 0.40 lower bound is on the mean over seeds.
    aucs = [_noise_auc(seed=seed, budget=120) for seed in (1, 2, 3)]
    print("pure-noise nested AUCs:", [round(a, 3) for a in aucs])
    assert max(aucs) <= 0.60 and min(aucs) >= 0.35
    assert 0.40 <= float(np.mean(aucs)) <= 0.60


def test_metrics_are_byte_identical_with_one_or_two_jobs(tmp_path):
    rng = np.random.default_rng(3)
    n = 48
    y = pd.Series(np.tile(["benign", "malignant"], n // 2), index=[f"c{i:02d}" for i in range(n)])
    X = pd.DataFrame(rng.normal(size=(n, 6)), index=y.index, columns=[f"f{i}" for i in range(6)])
    X["f0"] += (y == "malignant") * 1.0
    texts = []
    for jobs in (1, 2):
        settings = ModelSettings(models=["search"], positive_class="malignant", bootstrap=50, n_jobs=jobs,
                                 outer_folds=3, search_budget=8, search_top=2, search_families=CHEAP)
        train_models(X, y, settings, tmp_path / f"jobs{jobs}")
        texts.append((tmp_path / f"jobs{jobs}" / "metrics.csv").read_bytes())
    assert texts[0] == texts[1]
    card = (tmp_path / "jobs1" / "models" / "search" / "model_card.json").read_text()
    assert '"family_wins"' in card and '"chosen_per_outer_fold"' in card and '"family_outer_auc"' in card
    families = [(tmp_path / f"jobs{jobs}" / "search_families.csv").read_bytes() for jobs in (1, 2)]
    assert families[0] == families[1]


def test_tree_importance_selection_keeps_the_features_the_label_depends_on():
    rng = np.random.default_rng(4)
    y = np.tile([0, 1], 40)
    X = rng.normal(size=(80, 10))
    X[:, 3] += 2.0 * y
    X[:, 7] += 1.0 * y
    selector = FeatureSelector(method="trees", k=2).fit(X, y)
    assert selector.get_support(indices=True).tolist() == [3, 7]
    assert selector.scores_.sum() == pytest.approx(1.0) and int(np.argmax(selector.scores_)) == 3


def test_each_familys_outer_auc_is_kept_as_information_and_matches_the_winner():
    n = 60
    X, y = _balanced_table(5, n, 6, shift=1.5)
    settings = ModelSettings(models=["search"], outer_folds=3, search_budget=8, search_top=1,
                             search_families=["logreg_l2", "naive_bayes"], search_selections=["none", "univariate"])
    fits = nested_cv(X, y, settings).folds["search"]
    for fit in fits:
        # the winner is its family's best configuration, refitted on the same outer training fold
        np.testing.assert_allclose(fit.family_test_prob[fit.best_params["family"]], fit.test_prob)
    table = family_outer_aucs(fits, y, roc_auc)
    assert table["family"].tolist() == ["logreg_l2", "naive_bayes"] and table["cases"].tolist() == [n, n]
    assert table["outer_folds_won"].sum() == 3 and (table["note"] == FAMILY_AUC_NOTE).all()
    prob = np.empty(n)
    for fit in fits:
        prob[fit.test_idx] = fit.family_test_prob["naive_bayes"]
    assert table.set_index("family").loc["naive_bayes", "outer_auc"] == pytest.approx(roc_auc(y, prob), abs=1e-4)
    assert (table["outer_auc"] > 0.65).all()   # measured 0.73 and 0.71 (chance 0.5, SE ~0.07 at n = 60)


def test_no_default_l1_or_elastic_net_candidate_is_a_constant_model():
    # C under ~0.1 zeroed every coefficient: the default seed's four elastic nets all predicted a constant
    X, y = _balanced_table(6, 100, 30, shift=0.8)
    settings = ModelSettings(search_families=["logreg_l1", "logreg_en"])
    for candidate in draw_candidates(settings):
        pipeline = search_module.search_pipeline(settings).set_params(**{k: v[0] for k, v in candidate.items()})
        prob = pipeline.fit(X, y).predict_proba(X)[:, 1]
        assert np.ptp(prob) > 0.05, {k: v[0] for k, v in candidate.items() if k != "clf"}
