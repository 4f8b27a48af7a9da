"""The explain stage for a time-to-event model: pages lead with the out-of-fold risk of predictions.csv, the cohort
page quotes metrics.csv, every figure names its source and has alt text, and SHAP adds up to the risk score.

The model folder is written here by hand, following the survival model-folder contract (model_card.json with
``outcome_type: survival``, metrics.csv, predictions.csv), so these tests do not depend on the model stage.
"""

from __future__ import annotations

import html
import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("sksurv")
from sklearn.impute import SimpleImputer  # noqa: E402
from sklearn.model_selection import StratifiedKFold  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sksurv.ensemble import RandomSurvivalForest  # noqa: E402
from sksurv.linear_model import CoxnetSurvivalAnalysis  # noqa: E402
from sksurv.metrics import concordance_index_censored  # noqa: E402
from sksurv.util import Surv  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from test_explain import FEATURES, write_images  # noqa: E402

from radpipe.explain import ExplainSettings, explain  # noqa: E402
from radpipe.explain.survival_report import time_text  # noqa: E402
from radpipe.explain.survival_shap import compute_risk_shap  # noqa: E402
from radpipe.model.folder import CALIBRATION_SURVIVAL_FILE  # noqa: E402
from radpipe.model.persist import save_model  # noqa: E402
from radpipe.model.survival import calibration_table  # noqa: E402

HORIZONS = [300.0, 600.0, 900.0]


def make_survival_cohort(n: int = 48, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Synthetic radiomics features and follow-up whose hazard grows with the first feature."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 6)) * 3 + 10, columns=FEATURES[:6])
    X.index = pd.Index([f"case_{i:03d}" for i in range(n)], name="case_id")
    hazard = np.exp(0.5 * (X.iloc[:, 0] - 10) - 0.3 * (X.iloc[:, 2] - 10))
    event_time = rng.exponential(700 / hazard)
    censor_time = rng.uniform(200, 1500, n)
    outcome = pd.DataFrame({"os_days": np.round(np.minimum(event_time, censor_time), 1),
                            "os_event": (event_time <= censor_time).astype(int)}, index=X.index)
    return X, outcome


def _pipe(est) -> Pipeline:
    return Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler()), ("model", est)]).set_output(
        transform="pandas")


def _surv_at(pipe, X, horizons) -> np.ndarray:
    fns = pipe[-1].predict_survival_function(pipe[:-1].transform(X))
    return np.array([[fn.y[max(np.searchsorted(fn.x, h, side="right") - 1, 0)] if h >= fn.x[0] else 1.0
                      for h in horizons] for fn in fns])


def make_survival_model_dir(tmp: Path, est_factory, X, outcome, *, name="rsf", repeats=2, folds=3) -> Path:
    """A model folder following the survival contract: card, model, metrics.csv, predictions.csv, training features."""
    model_dir = tmp / name
    y = Surv.from_arrays(outcome["os_event"].astype(bool), outcome["os_days"])
    pipe = _pipe(est_factory()).fit(X, y)
    rows = []
    for r in range(repeats):
        cv = StratifiedKFold(folds, shuffle=True, random_state=r)
        for f, (train, test) in enumerate(cv.split(X, outcome["os_event"])):
            fold = _pipe(est_factory()).fit(X.iloc[train], y[train])
            cutoff = float(np.median(fold.predict(X.iloc[train])))
            risk = fold.predict(X.iloc[test])
            surv = _surv_at(fold, X.iloc[test], HORIZONS)
            for k, i in enumerate(test):
                rows.append({"case_id": X.index[i], "model": name, "repeat": r, "fold": f,
                             "time": outcome["os_days"].iloc[i], "event": outcome["os_event"].iloc[i],
                             "risk": risk[k], **{f"surv_{int(h)}": surv[k, j] for j, h in enumerate(HORIZONS)},
                             "risk_cutoff": cutoff, "risk_group": "high" if risk[k] > cutoff else "low",
                             "cohort": "cv"})
    pr = pd.DataFrame(rows)
    c_harrell = np.mean([concordance_index_censored(g["event"].astype(bool), g["time"], g["risk"])[0]
                         for _, g in pr.groupby("repeat")])
    metric_rows = [{"cohort": "cv", "model": name, "n": len(X), "n_events": int(outcome["os_event"].sum()),
                    "c_harrell": c_harrell, "c_harrell_ci_low": c_harrell - 0.081, "c_harrell_ci_high": c_harrell + 0.067,
                    "c_uno": c_harrell - 0.012, "c_uno_ci_low": c_harrell - 0.1, "c_uno_ci_high": c_harrell + 0.05,
                    "td_auc_mean": 0.71, "td_auc_300": 0.74, "td_auc_600": 0.7, "td_auc_900": 0.69, "ibs": 0.18,
                    "ibs_null": 0.22, "logrank_p": 0.0042, "hazard_ratio": 2.61, "hazard_ratio_ci_low": 1.3,
                    "hazard_ratio_ci_high": 5.2, "c_fold_mean": c_harrell, "c_fold_sd": 0.05},
                   {"cohort": "cv", "model": "coxnet", "n": len(X), "n_events": int(outcome["os_event"].sum()),
                    "c_harrell": 0.6412, "c_harrell_ci_low": 0.55, "c_harrell_ci_high": 0.73, "c_uno": 0.6301,
                    "c_uno_ci_low": 0.52, "c_uno_ci_high": 0.72, "td_auc_mean": 0.65, "td_auc_300": 0.66,
                    "td_auc_600": 0.64, "td_auc_900": np.nan, "ibs": 0.2, "ibs_null": 0.22, "logrank_p": 0.21,
                    "hazard_ratio": 1.4, "hazard_ratio_ci_low": 0.8, "hazard_ratio_ci_high": 2.5,
                    "c_fold_mean": 0.63, "c_fold_sd": 0.07}]
    final_cutoff = float(np.median(pipe.predict(X)))
    card = {"model_name": name, "outcome_type": "survival",
            "outcome": {"time": "os_days", "event": "os_event", "time_unit": "days"}, "classes": [],
            "positive_class": None, "threshold": None, "horizons": HORIZONS, "risk_cutoff": final_cutoff,
            "n_cases": len(X), "n_events": int(outcome["os_event"].sum()),
            "censoring_fraction": float(1 - outcome["os_event"].mean()), "feature_names": list(X.columns),
            "selected_features": list(X.columns), "metrics": metric_rows[0], "cv": {"outer_folds": folds,
                                                                                    "repeats": repeats},
            "pipeline_steps": [s for s, _ in pipe.steps]}
    save_model(pipe, card, model_dir)
    pr.to_csv(model_dir / "predictions.csv", index=False)
    pd.DataFrame(metric_rows).to_csv(model_dir / "metrics.csv", index=False)
    oof = pr.groupby("case_id", sort=False).agg({"time": "first", "event": "first", "risk": "mean",
                                                 **{f"surv_{int(h)}": "mean" for h in HORIZONS}})
    calibration_table(oof["event"], oof["time"], oof["risk"], oof, HORIZONS).assign(model=name, cohort="cv").to_csv(
        model_dir / CALIBRATION_SURVIVAL_FILE, index=False)
    X.to_csv(model_dir / "train_features.csv")
    return model_dir


def _rsf():
    return RandomSurvivalForest(n_estimators=25, min_samples_leaf=4, random_state=0, n_jobs=1)


SETTINGS = ExplainSettings(shap_max_evals=60, agnostic_background=8, top_features=5)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    X, outcome = make_survival_cohort()
    tmp = tmp_path_factory.mktemp("survival")
    model_dir = make_survival_model_dir(tmp, _rsf, X, outcome)
    external = X.iloc[:2].copy() * 1.01
    external.index = pd.Index(["ext_1", "ext_2"], name="case_id")
    features = pd.concat([X, external])
    images = write_images(tmp, [X.index[0], X.index[1]])
    result = explain(model_dir, features, tmp / "out", images=images, settings=SETTINGS,
                     patients=[X.index[0], X.index[1], X.index[2], "ext_1"])
    return result, model_dir, features


def _text(page: Path) -> str:
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", page.read_text(), flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", body))


def test_patient_headline_is_the_out_of_fold_risk_of_predictions_csv(report):
    result, model_dir, X = report
    pr = pd.read_csv(model_dir / "predictions.csv", dtype={"case_id": str})
    for case in ["case_000", "case_001", "case_002"]:
        rows = pr[(pr["case_id"] == case) & (pr["cohort"] == "cv")]
        page = result.patient_pages[case].read_text()
        shown = re.search(r'id="headline-risk"[^>]*>([^<]+)<', page).group(1)
        assert shown == f"{rows['risk'].mean():.3f}"
        assert f"range {rows['risk'].min():.3f} to {rows['risk'].max():.3f}" in page
        calls = int((rows["risk_group"] == "high").sum())
        assert f"high risk in {calls} of {len(rows)} repeats" in " ".join(_text(result.patient_pages[case]).split())
        group = re.search(r'id="headline-group"[^>]*>([^<]+)<', page).group(1)
        assert group == ("high risk" if 2 * calls >= len(rows) else "low risk")  # the model stage's rule
        # follow-up is the case's own time and event
        time, event = rows["time"].iloc[0], rows["event"].iloc[0]
        follow = re.search(r'id="follow-up"[^>]*>(.*?)</div>', page, re.S).group(1)
        assert follow.strip() == f"{'event' if event else 'censored'} at {time_text(time)} days"
    external = result.patient_pages["ext_1"].read_text()
    assert 'data-source="external"' in external and "External case: risk score" in external


def test_cohort_page_c_index_numbers_equal_metrics_csv(report):
    result, model_dir, _ = report
    metrics = pd.read_csv(model_dir / "metrics.csv")
    page = result.cohort_page.read_text()
    cv = metrics[(metrics["cohort"] == "cv") & (metrics["model"] == "rsf")].iloc[0]
    assert re.search(r'id="metric-c_harrell"[^>]*>([^<]+)<', page).group(1) == f"{cv['c_harrell']:.3f}"
    assert re.search(r'id="metric-c_uno"[^>]*>([^<]+)<', page).group(1) == f"{cv['c_uno']:.3f}"
    table = page[page.index('id="metrics-table"'):]
    for _, row in metrics.iterrows():
        cell = (f"{row['c_harrell']:.3f} ({row['c_harrell_ci_low']:.3f}–{row['c_harrell_ci_high']:.3f})")
        assert cell in table
        assert f"{row['c_uno']:.3f} ({row['c_uno_ci_low']:.3f}–{row['c_uno_ci_high']:.3f})" in table
    assert "log-rank p 0.0042" in " ".join(_text(result.cohort_page).split())
    assert f"{cv['hazard_ratio']:.2f}" in re.search(r'id="metric-hazard_ratio"[^>]*>([^<]+)<', page).group(1)


def test_km_figure_names_its_source_and_every_image_has_alt_text(report):
    result, _, _ = report
    page = result.cohort_page.read_text()
    caption = " ".join(_text_of(page, r'<figcaption id="km-caption">(.*?)</figcaption>').split())
    assert "Source: predictions.csv" in caption and "risk_group" in caption
    assert "Log-rank p 0.0042, hazard ratio 2.61, from metrics.csv" in caption
    for path in [result.cohort_page, *result.patient_pages.values()]:
        text = path.read_text()
        imgs = re.findall(r"<img\b[^>]*>", text)
        assert imgs, path
        assert all(re.search(r'alt="[^"]{10,}"', img) for img in imgs), path
        figures = re.findall(r"<figure>(.*?)</figure>", text, re.S)
        assert all("<figcaption" in f for f in figures)
        assert not re.search(r"\bnan\b|\bNone\b", _text(path)), path
    assert "LIME is not computed for survival models" in page
    assert "Source: the model folder's calibration_survival.csv" in " ".join(_text(result.cohort_page).split())


def _text_of(page: str, pattern: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", re.search(pattern, page, re.S).group(1)))


def test_shap_adds_up_to_the_risk_score_and_tables_are_written(report):
    result, model_dir, X = report
    from radpipe.model.persist import load_model

    pipe = load_model(model_dir).pipeline
    shap = pd.read_csv(result.out_dir / "shap_values.csv", index_col=0)
    risk = pipe.predict(X.loc[shap.index])
    np.testing.assert_allclose(shap.drop(columns="base_value").sum(axis=1) + shap["base_value"], risk, atol=1e-6)
    assert result.shap.explainer == "permutation"  # shap 0.51's TreeExplainer does not accept sksurv forests
    summary = json.loads((result.out_dir / "summary.json").read_text())
    assert summary["outcome_type"] == "survival" and summary["additivity_max_error"] < 1e-6
    patients = pd.read_csv(result.out_dir / "patients.csv", dtype={"case_id": str}).set_index("case_id")
    pr = pd.read_csv(model_dir / "predictions.csv", dtype={"case_id": str})
    assert patients.loc["case_000", "risk"] == pytest.approx(pr[pr["case_id"] == "case_000"]["risk"].mean())
    assert patients.loc["ext_1", "risk_source"] == "external"


def test_patient_page_shows_survival_at_each_horizon(report):
    result, model_dir, _ = report
    pr = pd.read_csv(model_dir / "predictions.csv", dtype={"case_id": str})
    rows = pr[pr["case_id"] == "case_001"]
    text = " ".join(_text(result.patient_pages["case_001"]).split())
    for h in HORIZONS:
        assert f"{100 * rows[f'surv_{int(h)}'].mean():.1f}%" in text
    assert "this patient's survival curve from the final model (in-sample" in text
    page = result.patient_pages["case_001"].read_text()
    assert 'alt="Predicted survival curve of patient case_001' in page


def test_a_final_model_that_uses_no_feature_is_said_so(tmp_path):
    """A penalty strong enough to remove every feature: one risk for all, so no SHAP figures, and the pages say why."""
    X, outcome = make_survival_cohort(n=30)
    model_dir = make_survival_model_dir(
        tmp_path, lambda: CoxnetSurvivalAnalysis(alphas=[5.0], fit_baseline_model=True), X, outcome, name="coxnet",
        repeats=1)
    result = explain(model_dir, X, tmp_path / "out", settings=SETTINGS, patients=["case_000"])
    assert result.summary["constant_final_model"] and (result.shap.values == 0).all().all()
    cohort = result.cohort_page.read_text()
    assert 'id="constant-model"' in cohort and "SHAP beeswarm" not in cohort
    page = result.patient_pages["case_000"].read_text()
    assert 'id="constant-model"' in page and 'class="wf"' not in page
    assert not re.search(r"\bnan\b|\bNone\b", _text(result.patient_pages["case_000"]))


def test_permutation_shap_of_a_coxnet_model_adds_up():
    X, outcome = make_survival_cohort(n=30)
    y = Surv.from_arrays(outcome["os_event"].astype(bool), outcome["os_days"])
    pipe = _pipe(CoxnetSurvivalAnalysis(l1_ratio=0.5, fit_baseline_model=True)).fit(X, y)
    res = compute_risk_shap(pipe, X.head(4), X, max_evals=40, agnostic_background=6)
    np.testing.assert_allclose(res.base_value + res.values.sum(axis=1), pipe.predict(X.head(4)), atol=1e-8)
    # the feature the hazard depends on matters most for these cases
    assert res.values.abs().mean().idxmax() in (FEATURES[0], FEATURES[2])


@pytest.mark.browser
def test_survival_pages_render_in_chromium(report, tmp_path):
    """Cohort and patient page in headless Chromium: no console errors, every image decodes and has alt text."""
    import shutil

    from test_explain_browser import CHROMIUM, _check, _need  # noqa: PLC0415

    _need(Path(CHROMIUM).exists() or shutil.which("chromium") is not None, "Debian chromium is not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need(False, "playwright is not installed (pip install playwright)")
    from test_explain_browser import ARGS

    result, _, _ = report
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
                                    args=ARGS)
        try:
            _check(browser, result.cohort_page, tmp_path / "cohort.png")
            _check(browser, result.patient_pages["case_001"], tmp_path / "patient.png")
            page = browser.new_page()
            page.goto(result.cohort_page.as_uri())
            page.click("#patients-table th:nth-child(2)")
            page.click("#patients-table th:nth-child(2)")  # descending
            risks = page.eval_on_selector_all("#patients-table tbody td:nth-child(2)",
                                              "els => els.map(e => +e.dataset.value)")
            assert risks == sorted(risks, reverse=True)
            page.close()
            page = browser.new_page()
            page.goto(result.patient_pages["case_000"].as_uri(), wait_until="load")
            pdf = page.pdf(prefer_css_page_size=True)
            page.close()
            assert 1 <= len(re.findall(rb"/Type\s*/Page[^s]", pdf)) <= 2  # a patient page prints on at most two A4 pages
        finally:
            browser.close()
