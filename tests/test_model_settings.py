"""ModelSettings is the `model:` section of a recipe: defaults that work, unknown keys rejected."""

import pytest
from pydantic import ValidationError

from radpipe.model import ModelSettings


def test_defaults_are_a_usable_recipe():
    settings = ModelSettings()
    assert settings.models == ["svm", "rf", "xgb"]
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
