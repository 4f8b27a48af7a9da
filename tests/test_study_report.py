"""study.html: every number it shows is read from the tables the run wrote, and every figure names its table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radpipe.explain.methods_text import methods_paragraph
from radpipe.explain.study import case_flow, write_study
from radpipe.model import ModelSettings, train_models
from radpipe.model.folder import ModelFolder


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A trained model folder beside a features folder with the extraction's manifest and qc.csv."""
    work = tmp_path_factory.mktemp("study")
    rng = np.random.default_rng(5)
    y = pd.Series(["no", "yes"] * 18, index=[f"c{i:02d}" for i in range(36)])
    X = pd.DataFrame({"original_firstorder_Mean": rng.normal(size=36) + 1.2 * (y == "yes"),
                      "original_shape_Sphericity": rng.uniform(0.5, 0.9, 36)}, index=y.index)
    settings = ModelSettings(models=["logreg", "svm"], positive_class="yes", bootstrap=20, outer_folds=3,
                             inner_folds=2)
    train_models(X, y, settings, work / "models")
    for name in ("comparison.csv", "sample_size.json"):  # the tests below write their own, or test without
        (work / "models" / name).unlink(missing_ok=True)
    features = work / "features"
    features.mkdir()
    qc = pd.DataFrame({"case_id": [*y.index, "c98", "c99"], "roi": "roi",
                       "status": ["ok"] * 36 + ["failed", "failed"], "action": "",
                       "reason": [""] * 36 + ["mask is empty", "mask is empty"]})
    qc.to_csv(features / "qc.csv", index=False)
    (features / "manifest.json").write_text(json.dumps({
        "cohort": "synthetic", "n_cases": 38, "failed": 2, "versions": {"radpipe": "0.1.0", "pyradiomics": "3.1.0"},
        "settings": {"preprocessing": [], "min_voxels": 20, "intensity_unit": "HU"},
        "pyradiomics_params": {"setting": {"binWidth": 25, "resampledPixelSpacing": [1, 1, 1],
                                           "interpolator": "sitkBSpline"},
                               "imageType": {"Original": {}}, "featureClass": {"shape": None, "firstorder": None}},
        "discretisation": {"binWidth": 25, "median_levels": 30, "levels_p5": 12, "levels_p95": 55,
                           "intensity_unit": "HU"},
    }))
    return work


def _table(html: str, table_id: str) -> list[list[str]]:
    body = html.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
    return [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S) for row in body.split("<tr")[1:]]


def test_flow_counts_come_from_qc_card_and_splits(run):
    flow = case_flow(ModelFolder(run / "models"), run / "features")
    assert [(s.label, s.n) for s in flow[:3]] == [("cases found", 38), ("failed quality control", 2),
                                                  ("included in modelling", 36)]
    assert "2 × mask is empty" in flow[1].note
    assert flow[3].label.startswith("outer cross-validation: 3 folds") and "trains on 24 and tests on 12 cases" in flow[3].note


def test_study_page_shows_the_tables_numbers(run, monkeypatch):
    import radpipe.explain.nomogram as nomogram

    def fake_nomogram(model_dir: Path, out_dir: Path) -> Path:  # H1's drawing is tested in its own module
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "nomogram.png").write_bytes(b"\x89PNG fake")
        return out_dir / "nomogram.png"

    monkeypatch.setattr(nomogram, "write_nomogram", fake_nomogram)
    page = write_study(run / "models", run / "explain", features_dir=run / "features")
    html = page.read_text()
    folder = ModelFolder(run / "models")
    metrics = folder.metrics().set_index("model")
    rows = {r[1]: r for r in _table(html, "comparison-table")[1:]}
    for model in ("logreg", "svm"):
        m = metrics.loc[model]
        assert rows[model][3] == f"{m.auc:.3f} ({m.auc_ci_low:.3f}–{m.auc_ci_high:.3f})"
    calibration = pd.read_csv(folder.calibration_summary_path).set_index("model")
    cal_rows = {r[1]: r for r in _table(html, "calibration-table")[1:]}
    assert cal_rows["logreg"][5].startswith(f"{calibration.loc['logreg', 'calibration_slope']:.3f} (")
    dca = pd.read_csv(folder.decision_curve_path)
    at = dca[(dca["model"] == "svm") & (dca["threshold"] == 0.3)].iloc[0]
    nb_rows = {r[1]: r for r in _table(html, "net-benefit-table")[1:]}
    assert nb_rows["svm"][2 + 2].startswith(f"{at.net_benefit:.3f} ")  # columns 0.1, 0.2, 0.3, ...
    assert f"(all {at.treat_all:.3f})" in nb_rows["svm"][4]
    # every figure says which table it is drawn from, and the nomogram is embedded
    for table in ("predictions.csv", "calibration_curve.csv", "decision_curve.csv"):
        assert f"Drawn from <code>{table}</code>" in html
    assert html.count("data:image/png;base64,") == 4
    assert 'data-n="38"' in html and 'data-n="2"' in html
    # the study page comes with the checklists, and links them
    assert (run / "explain" / "checklist_clear.md").exists() and 'href="checklist_metrics.md"' in html


def test_comparison_and_sample_size_files_are_shown_when_present(run, tmp_path):
    import shutil

    models = shutil.copytree(run / "models", tmp_path / "models")
    pd.DataFrame({"model": ["clinical", "logreg", "combined"], "kind": ["clinical", "radiomics", "combined"],
                  "auc": [0.71, 0.80, 0.83], "auc_ci_low": [0.55, 0.66, 0.70], "auc_ci_high": [0.86, 0.93, 0.95],
                  "reference": [np.nan, "clinical", "clinical"], "auc_difference": [np.nan, 0.09, 0.12],
                  "difference_ci_low": [np.nan, -0.05, 0.01], "difference_ci_high": [np.nan, 0.22, 0.24],
                  "delong_p": [np.nan, 0.21, 0.043]}).to_csv(models / "comparison.csv", index=False)
    (models / "sample_size.json").write_text(json.dumps({
        "n_required": 412, "n_available": 36, "events_required": 62, "events_available": 18,
        "candidate_predictors": 10, "prevalence": 0.5, "r2_cs": 0.15, "criteria": {}, "events_per_predictor": 1.8,
        "warning": "the cohort is smaller than the minimum"}))
    html = write_study(models, tmp_path / "explain", features_dir=run / "features").read_text()
    rows = _table(html, "comparison-table")
    assert rows[0][:3] == ["model", "kind", "AUC (95% CI)"]
    assert rows[3][1:] == ["combined", "0.830 (0.700–0.950)", "clinical", "+0.120 (+0.010 to +0.240)", "0.043"]
    assert rows[1][3:] == ["–", "–", "–"]
    statement = html.split('id="sample-size-statement">', 1)[1].split("</p>", 1)[0]
    assert "<b>412</b>" in statement and "<b>36</b>" in statement and "1.80 events per" in statement
    assert "the cohort is smaller than the minimum" in html


def test_methods_paragraph_states_the_recorded_settings(run):
    text = methods_paragraph(run / "models", run / "features")
    assert "38 cases of the cohort 'synthetic'; 2 failed quality control" in text
    assert "fixed bin width of 25 HU" in text and "1 × 1 × 1 mm voxels with B-spline interpolation" in text
    assert "penalised logistic regression (logreg) and a support vector machine (svm)" in text
    assert "20 stratified bootstrap resamples" in text


def test_survival_and_multiclass_folders_get_no_study_page(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "model_card.json").write_text(json.dumps({"outcome_type": "survival"}))
    assert write_study(tmp_path / "models", tmp_path / "explain") is None


def test_a_model_folder_without_the_optional_tables_still_gets_a_page(run, tmp_path):
    import shutil

    models = shutil.copytree(run / "models", tmp_path / "models")
    for name in ("calibration_curve.csv", "calibration_summary.csv", "decision_curve.csv", "metrics.csv"):
        (models / name).unlink()
    html = write_study(models, tmp_path / "explain").read_text()
    assert "No calibration tables in the model folder." in html and "No decision_curve.csv" in html
    assert "The model folder has no metrics.csv." in html and 'id="flow-diagram"' in html
