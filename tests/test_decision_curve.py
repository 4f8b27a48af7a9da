"""Decision curves: net benefit as Vickers & Elkin define it, as dcurves computes it, and as train writes it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from radpipe.model import ModelSettings, train_models
from radpipe.model.decision_curve import DECISION_CURVE_COLUMNS, DEFAULT_THRESHOLDS, decision_curve
from radpipe.model.folder import ModelFolder


def _by_hand(y: np.ndarray, p: np.ndarray, pt: float) -> float:
    """Vickers & Elkin 2006: TP/n - FP/n * pt / (1 - pt), treating every case with p >= pt."""
    treated = p >= pt
    n = len(y)
    return np.sum(treated & (y == 1)) / n - np.sum(treated & (y == 0)) / n * pt / (1 - pt)


def _predictions(seed: int = 0, n: int = 80, repeats: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=n) < 0.35).astype(int)
    rows = []
    for model, strength in (("logreg", 1.5), ("rf", 0.5)):
        for r in range(repeats):
            p = 1 / (1 + np.exp(-(strength * (2 * y - 1) + rng.normal(0, 1, n) - 0.6)))
            rows.append(pd.DataFrame({"case_id": [f"c{i:03d}" for i in range(n)], "model": model, "repeat": r,
                                      "y_true": y, "y_prob": p, "cohort": "cv"}))
    ext_y = (rng.uniform(size=30) < 0.5).astype(int)
    for model in ("logreg", "rf"):
        rows.append(pd.DataFrame({"case_id": [f"e{i:02d}" for i in range(30)], "model": model, "repeat": np.nan,
                                  "y_true": ext_y, "y_prob": rng.uniform(0.05, 0.95, 30), "cohort": "site_b"}))
    return pd.concat(rows, ignore_index=True)


def test_net_benefit_equals_the_definition_and_dcurves():
    from dcurves import dca

    predictions = _predictions()
    table = decision_curve(predictions)
    assert list(table.columns) == DECISION_CURVE_COLUMNS
    assert table["threshold"].tolist()[:3] == [0.01, 0.02, 0.03] and len(DEFAULT_THRESHOLDS) == 99
    assert list(dict.fromkeys(table["cohort"])) == ["cv", "site_b"]
    for (cohort, model), part in table.groupby(["cohort", "model"]):
        rows = predictions[(predictions["cohort"] == cohort) & (predictions["model"] == model)]
        mean = rows.groupby("case_id").agg(y=("y_true", "first"), p=("y_prob", "mean"))  # mean over repeats
        y, p = mean["y"].to_numpy(), mean["p"].to_numpy()
        expected = [_by_hand(y, p, t) for t in part["threshold"]]
        np.testing.assert_allclose(part["net_benefit"], expected, atol=1e-9, rtol=0)
        # treat all: every case treated; treat none: 0
        np.testing.assert_allclose(part["treat_all"], [_by_hand(y, np.ones_like(p), t) for t in part["threshold"]],
                                   atol=1e-9, rtol=0)
        assert (part["treat_none"] == 0).all() and (part["n"] == len(y)).all()
        assert part["prevalence"].iloc[0] == pytest.approx(y.mean())
        # and the same as dcurves called directly on these per-case probabilities
        direct = dca(data=pd.DataFrame({"outcome": y, "risk": p}), outcome="outcome", modelnames=["risk"],
                     thresholds=list(DEFAULT_THRESHOLDS))
        direct = direct[direct["model"] == "risk"].set_index("threshold")["net_benefit"]
        np.testing.assert_allclose(part["net_benefit"], direct.reindex(part["threshold"]).to_numpy(), atol=1e-9)


def test_a_better_model_has_more_net_benefit_and_thresholds_are_checked():
    table = decision_curve(_predictions(), thresholds=[0.2, 0.3, 0.4])
    cv = table[table["cohort"] == "cv"].pivot(index="threshold", columns="model", values="net_benefit")
    assert (cv["logreg"] > cv["rf"]).all()
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        decision_curve(_predictions(), thresholds=[0.0, 0.5])


def test_train_writes_the_decision_curve_and_figure(tmp_path):
    rng = np.random.default_rng(3)
    y = pd.Series(["no", "yes"] * 15, index=[f"c{i:02d}" for i in range(30)])
    X = pd.DataFrame({"f1": rng.normal(size=30) + 1.5 * (y == "yes"), "f2": rng.normal(size=30)}, index=y.index)
    settings = ModelSettings(models=["logreg"], positive_class="yes", bootstrap=0, outer_folds=3, inner_folds=2)
    train_models(X, y, settings, tmp_path)
    folder = ModelFolder(tmp_path)
    table = pd.read_csv(folder.decision_curve_path)
    assert list(table.columns) == DECISION_CURVE_COLUMNS and len(table) == 99
    assert (tmp_path / "decision_curve.png").read_bytes()[:4] == b"\x89PNG"
    oof = folder.predictions()
    oof = oof[oof["cohort"] == "cv"]
    at = table.set_index("threshold").loc[0.3]
    assert at["net_benefit"] == pytest.approx(_by_hand(oof["y_true"].to_numpy(), oof["y_prob"].to_numpy(), 0.3),
                                              abs=1e-9)
    assert at["treat_all"] == pytest.approx(0.5 - 0.5 * 0.3 / 0.7, abs=1e-9)
