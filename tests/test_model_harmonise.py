"""ComBat harmonisation and class rebalancing: fitted inside each training fold, never on the cases they are tested on."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pandas as pd
import pytest
from neuroCombat import neuroCombat
from sklearn.base import clone
from sklearn.dummy import DummyClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict, cross_validate
from sklearn.utils.estimator_checks import check_estimator

from radpipe.errors import ConfigError
from radpipe.model import ComBatHarmoniser, ModelSettings, build_pipeline
from radpipe.model.inputs import training_inputs

SCANNERS = ("GE", "Philips", "Siemens")
SHIFT = {"GE": 1.5, "Philips": -1.5, "Siemens": 0.0}     # additive scanner effect
SCALE = {"GE": 1.0, "Philips": 2.0, "Siemens": 0.6}      # multiplicative scanner effect


def scanner_cohort(seed=0, n_per=40, p=8, prevalence=None, signal=0.0):
    """Features with an additive + multiplicative effect per scanner; the label's prevalence may differ by scanner."""
    rng = np.random.default_rng(seed)
    scanner = np.repeat(SCANNERS, n_per)
    prevalence = prevalence or dict.fromkeys(SCANNERS, 0.5)
    y = (rng.random(len(scanner)) < np.array([prevalence[s] for s in scanner])).astype(int)
    X = rng.normal(size=(len(y), p))
    X[:, :3] += signal * y[:, None]
    for s in SCANNERS:
        rows = scanner == s
        X[rows] = X[rows] * SCALE[s] + SHIFT[s] * rng.uniform(0.5, 1.5, p)
    table = pd.DataFrame(X, columns=[f"original_firstorder_f{i}" for i in range(p)],
                         index=pd.Index([f"case{i:03d}" for i in range(len(y))], name="case_id"))
    table["scanner"] = scanner
    return table, y


def features_of(table):
    return table.drop(columns="scanner").to_numpy()


def reference_combat(table):
    """neuroCombat called directly on (features x cases), as its authors document it."""
    with contextlib.redirect_stdout(io.StringIO()):
        return neuroCombat(features_of(table).T, pd.DataFrame({"scanner": table["scanner"].to_numpy()}), "scanner")


def batch_spread(features, scanner):
    """Largest gap between scanner means, and largest ratio of scanner SDs, over features."""
    means = np.array([features[scanner == s].mean(axis=0) for s in SCANNERS])
    sds = np.array([features[scanner == s].std(axis=0) for s in SCANNERS])
    return float(np.ptp(means, axis=0).max()), float((sds.max(axis=0) / sds.min(axis=0)).max())


def test_combat_removes_scanner_offsets_and_scales():
    table, _ = scanner_cohort()
    out = ComBatHarmoniser("scanner").set_output(transform="pandas").fit_transform(table)
    assert list(out.columns) == [c for c in table.columns if c != "scanner"]
    assert out.index.equals(table.index)
    gap_before, ratio_before = batch_spread(features_of(table), table["scanner"].to_numpy())
    gap_after, ratio_after = batch_spread(out.to_numpy(), table["scanner"].to_numpy())
    assert gap_before > 2.0 and ratio_before > 2.5
    assert gap_after < 0.35 and ratio_after < 1.5


def test_training_transform_equals_neurocombat_called_directly():
    table, _ = scanner_cohort(seed=1)
    harmoniser = ComBatHarmoniser("scanner").fit(table)
    reference = reference_combat(table)
    np.testing.assert_allclose(harmoniser.transform(table), reference["data"].T, rtol=0, atol=1e-10)
    np.testing.assert_allclose(harmoniser.gamma_star_, reference["estimates"]["gamma.star"], atol=1e-12)
    assert harmoniser.batches_.tolist() == list(SCANNERS) and harmoniser.empirical_bayes_


def test_test_rows_are_harmonised_with_training_estimates_only():
    table, _ = scanner_cohort(seed=2)
    train, test = table.iloc[::2], table.iloc[1::2]
    harmoniser = ComBatHarmoniser("scanner").fit(train)
    train_only, everything = reference_combat(train)["estimates"], reference_combat(table)["estimates"]
    # the cohort is built so that including the test rows would change the estimates ...
    assert np.abs(everything["gamma.star"] - train_only["gamma.star"]).max() > 0.01
    # ... and the harmoniser's are those of the training rows alone
    np.testing.assert_allclose(harmoniser.gamma_star_, train_only["gamma.star"], atol=1e-12)
    np.testing.assert_allclose(harmoniser.delta_star_, train_only["delta.star"], atol=1e-12)

    # test rows are transformed one by one: changing them changes nothing else
    moved = test.copy()
    moved.iloc[:, :3] += 100.0
    refit = ComBatHarmoniser("scanner").fit(train)
    np.testing.assert_array_equal(refit.transform(train), harmoniser.transform(train))
    np.testing.assert_allclose(harmoniser.transform(moved)[:, 3:], harmoniser.transform(test)[:, 3:])


def test_each_cv_fold_fits_combat_on_its_training_rows():
    table, y = scanner_cohort(seed=3)
    pipeline = build_pipeline("logreg", ModelSettings(harmonise="combat", batch_column="scanner", select_k=3))
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    result = cross_validate(pipeline, table, y, cv=cv, return_estimator=True, return_indices=True)
    for fitted, train in zip(result["estimator"], result["indices"]["train"], strict=True):
        expected = reference_combat(table.iloc[train])["estimates"]["gamma.star"]
        np.testing.assert_allclose(fitted.named_steps["harmonise"].gamma_star_, expected, atol=1e-10)


def test_unseen_scanner_is_an_error_naming_it():
    table, _ = scanner_cohort()
    harmoniser = ComBatHarmoniser("scanner").fit(table[table["scanner"] != "Siemens"])
    with pytest.raises(ValueError, match=r"\['Siemens'\].*not in the training data.*'GE', 'Philips'"):
        harmoniser.transform(table)


def test_batches_too_small_or_missing_are_errors():
    table, _ = scanner_cohort(n_per=5)
    one_case = table.iloc[:11]          # 5 GE, 5 Philips, 1 Siemens
    with pytest.raises(ValueError, match=r"\{'Siemens': 1\}.*fewer than 2 training cases.*[Mm]erge"):
        ComBatHarmoniser("scanner").fit(one_case)
    with pytest.raises(ValueError, match="only one batch"):
        ComBatHarmoniser("scanner").fit(table.iloc[:5])
    gap = table.copy()
    gap.iloc[3, gap.columns.get_loc("scanner")] = None
    with pytest.raises(ValueError, match="1 case.* no value .*batch column 'scanner'"):
        ComBatHarmoniser("scanner").fit(gap)
    holes = table.copy()
    holes.iloc[0, 0] = np.nan
    with pytest.raises(ValueError, match="impute them first"):
        ComBatHarmoniser("scanner").fit(holes)
    with pytest.raises(ValueError, match="no batch column 'site'"):
        ComBatHarmoniser("site").fit(table)


def test_constant_features_keep_their_value_and_numeric_batches_work():
    table, _ = scanner_cohort()
    table["constant"] = 7.0
    table["scanner"] = table["scanner"].map({"GE": 1, "Philips": 2, "Siemens": 3})
    harmoniser = ComBatHarmoniser("scanner").set_output(transform="pandas").fit(table)
    out = harmoniser.transform(table)
    assert (out["constant"] == 7.0).all() and not harmoniser.harmonised_[-1]
    assert harmoniser.batches_.tolist() == ["1", "2", "3"]
    floats = table.assign(scanner=table["scanner"].astype(float))   # 2.0 is scanner 2
    np.testing.assert_allclose(harmoniser.transform(floats), out.to_numpy())


class _BatchFromValue(ComBatHarmoniser):
    """For scikit-learn's generic checks only: their random data has no batch column, so the batch of a row is
    derived from the value in ``batch_column`` (two batches, the same for a row wherever it appears)."""

    def _split(self, X, reset):
        batch, features = super()._split(X, reset)
        value = batch.astype(float)
        return np.where((np.floor(value * 10) + np.floor(value)) % 2 == 0, "even", "odd"), features


def test_harmoniser_honours_the_estimator_contract():
    check_estimator(_BatchFromValue(batch_column=0))
    harmoniser = ComBatHarmoniser(batch_column="scanner")
    assert clone(harmoniser).get_params() == {"batch_column": "scanner"}
    table, _ = scanner_cohort()
    assert "scanner" not in harmoniser.fit(table).get_feature_names_out()


def test_pipeline_imputes_then_harmonises_and_hides_the_batch_from_the_estimator():
    table, y = scanner_cohort()
    table.iloc[[0, 50, 90], 1] = np.nan
    pipeline = build_pipeline("logreg", ModelSettings(harmonise="combat", batch_column="scanner", select_k=4))
    assert [name for name, _ in pipeline.steps][:3] == ["impute", "harmonise", "variance"]
    pipeline.fit(table, y)
    names = list(pipeline[:-1].get_feature_names_out())
    seen = pipeline[:-1].transform(table)
    assert "scanner" not in names and list(seen.columns) == names and len(names) == 4
    assert seen.index.equals(table.index)
    assert pipeline.predict_proba(table.iloc[:5]).shape == (5, 2)


def cv_auc(table, y, settings):
    from radpipe.model.validate import nested_cv

    cv = nested_cv(table if settings.harmonise else table.drop(columns="scanner"), y, settings)
    prob = np.empty(len(y))
    for fit in cv.folds["logreg"]:
        prob[fit.test_idx] = np.asarray(fit.test_prob).reshape(len(fit.test_idx), -1)[:, -1]
    return roc_auc_score(y, prob)


def test_nested_cv_no_longer_learns_the_scanner_once_harmonised():
    # the outcome depends only on the scanner (90% / 50% / 10% positive), the features only on the scanner too:
    # without harmonisation the model predicts the scanner; with it, there is nothing left to learn
    table, y = scanner_cohort(seed=0, prevalence={"GE": 0.9, "Siemens": 0.5, "Philips": 0.1}, p=12)
    plain = ModelSettings(models=["logreg"], select_k=5, bootstrap=0)
    harmonised = plain.model_copy(update={"harmonise": "combat", "batch_column": "scanner"})
    before, after = cv_auc(table, y, plain), cv_auc(table, y, harmonised)
    assert before > 0.8
    assert abs(after - 0.5) < 0.15


def test_harmonising_recovers_a_signal_hidden_by_scanner_noise():
    # the outcome is unrelated to the scanner and shifts three features; scanner effects mask it
    table, y = scanner_cohort(seed=1, signal=0.8, p=12)
    plain = ModelSettings(models=["logreg"], select_k=5, bootstrap=0)
    harmonised = plain.model_copy(update={"harmonise": "combat", "batch_column": "scanner"})
    before, after = cv_auc(table, y, plain), cv_auc(table, y, harmonised)
    assert after > 0.72 and after > before + 0.05


# ---------------------------------------------------------------- rebalancing


def imbalanced(seed=0, n_major=45, n_minor=15, p=6):
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(n_major, int), np.ones(n_minor, int)]
    X = pd.DataFrame(rng.normal(size=(len(y), p)) + 0.7 * y[:, None], columns=[f"f{i}" for i in range(p)])
    return X, y


def test_default_pipeline_is_unchanged_by_the_new_options():
    from sklearn.pipeline import Pipeline

    pipeline = build_pipeline("rf", ModelSettings())
    assert type(pipeline) is Pipeline
    assert [name for name, _ in pipeline.steps] == ["impute", "variance", "scale", "decorrelate", "select", "clf"]


@pytest.mark.parametrize("kind", ["smote", "random_over", "random_under"])
def test_rebalancing_resamples_only_the_training_data(kind):
    from imblearn.pipeline import Pipeline as ImbalancedPipeline

    X, y = imbalanced()
    pipeline = build_pipeline("logreg", ModelSettings(rebalance=kind, select_k=3))
    assert isinstance(pipeline, ImbalancedPipeline)
    assert [name for name, _ in pipeline.steps][3:5] == ["decorrelate", "rebalance"]
    # a probe classifier: DummyClassifier's class_prior_ is the class balance it was fitted on
    probe = pipeline.set_params(clf=DummyClassifier(strategy="prior"))
    train, test = np.arange(0, 60, 2), np.arange(1, 60, 2)
    probe.fit(X.iloc[train], y[train])
    assert probe[-1].class_prior_.tolist() == [0.5, 0.5]           # trained on balanced classes
    assert probe.predict_proba(X.iloc[test]).shape == (30, 2)       # every test row, none added or removed
    assert len(probe[:-1].transform(X.iloc[test])) == 30
    assert list(probe[:-1].get_feature_names_out()) == list(probe[:-1].transform(X.iloc[test]).columns)


def test_rebalanced_pipeline_cross_validates_with_out_of_fold_predictions_for_every_case():
    X, y = imbalanced(seed=1)
    pipeline = build_pipeline("logreg", ModelSettings(rebalance="smote", select_k=3))
    prob = cross_val_predict(pipeline, X, y, cv=StratifiedKFold(3, shuffle=True, random_state=0),
                             method="predict_proba")
    assert prob.shape == (60, 2) and roc_auc_score(y, prob[:, 1]) > 0.7


def test_harmonise_and_rebalance_together():
    table, y = scanner_cohort(prevalence={"GE": 0.3, "Philips": 0.3, "Siemens": 0.3})
    pipeline = build_pipeline("logreg", ModelSettings(harmonise="combat", batch_column="scanner",
                                                      rebalance="smote", select_k=3))
    pipeline.set_params(clf=DummyClassifier(strategy="prior")).fit(table, y)
    assert pipeline[-1].class_prior_.tolist() == [0.5, 0.5]
    assert "scanner" not in pipeline[:-1].get_feature_names_out()


def test_train_models_harmonises_rebalances_and_records_both_on_the_model_card(tmp_path):
    import json

    from radpipe.model import train_models

    table, y = scanner_cohort(seed=1, signal=0.8, n_per=20)
    labels = pd.Series(np.where(y, "yes", "no"), index=table.index)
    settings = ModelSettings(models=["logreg"], harmonise="combat", batch_column="scanner", rebalance="smote",
                             select_k=4, bootstrap=0, positive_class="yes")
    result = train_models(table, labels, settings, tmp_path)
    card = json.loads((tmp_path / "model_card.json").read_text())
    assert card["cv"]["harmonise"] == "combat" and card["cv"]["batch_column"] == "scanner"
    assert card["cv"]["rebalance"] == "smote"
    assert "ComBatHarmoniser(batch_column='scanner')" in card["pipeline_steps"]
    assert "scanner" not in card["selected_features"] and len(card["selected_features"]) == 4
    assert result.metrics.loc[0, "auc"] > 0.7


# ---------------------------------------------------------------- data checks and recipe pre-flight


def test_training_data_keeps_the_batch_column_and_checks_it():
    table, y = scanner_cohort()
    labels = pd.Series(np.where(y, "yes", "no"), index=table.index)
    settings = ModelSettings(models=["logreg"], positive_class="yes", harmonise="combat", batch_column="scanner")
    X = training_inputs(table, labels, settings).X
    assert X["scanner"].tolist() == table["scanner"].tolist()
    assert all(dtype == np.float64 for dtype in X.drop(columns="scanner").dtypes)
    plain = training_inputs(table, labels, settings.model_copy(update={"harmonise": None, "batch_column": None}))
    assert plain.dropped == {"scanner": "text, not a feature"}  # not harmonising: the scanner is no feature
    gap = table.copy()
    gap.loc["case007", "scanner"] = None
    with pytest.raises(ConfigError, match="1 case.*no 'scanner'.*case007"):
        training_inputs(gap, labels, settings)
    with pytest.raises(ConfigError, match="no batch column 'site'"):
        training_inputs(table, labels, settings.model_copy(update={"batch_column": "site"}))


def _recipe_run(tmp_path, labels_csv: str, **model):
    from radpipe.config import Recipe
    from radpipe.pipeline import run_recipe
    from tests.synth import make_cohort

    folder = make_cohort(tmp_path / "cohort", n=8)
    (folder / "labels.csv").write_text(labels_csv)
    # logreg: 4 cases per class leave too few for the SVM's calibration folds, refused before the batch check
    recipe = Recipe(name="x", dataset=str(folder), model=ModelSettings(**{"positive_class": "b", "models": ["logreg"],
                                                                          **model}))
    with pytest.raises(ConfigError) as info:
        run_recipe(recipe, tmp_path, tmp_path / "out", explain=False)
    assert not (tmp_path / "out").exists()      # refused before extraction started
    return str(info.value)


def _labels(scanners):
    return "case_id,label,scanner\n" + "".join(
        f"case{i:02d},{'b' if i % 2 else 'a'},{scanner}\n" for i, scanner in enumerate(scanners))


def test_recipe_batch_column_missing_from_labels_stops_before_extracting(tmp_path):
    message = _recipe_run(tmp_path, _labels(["GE"] * 8), harmonise="combat", batch_column="centre")
    assert "labels.csv" in message and "model.batch_column" in message
    assert "no batch column 'centre'" in message and "'scanner'" in message


def test_recipe_batch_too_small_for_nested_cv_stops_before_extracting(tmp_path):
    message = _recipe_run(tmp_path, _labels(["GE"] * 6 + ["Siemens"] * 2), harmonise="combat",
                          batch_column="scanner", outer_folds=2, inner_folds=2)
    assert "{'GE': 6, 'Siemens': 2}" in message and "fewer than 16" in message and "model.batch_column" in message


def test_recipe_external_cohort_from_an_unseen_scanner_stops_before_extracting(tmp_path):
    from radpipe.config import Recipe
    from radpipe.pipeline import run_recipe
    from tests.synth import make_cohort

    training = make_cohort(tmp_path / "train", n=16)
    (training / "labels.csv").write_text(_labels(["GE", "Siemens"] * 8))
    external = make_cohort(tmp_path / "external", n=4)
    (external / "labels.csv").write_text(_labels(["GE", "Philips", "GE", "Philips"]))
    recipe = Recipe(name="x", dataset=str(training), external=[str(external)],
                    model=ModelSettings(harmonise="combat", batch_column="scanner", positive_class="b"))
    with pytest.raises(ConfigError, match=r"external cohort .* \['Philips'\] .* lacks .*\['GE', 'Siemens'\]"):
        run_recipe(recipe, tmp_path, tmp_path / "out", explain=False)
    assert not (tmp_path / "out").exists()


def test_recipe_harmonise_without_batch_column_names_file_and_key(tmp_path):
    from radpipe.config import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text("name: x\ndataset: d\nmodel:\n  harmonise: combat\n")
    with pytest.raises(ConfigError, match="r.yaml.*needs batch_column"):
        load_recipe(path)


def test_cli_train_with_a_batch_column_the_labels_lack_exits_2(tmp_path):
    from typer.testing import CliRunner

    from radpipe.cli import app

    table, y = scanner_cohort(n_per=4)
    table.drop(columns="scanner").reset_index().to_csv(tmp_path / "features.csv", index=False)
    pd.DataFrame({"case_id": table.index, "label": y}).to_csv(tmp_path / "labels.csv", index=False)
    result = CliRunner().invoke(app, ["train", str(tmp_path / "features.csv"), "--labels",
                                      str(tmp_path / "labels.csv"), "--out", str(tmp_path / "m"),
                                      "--batch-column", "scanner"])
    assert result.exit_code == 2, result.output
    assert "no batch column 'scanner'" in result.output and "labels.csv" in result.output


# ---------------------------------------------------------------- folds stratified on outcome x batch


def test_outer_folds_are_stratified_on_outcome_and_batch_when_harmonising():
    from radpipe.model.validate import batch_values, outer_splits

    table, y = scanner_cohort(seed=4, prevalence={"GE": 0.8, "Philips": 0.2, "Siemens": 0.5}, n_per=30)
    harmonised = ModelSettings(harmonise="combat", batch_column="scanner", outer_folds=3)
    batches = batch_values(table, harmonised)
    strata = pd.Series([f"{label}|{batch}" for label, batch in zip(y, batches, strict=True)])
    assert strata.value_counts().min() >= 3
    for _, _, _, test in outer_splits(y, harmonised, batches=batches):
        # every outcome x scanner stratum is split as evenly as 3 folds allow
        share = strata.iloc[test].value_counts().reindex(strata.unique(), fill_value=0)
        assert (abs(share - strata.value_counts()[share.index] / 3) < 1).all()
    # without harmonisation (or without batches) the splits are the outcome-stratified ones, bit for bit
    plain = outer_splits(y, ModelSettings(outer_folds=3))
    assert batch_values(table, ModelSettings(outer_folds=3)) is None
    for (r1, f1, tr1, te1), (r2, f2, tr2, te2) in zip(plain, outer_splits(y, harmonised), strict=True):
        assert (r1, f1) == (r2, f2) and np.array_equal(tr1, tr2) and np.array_equal(te1, te2)


def test_a_stratum_smaller_than_the_folds_falls_back_to_the_outcome():
    from radpipe.model.validate import stratification_labels

    y = np.array([0, 1] * 10)
    batches = np.array(["GE"] * 16 + ["Siemens"] * 4, dtype=object)   # Siemens: 2 cases of each outcome
    assert stratification_labels(y, None, 5) is y
    assert stratification_labels(y, batches, 5) is y                   # 2 < 5 folds: the outcome alone
    key = stratification_labels(y, batches, 2)
    assert sorted(set(key)) == ["0|GE", "0|Siemens", "1|GE", "1|Siemens"]


def test_inner_splits_hold_every_batch_in_every_training_fold():
    from radpipe.model.validate import inner_cv, inner_splits

    table, _ = scanner_cohort(seed=5, n_per=12)
    y = np.tile([0, 1], 18)                       # 6 cases of each outcome x scanner stratum
    harmonised = ModelSettings(harmonise="combat", batch_column="scanner", inner_folds=3)
    splits = inner_splits(table, y, None, harmonised)
    assert isinstance(splits, list) and len(splits) == 3
    for train, test in splits:
        strata = pd.Series(y[test].astype(str)) + table["scanner"].iloc[test].to_numpy()
        assert strata.value_counts().to_dict() == {f"{o}{s}": 2 for o in "01" for s in SCANNERS}
        assert table["scanner"].iloc[train].value_counts().to_dict() == dict.fromkeys(SCANNERS, 8)
    # not harmonising: the seeded splitter itself, as before
    plain = inner_splits(table.drop(columns="scanner"), y, None, ModelSettings(inner_folds=3))
    assert repr(plain) == repr(inner_cv(ModelSettings(inner_folds=3), False))


def test_splits_json_says_what_the_outer_folds_were_stratified_on(tmp_path):
    from radpipe.model import train_models

    table, _ = scanner_cohort(seed=6, n_per=12, p=4)
    labels = pd.Series(np.tile(["no", "yes"], 18), index=table.index)   # 6 cases of each outcome x scanner
    settings = ModelSettings(models=["logreg"], harmonise="combat", batch_column="scanner", outer_folds=2,
                             inner_folds=2, select_k=2, bootstrap=0, search="random", n_iter=1, positive_class="yes")
    train_models(table, labels, settings, tmp_path)
    splits = json.loads((tmp_path / "splits.json").read_text())
    assert splits["stratified_on"] == "outcome x batch"
    for fold in splits["folds"]:
        train = table.loc[fold["train"]]
        assert (labels[train.index] + train["scanner"]).value_counts().to_dict() == {
            f"{o}{s}": 3 for o in ("no", "yes") for s in SCANNERS}


# ---------------------------------------------------------------- a saved harmonised model on new cases


@pytest.fixture(scope="module")
def saved_harmonised(tmp_path_factory):
    from radpipe.model import train_models

    out = tmp_path_factory.mktemp("saved")
    table, y = scanner_cohort(seed=7, signal=0.8, n_per=12, p=4)
    labels = pd.Series(np.where(y, "yes", "no"), index=table.index)
    settings = ModelSettings(models=["logreg"], harmonise="combat", batch_column="scanner", outer_folds=2,
                             inner_folds=2, select_k=2, bootstrap=0, search="random", n_iter=1, positive_class="yes")
    train_models(table, labels, settings, out)
    return out, table, labels


def test_predict_and_evaluate_take_the_text_batch_column(saved_harmonised):
    from radpipe.model import evaluate, load_model, predict

    out, table, labels = saved_harmonised
    loaded = load_model(out)
    assert loaded.batch_column == "scanner" and loaded.card["training_batches"] == dict.fromkeys(SCANNERS, 12)
    result = predict(loaded, table.iloc[::-1])      # any column order and case order
    expected = loaded.pipeline.predict_proba(table.iloc[::-1])[:, 1]
    np.testing.assert_allclose(result["y_prob"], expected, rtol=0, atol=0)
    assert evaluate(loaded, table, labels, n_boot=0).loc[0, "n"] == len(table)


def test_predict_names_a_missing_empty_or_unseen_batch(saved_harmonised):
    from radpipe.model import load_model, predict
    from radpipe.model.inputs import features_for_model

    out, table, _ = saved_harmonised
    loaded = load_model(out)
    with pytest.raises(ConfigError, match="needs each case's batch in a column 'scanner'.*--labels"):
        predict(loaded, table.drop(columns="scanner"))
    gap = table.copy()
    gap.loc["case003", "scanner"] = None
    with pytest.raises(ConfigError, match="1 case.* no 'scanner'.*case003"):
        predict(loaded, gap)
    with pytest.raises(ConfigError, match=r"\['Canon'\].*not in the model's training data"):
        predict(loaded, table.assign(scanner="Canon"))
    # from a labels table: the batch column joined by case id
    from_labels = features_for_model(loaded, table.drop(columns="scanner"), table[["scanner"]].iloc[::-1])
    pd.testing.assert_frame_equal(predict(loaded, from_labels), predict(loaded, table))
    with pytest.raises(ConfigError, match="neither the feature table nor the labels table"):
        features_for_model(loaded, table.drop(columns="scanner"), pd.DataFrame(index=table.index, data={"x": 1}))


def test_lime_holds_the_batch_at_the_case_own_value_and_never_reports_it(saved_harmonised):
    from radpipe.explain.lime_values import compute_lime
    from radpipe.model import load_model

    out, table, _ = saved_harmonised
    pipeline = load_model(out).pipeline
    seen: list[set] = []

    class Recording:
        def predict_proba(self, frame):
            assert list(frame.columns) == list(table.columns)   # the pipeline's column order
            seen.append(set(frame["scanner"]))
            return pipeline.predict_proba(frame)

    cases = table.iloc[[0, 12, 30]]                                # one case per scanner
    lime = compute_lime(Recording(), cases, table, positive_index=1, num_samples=40, top=4, fixed=["scanner"])
    assert seen == [{"GE"}, {"Philips"}, {"Siemens"}]
    assert len(lime) == 12 and "scanner" not in set(lime["feature"])


def test_smote_on_a_class_too_small_for_its_neighbours_is_refused_before_training(tmp_path):
    from radpipe.model import train_models

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(40, 4)), columns=list("abcd"),
                     index=pd.Index([f"c{i}" for i in range(40)], name="case_id"))
    y = pd.Series(["pos"] * 10 + ["neg"] * 30, index=X.index)  # 10 -> 8 outer-train -> 5 inner-train cases
    settings = ModelSettings(models=["logreg"], rebalance="smote", bootstrap=0, positive_class="pos")
    with pytest.raises(ConfigError, match=r"smallest class has 10 case\(s\), about 5 per inner") as caught:
        train_models(X, y, settings, tmp_path)
    assert caught.value.key == "model.rebalance"
    assert not (tmp_path / "metrics.csv").exists()
