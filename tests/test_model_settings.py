"""ModelSettings is the `model:` section of a recipe: defaults that work, unknown keys rejected."""

import pytest
from pydantic import ValidationError

from radpipe.model import ModelSettings


def test_defaults_are_a_usable_recipe():
    settings = ModelSettings()
    assert settings.models == ["search"] and settings.search_budget == 24 and settings.search_top == 10
    assert (settings.outer_folds, settings.outer_repeats, settings.inner_folds, settings.seed) == (5, 1, 3, 42)
    assert settings.positive_class is None and settings.select_best_by == "auc"
    assert all(field.description for field in ModelSettings.model_fields.values())


def test_misspelt_key_is_rejected():
    with pytest.raises(ValidationError, match="outer_fold"):
        ModelSettings(outer_fold=10)


def test_unknown_model_names_the_choices():
    with pytest.raises(ValidationError, match="choose from"):
        ModelSettings(models=["svm", "deep_forest"])


def test_ensembles_pull_in_their_members():
    settings = ModelSettings(models=["logreg", "voting"], ensemble_members=["logreg", "rf"])
    assert settings.base_models() == ["logreg", "rf"]


def test_harmonise_needs_a_batch_column_and_the_batch_column_needs_harmonise():
    with pytest.raises(ValidationError, match="harmonise: combat needs batch_column"):
        ModelSettings(harmonise="combat")
    with pytest.raises(ValidationError, match="only used for harmonisation"):
        ModelSettings(batch_column="scanner")
    with pytest.raises(ValidationError, match="cannot harmonise a batch it was not fitted on"):
        ModelSettings(harmonise="combat", batch_column="centre", group_column="centre")
    with pytest.raises(ValidationError, match="harmonise"):
        ModelSettings(harmonise="neurocombat", batch_column="scanner")


def test_rebalance_choices_and_the_model_card_summary():
    with pytest.raises(ValidationError, match="'smote', 'random_over' or 'random_under'"):
        ModelSettings(rebalance="adasyn")
    default = ModelSettings().cv_summary()
    assert (default["harmonise"], default["batch_column"], default["rebalance"]) == (None, None, None)
    summary = ModelSettings(harmonise="combat", batch_column="scanner", rebalance="smote").cv_summary()
    assert (summary["harmonise"], summary["batch_column"], summary["rebalance"]) == ("combat", "scanner", "smote")


def test_cv_summary_names_the_inner_scoring_and_the_strata():
    families = ModelSettings(models=["svm", "rf", "xgb"]).cv_summary()
    assert families["outer"] == "RepeatedStratifiedKFold(5 folds x 1 repeats)"          # binary cards unchanged
    assert families["inner"] == "grid search, 3-fold stratified CV, scoring roc_auc" and "search_budget" not in families
    joint = ModelSettings().cv_summary()
    assert joint["inner"] == "joint random search, 3-fold stratified CV, scoring roc_auc" and joint["search_budget"] == 24
    assert ModelSettings().cv_summary(scoring="roc_auc_ovr")["inner"].endswith("scoring roc_auc_ovr")
    harmonised = ModelSettings(models=["svm"], harmonise="combat", batch_column="scanner").cv_summary()
    assert harmonised["outer"].startswith("RepeatedStratifiedKFold(5 folds x 1 repeats), stratified on outcome x batch")
    assert harmonised["inner"].startswith("grid search, 3-fold stratified CV on outcome x batch (on")
