"""Nomograms of logistic models: the points read off the scales give back the model's probabilities."""

import numpy as np
import pandas as pd
import pytest

from radpipe.explain.nomogram import nomogram_scales, write_nomogram
from radpipe.model.clinical import build_clinical_pipeline, clinical_values
from radpipe.model.folder import MODELS_DIR
from radpipe.model.radscore import LinearFormula, linear_formula, training_ranges, write_radscore
from radpipe.model.settings import ModelSettings

TYPES = {"age": "numeric", "grade": "categorical"}


@pytest.fixture(scope="module")
def combined():
    """A fitted combined model (3 selected radiomics features + age + grade) and its 60 training cases."""
    rng = np.random.default_rng(3)
    y = np.tile([0, 1], 30)
    X = pd.DataFrame({f"f{i}": rng.normal(size=60) + (0.8 * y if i < 2 else 0) for i in range(6)})
    X["age"] = rng.normal(60, 10, 60) + 6 * y
    X["grade"] = rng.choice(["Low", "Intermediate", "High"], 60)
    X[list(TYPES)] = clinical_values(X, TYPES)
    radiomics = [f"f{i}" for i in range(6)]
    pipe = build_clinical_pipeline(TYPES, ModelSettings(select_k=3), radiomics).fit(X, y)
    return pipe, X, training_ranges(X[["age", *radiomics]])


def _read_axis(table, feature, value):
    """The points a reader finds for ``value`` on the axis of ``feature``: linear between the ticks' points
    (a numeric axis) or the labelled tick (a category), as on the drawing."""
    ticks = table[table["axis"] == feature]
    if isinstance(value, str):
        return float(ticks.loc[ticks["value"] == value, "points"].iloc[0])
    values = ticks["value"].astype(float).to_numpy()
    points = ticks["points"].to_numpy()
    slope = (points[-1] - points[0]) / (values[-1] - values[0])
    return float(points[0] + slope * (value - values[0]))


def test_nomogram_reading_reproduces_predict_proba_for_20_patients(combined):
    pipe, X, ranges = combined
    scales = nomogram_scales(pipe, ranges)
    assert {s.feature for s in scales.predictors} == {*linear_formula(pipe).features}
    assert max(s.span for s in scales.predictors) * scales.points_per_lp == pytest.approx(100.0)
    patients = X.iloc[:20]
    table = scales.table(ticks=8)
    total = np.array([sum(_read_axis(table, s.feature, patients.iloc[i][s.feature]) for s in scales.predictors)
                      for i in range(20)])
    # the probability axis: interpolate the logit of its labelled ticks at the total points
    prob = table[table["axis"] == "probability"]
    logits = np.log(prob["value"].astype(float) / (1 - prob["value"].astype(float)))
    read = 1 / (1 + np.exp(-np.interp(total, prob["points"], logits, left=np.nan, right=np.nan)))
    expected = pipe.predict_proba(patients)[:, 1]
    inside = np.isfinite(read)  # totals beyond the outermost probability tick (0.01 / 0.99) cannot be read there
    assert inside.sum() >= 15
    assert np.abs(read[inside] - expected[inside]).max() < 0.01
    assert np.abs(scales.probability(total) - expected).max() < 0.01


def test_write_nomogram_draws_the_folders_logistic_model(tmp_path, combined):
    pipe, _, ranges = combined
    model_dir = tmp_path / "models"
    assert write_nomogram(model_dir, tmp_path / "explain") is None  # no logistic model: nothing drawn
    write_radscore(pipe, model_dir / MODELS_DIR / "combined", ranges=ranges)
    png = write_nomogram(model_dir, tmp_path / "explain")
    assert png == tmp_path / "explain" / "nomogram.png" and png.stat().st_size > 10_000
    ticks = pd.read_csv(tmp_path / "explain" / "nomogram.csv")
    assert set(ticks["axis"]) == {"age", "grade", "probability", *linear_formula(pipe).features}
    assert set(ticks.loc[ticks["axis"] == "grade", "value"]) == {"Low", "Intermediate", "High"}
    # the formula read back from radscore.csv scores like the pipeline
    formula = LinearFormula.read_csv(model_dir / MODELS_DIR / "combined" / "radscore.csv")
    X = combined[1]
    assert np.abs(formula.score(X) - pipe.decision_function(X)).max() < 1e-9
