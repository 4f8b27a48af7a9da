"""Time-to-event outcomes: survival pipelines, their metrics against the libraries', leakage, refusals,
the model folder, predict and the frozen cut-off on an external cohort."""

from __future__ import annotations

import json
import time as clock

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("sksurv")
pytest.importorskip("statsmodels")

from sksurv.metrics import (  # noqa: E402
    concordance_index_censored,
    concordance_index_ipcw,
    cumulative_dynamic_auc,
)

from radpipe.errors import ConfigError  # noqa: E402
from radpipe.model.folder import ModelFolder  # noqa: E402
from radpipe.model.inputs import survival_training_inputs  # noqa: E402
from radpipe.model.persist import load_model  # noqa: E402
from radpipe.model.prediction import predict  # noqa: E402
from radpipe.model.settings import ModelSettings  # noqa: E402
from radpipe.model.survival import (  # noqa: E402
    SurvivalSelector,
    fit_survival_models,
    harrell_c,
    hazard_ratio,
    logrank_p,
    survival_array,
    survival_at,
    survival_metric_columns,
    survival_prediction_columns,
    time_dependent_auc,
    uno_c,
)

OUTCOME = {"type": "survival", "time": "t", "event": "e"}


def cohort(n: int = 90, n_noise: int = 5, effect: float = 1.2, seed: int = 0):
    """A synthetic cohort whose hazard grows with feature 'signal' (effect 0: pure noise)."""
    rng = np.random.default_rng(seed)
    index = pd.Index([f"c{i:03d}" for i in range(n)], name="case_id")
    X = pd.DataFrame(rng.normal(size=(n, n_noise + 1)), index=index,
                     columns=["signal", *(f"noise{i}" for i in range(n_noise))])
    event_time = rng.exponential(200 * np.exp(-effect * X["signal"].to_numpy()))
    censor_time = rng.uniform(50, 600, n)
    table = pd.DataFrame({"t": np.ceil(np.minimum(event_time, censor_time)),
                          "e": (event_time <= censor_time).astype(int)}, index=index)
    return X, table


def settings(**kw) -> ModelSettings:
    base = dict(outcome=OUTCOME, bootstrap=0, outer_folds=3, select_k=3, seed=1)
    return ModelSettings(**{**base, **kw})


# ---------------------------------------------------------------- metrics equal the libraries'


def test_concordance_and_td_auc_equal_scikit_survival():
    X, table = cohort()
    event, time = table["e"].to_numpy(bool), table["t"].to_numpy(float)
    risk = X["signal"].to_numpy() + np.random.default_rng(3).normal(0, 0.5, len(X))
    y = survival_array(event, time)
    assert harrell_c(event, time, risk) == concordance_index_censored(event, time, risk)[0]
    assert uno_c(y, event, time, risk) == pytest.approx(concordance_index_ipcw(y, y, risk, tau=time.max())[0])
    horizons = list(np.percentile(time[event], [25, 50, 75]))
    ours = time_dependent_auc(y, event, time, risk, horizons)
    theirs = cumulative_dynamic_auc(y, y, risk, horizons)[0]
    np.testing.assert_allclose(ours, theirs)
    assert 0.6 < harrell_c(event, time, risk) < 0.9  # the risk carries the signal


def test_logrank_and_hazard_ratio_match_statsmodels():
    from statsmodels.duration.hazard_regression import PHReg
    from statsmodels.duration.survfunc import survdiff

    X, table = cohort(seed=2)
    event, time = table["e"].to_numpy(int), table["t"].to_numpy(float)
    high = X["signal"].to_numpy() > 0
    _, p_statsmodels = survdiff(time, event, high.astype(int))
    assert logrank_p(event, time, high) == pytest.approx(p_statsmodels, rel=1e-6)
    assert logrank_p(event, time, high) < 0.01
    hr, low, up = hazard_ratio(event, time, high)
    fit = PHReg(time, high[:, None].astype(float), status=event).fit()
    assert hr == pytest.approx(np.exp(fit.params[0]))
    assert low < hr < up and hr > 1.5  # high 'signal' means a higher hazard


# ---------------------------------------------------------------- nested CV on synthetic cohorts


def test_signal_gives_high_nested_c_and_noise_about_half(tmp_path):
    X, table = cohort(n=120)
    result = fit_survival_models(survival_training_inputs(X, table, settings(models=["coxnet"])), tmp_path / "s")
    assert result.metrics.loc[0, "c_harrell"] > 0.75
    assert list(result.metrics.columns) == survival_metric_columns(
        json.loads((tmp_path / "s" / "model_card.json").read_text())["horizons"])
    Xn, tn = cohort(n=120, effect=0.0, seed=5)
    noise = fit_survival_models(survival_training_inputs(Xn, tn, settings(models=["coxnet"])), tmp_path / "n")
    assert abs(noise.metrics.loc[0, "c_harrell"] - 0.5) < 0.1


def test_selection_outside_the_folds_is_optimistic_inside_is_not(tmp_path):
    # pure noise, many features: picking the 'best' ones on all cases first makes noise look prognostic
    X, table = cohort(n=60, n_noise=60, effect=0.0, seed=7)
    y = survival_array(table["e"], table["t"])
    chosen = X.columns[SurvivalSelector(k=3).fit(X.to_numpy(), y).get_support()]
    leaky = fit_survival_models(survival_training_inputs(X[chosen], table, settings(models=["coxnet"],
                                                                                    selection="none")),
                                tmp_path / "leaky")
    honest = fit_survival_models(survival_training_inputs(X, table, settings(models=["coxnet"])),
                                 tmp_path / "honest")
    assert leaky.metrics.loc[0, "c_harrell"] > 0.62
    assert abs(honest.metrics.loc[0, "c_harrell"] - 0.5) < 0.1
    assert leaky.metrics.loc[0, "c_harrell"] - honest.metrics.loc[0, "c_harrell"] > 0.1


# ---------------------------------------------------------------- the model folder, predict, external cohort


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    X, table = cohort(n=90)
    Xe, te = cohort(n=40, seed=11)
    out = tmp_path_factory.mktemp("surv") / "models"
    inputs = survival_training_inputs(X, table, settings(models=["coxnet", "rsf"], bootstrap=30))
    result = fit_survival_models(inputs, out, external={"ext": (Xe, te)})
    return out, result, inputs, Xe


def test_folder_follows_the_contract(trained):
    out, result, inputs, _ = trained
    folder = ModelFolder(out)
    card = folder.card()
    assert card["outcome_type"] == "survival" and card["classes"] == [] and card["threshold"] is None
    assert card["outcome"] == {"time": "t", "event": "e", "time_unit": "days"}
    assert card["n_events"] == int(inputs.event.sum())
    assert card["censoring_fraction"] == pytest.approx(1 - inputs.event.mean())
    horizons = card["horizons"]
    assert len(horizons) == 3 and all(float(h).is_integer() for h in horizons)  # whole days
    predictions = folder.predictions()
    assert list(predictions.columns) == survival_prediction_columns(horizons)
    cv = predictions[predictions["cohort"] == "cv"]
    assert len(cv) == 2 * len(inputs.X)  # one row per case and model (1 repeat)
    # each out-of-fold case is grouped at its own fold's training cut-off
    assert ((cv["risk"] > cv["risk_cutoff"]) == (cv["risk_group"] == "high")).all()
    assert cv.groupby(["model", "fold"])["risk_cutoff"].nunique().eq(1).all()
    calibration = folder.calibration_survival()
    assert set(calibration["risk_tertile"]) == {"low", "middle", "high"}
    assert set(calibration["horizon"]) == set(horizons)
    metrics = folder.metrics()
    row = metrics[(metrics["cohort"] == "cv") & (metrics["model"] == result.best_model)].iloc[0]
    assert row["c_harrell_ci_low"] < row["c_harrell"] < row["c_harrell_ci_high"]
    assert row["ibs"] < row["ibs_null"]  # the model beats Kaplan–Meier
    assert "Risk cut-off" in folder.card_md() and "censored" in folder.card_md()
    assert folder.train_outcome()["event"].sum() == card["n_events"]


def test_external_cohort_uses_the_frozen_training_cutoff(trained):
    out, result, _, Xe = trained
    for model in ("coxnet", "rsf"):
        card = ModelFolder(out / "models" / model).card()
        ext = result.predictions[(result.predictions["cohort"] == "ext") & (result.predictions["model"] == model)]
        assert len(ext) == len(Xe) and ext["repeat"].isna().all()
        assert ext["risk_cutoff"].unique().tolist() == [card["risk_cutoff"]]
        # the cut-off is not the external cohort's median risk
        assert card["risk_cutoff"] != pytest.approx(ext["risk"].median())
        assert ((ext["risk"] > card["risk_cutoff"]) == (ext["risk_group"] == "high")).all()
    assert "ext" in set(result.metrics["cohort"])


def test_predict_on_a_saved_survival_model(trained):
    out, _, _, Xe = trained
    loaded = load_model(out)
    table = predict(loaded, Xe)
    horizons = loaded.card["horizons"]
    assert list(table.columns) == ["case_id", "risk", *(f"surv_{int(h)}" for h in horizons), "risk_group"]
    np.testing.assert_allclose(table["risk"], loaded.pipeline.predict(Xe[loaded.feature_names]))
    expected = survival_at(loaded.pipeline, Xe[loaded.feature_names], horizons)
    np.testing.assert_allclose(table[expected.columns].to_numpy(), expected.to_numpy())
    s = table[[f"surv_{int(h)}" for h in horizons]].to_numpy()
    assert (np.diff(s, axis=1) <= 1e-12).all()  # survival does not rise with time
    assert set(table["risk_group"]) <= {"high", "low"}


def test_cli_train_and_predict(tmp_path):
    from typer.testing import CliRunner

    from radpipe.cli import app

    X, table = cohort(n=60)
    X.reset_index().to_csv(tmp_path / "features.csv", index=False)
    table.rename(columns={"t": "os_days", "e": "os_event"}).reset_index().to_csv(tmp_path / "surv.csv", index=False)
    runner = CliRunner()
    result = runner.invoke(app, ["train", str(tmp_path / "features.csv"), "--labels", str(tmp_path / "surv.csv"),
                                 "--time", "os_days", "--event", "os_event", "--models", "coxnet",
                                 "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert "Harrell's C" in result.output
    result = runner.invoke(app, ["predict", str(tmp_path / "m"), str(tmp_path / "features.csv"),
                                 "--out", str(tmp_path / "p.csv")])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(tmp_path / "p.csv").columns[:2].tolist() == ["case_id", "risk"]


# ---------------------------------------------------------------- refusals (exit 2, the case named)


@pytest.mark.parametrize("column, value, expected", [
    ("t", -5, "negative for case(s) ['c003']"),
    ("t", None, "have no 't': ['c003']"),
    ("e", 2, "case(s) ['c003'] have ['2']"),
    ("e", "dead", "case(s) ['c003'] have ['dead']"),
])
def test_bad_survival_tables_are_refused_naming_the_case(column, value, expected):
    X, table = cohort(n=30)
    table = table.astype(object)
    table.loc["c003", column] = value
    with pytest.raises(ConfigError, match=None) as caught:
        survival_training_inputs(X, table, settings())
    assert expected in str(caught.value)


def test_no_events_and_too_few_events_are_refused():
    X, table = cohort(n=30)
    with pytest.raises(ConfigError, match="no case had the event"):
        survival_training_inputs(X, table.assign(e=0), settings())
    few = table.assign(e=0)
    few.iloc[0, 1] = 1
    with pytest.raises(ConfigError, match="has 1 case"):
        survival_training_inputs(X, few, settings())
    three = table.assign(e=0)
    three.iloc[:3, 1] = 1  # 3 events: outer folds reduced from 5 to 3, inner to 2
    plan = survival_training_inputs(X, three, settings(outer_folds=5)).folds
    assert (plan.outer, plan.inner) == (3, 2) and plan.reduced


def test_outcome_columns_in_the_feature_table_are_refused():
    X, table = cohort(n=30)
    with pytest.raises(ConfigError, match="never be a covariate"):
        survival_training_inputs(X.assign(t=table["t"]), table, settings())


def test_cli_bad_table_exits_2(tmp_path):
    from typer.testing import CliRunner

    from radpipe.cli import app

    X, table = cohort(n=30)
    table.loc["c007", "t"] = -1
    X.reset_index().to_csv(tmp_path / "f.csv", index=False)
    table.reset_index().to_csv(tmp_path / "s.csv", index=False)
    result = CliRunner().invoke(app, ["train", str(tmp_path / "f.csv"), "--labels", str(tmp_path / "s.csv"),
                                      "--time", "t", "--event", "e", "--out", str(tmp_path / "m")])
    assert result.exit_code == 2
    assert "c007" in result.output


def test_settings_refuse_classifiers_for_survival_and_default_to_survival_models():
    assert ModelSettings(outcome=OUTCOME).models == ["coxnet", "rsf", "gbsa"]
    with pytest.raises(ValueError, match="classifiers"):
        ModelSettings(outcome=OUTCOME, models=["rf"])
    with pytest.raises(ValueError, match="time-to-event"):
        ModelSettings(models=["coxnet"])
    with pytest.raises(ValueError, match="mrmr"):
        ModelSettings(outcome=OUTCOME, selection="mrmr")


# ---------------------------------------------------------------- real data


@pytest.mark.slow
def test_gbsg2_nested_c_index_per_model(tmp_path, capsys):
    from sksurv.datasets import load_gbsg2

    features, outcome = load_gbsg2()
    X = pd.get_dummies(features, drop_first=True, dtype=float)
    X.index = pd.Index([f"g{i:03d}" for i in range(len(X))], name="case_id")
    table = pd.DataFrame({"t": outcome["time"], "e": outcome["cens"].astype(int)}, index=X.index)
    start = clock.perf_counter()
    result = fit_survival_models(survival_training_inputs(X, table, settings(select_k=20, bootstrap=0,
                                                                             outer_folds=5)), tmp_path)
    seconds = clock.perf_counter() - start
    cv = result.metrics.set_index("model")["c_harrell"]
    with capsys.disabled():
        print(f"\nGBSG2 nested Harrell's C: {cv.round(3).to_dict()} in {seconds:.0f} s")
    # scikit-survival's documentation reports about 0.68 for a random survival forest on a held-out split
    assert 0.64 < cv["rsf"] < 0.72
    assert (cv > 0.62).all()


def test_without_the_extra_classifiers_train_and_survival_names_the_install(monkeypatch, tmp_path):
    import sys

    from radpipe.model.survival import require_survival
    from radpipe.model.train import train_models

    for module in ("sksurv", "sksurv.metrics", "sksurv.linear_model"):
        monkeypatch.setitem(sys.modules, module, None)  # as if scikit-survival were not installed
    with pytest.raises(ConfigError, match=r'pip install "radpipe\[survival\]"'):
        require_survival()
    X, table = cohort(n=40)
    y = table["e"].map({0: "censored", 1: "died"})
    result = train_models(X, y, ModelSettings(models=["logreg"], positive_class="died", bootstrap=0), tmp_path)
    assert 0.5 < result.metrics.loc[0, "auc"] <= 1.0


@pytest.mark.realdata
def test_sts_survival_recipe_validates(data_dir, monkeypatch):
    from typer.testing import CliRunner

    from radpipe.cli import app
    from radpipe.config import REPO_ROOT

    monkeypatch.setenv("RADPIPE_DATA", str(data_dir))
    result = CliRunner().invoke(app, ["validate", str(REPO_ROOT / "pipelines" / "sts_pet_survival.yaml")])
    assert result.exit_code == 0, result.output
    survival = pd.read_csv(data_dir / "sts_pet" / "survival.csv")
    assert f"{survival['os_event'].sum()} events, {(survival['os_event'] == 0).sum()} censored" in result.output


@pytest.mark.realdata
@pytest.mark.slow
def test_sts_survival_recipe_runs(data_dir, monkeypatch, tmp_path):
    from radpipe.config import REPO_ROOT, load_recipe
    from radpipe.pipeline import run_recipe

    monkeypatch.setenv("RADPIPE_DATA", str(data_dir))
    path = REPO_ROOT / "pipelines" / "sts_pet_survival.yaml"
    recipe = load_recipe(path)
    recipe.model.bootstrap = 200
    result = run_recipe(recipe, path.parent, tmp_path, explain=False)
    cv = result.metrics.set_index("model")
    assert list(cv.index) == ["coxnet", "rsf", "gbsa"] and (cv["n_events"] == 11).all()
    assert ((cv["c_harrell_ci_low"] < cv["c_harrell"]) & (cv["c_harrell"] < cv["c_harrell_ci_high"])).all()
    card = ModelFolder(tmp_path / "models").card()
    assert card["horizons"] == [365.0, 730.0, 1095.0] and card["outcome"]["time"] == "os_days"


@pytest.mark.realdata
def test_sts_survival_recipe_with_a_misspelt_event_column_exits_2(data_dir, monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from radpipe.cli import app
    from radpipe.config import REPO_ROOT

    monkeypatch.setenv("RADPIPE_DATA", str(data_dir))
    text = (REPO_ROOT / "pipelines" / "sts_pet_survival.yaml").read_text()
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text.replace("event: os_event", "event: os_evnt").replace(
        "params_file: params/pet_3d.yaml", f"params_file: {REPO_ROOT / 'pipelines' / 'params' / 'pet_3d.yaml'}"))
    monkeypatch.setenv("RADPIPE_DATASETS", str(REPO_ROOT / "datasets.yaml"))
    result = CliRunner().invoke(app, ["validate", str(recipe)])
    assert result.exit_code == 2, result.output
    assert "os_evnt" in result.output and "survival.csv" in result.output


def test_train_models_takes_a_survival_outcome_table(tmp_path):
    """The notebook entry point: train_models with settings.outcome trains survival models from a table."""
    import numpy as np
    import pandas as pd

    from radpipe.model import ModelSettings, train_models

    rng = np.random.default_rng(3)
    n = 60
    ids = pd.Index([f"c{i:02d}" for i in range(n)], name="case_id")
    signal = rng.normal(size=n)
    X = pd.DataFrame({"signal": signal, "noise": rng.normal(size=n)}, index=ids)
    time = rng.exponential(np.exp(-1.5 * signal)) * 1000 + 1
    event = (rng.uniform(size=n) < 0.8).astype(int)
    outcome = pd.DataFrame({"os_days": time, "os_event": event}, index=ids)
    settings = ModelSettings(outcome={"type": "survival", "time": "os_days", "event": "os_event"},
                             models=["coxnet"], bootstrap=0)
    result = train_models(X, outcome, settings, tmp_path)
    row = result.metrics[result.metrics["cohort"] == "cv"].iloc[0]
    assert row["model"] == "coxnet" and row["c_harrell"] > 0.7
    with pytest.raises(ConfigError, match="os_days"):
        train_models(X, outcome["os_days"], settings, tmp_path / "again")


@pytest.mark.realdata
def test_a_dataset_declares_its_survival_outcome_for_every_recipe(data_dir, tmp_path):
    """datasets.yaml's sts_pet_survival says outcome: {type: survival, ...}: a recipe with no model section
    validates as a survival study (the survival models, 11 deaths), and a recipe naming classifiers is refused."""
    from typer.testing import CliRunner

    from radpipe.cli import app

    plain = tmp_path / "plain.yaml"
    plain.write_text("name: os\ndataset: sts_pet_survival\n")
    result = CliRunner().invoke(app, ["validate", str(plain)])
    assert result.exit_code == 0, result.output
    assert "survival outcome: time 'os_days', event 'os_event'" in result.output and "11 events" in result.output

    classifiers = tmp_path / "classifiers.yaml"
    classifiers.write_text("name: os\ndataset: sts_pet_survival\nmodel:\n  models: [svm, rf]\n")
    refused = CliRunner().invoke(app, ["validate", str(classifiers)])
    assert refused.exit_code == 2
    assert "declares a survival outcome" in refused.output and "os_days" in refused.output
