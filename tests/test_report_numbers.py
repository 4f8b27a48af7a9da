"""The numbers on the report pages are the model folder's: a patient page leads with the case's out-of-fold
probability from predictions.csv, and the cohort page's ROC caption and confusion matrix reproduce metrics.csv.

The model folders are written by ``train_models`` itself (small synthetic cohorts, nested CV with repeats), so
the test checks the real contract between the model stage's tables and the explain stage's pages.
"""

from __future__ import annotations

import re
import sys
from html import unescape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_explain import make_cohort  # noqa: E402

from radpipe.explain import ExplainSettings, explain  # noqa: E402
from radpipe.model.folder import ModelFolder  # noqa: E402
from radpipe.model.settings import ModelSettings  # noqa: E402
from radpipe.model.train import train_models  # noqa: E402

FAST = ExplainSettings(lime_samples=100, shap_background=10, bootstrap=0, stability_cases=10, dependence_plots=1,
                       images=False)


def _element(html: str, element_id: str) -> tuple[dict[str, str], str]:
    """Attributes and inner text of the element with ``id``."""
    match = re.search(rf'<(\w+)([^>]*\bid="{element_id}"[^>]*)>(.*?)</\1>', html, re.S)
    assert match, f"no element #{element_id}"
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', match.group(2)))
    return attrs, unescape(re.sub(r"<[^>]+>", " ", match.group(3)))


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory):
    X, y = make_cohort(n=40)
    tmp = tmp_path_factory.mktemp("numbers")
    settings = ModelSettings(models=["logreg"], outer_folds=3, outer_repeats=3, inner_folds=2, bootstrap=50,
                             positive_class="malignant",
                             select_k=4)
    train_models(X, y, settings, tmp / "models")
    # six training cases plus two the model never saw (external)
    new = make_cohort(n=10, seed=7)[0].iloc[:2].rename(index=lambda c: f"new_{c}")
    table = pd.concat([X.iloc[:6], new])
    result = explain(tmp / "models", table, tmp / "explain", labels=y, settings=FAST)
    return result, ModelFolder(tmp / "models"), X, y


def test_patient_pages_lead_with_the_out_of_fold_probability(binary_run):
    result, folder, X, _ = binary_run
    pr = folder.predictions()
    cv = pr[(pr["cohort"] == "cv") & (pr["model"] == "logreg")]
    assert cv["repeat"].nunique() == 3
    oof = cv.groupby("case_id")["y_prob"].agg(["mean", "min", "max"])
    checked = 0
    for case, page in result.patient_pages.items():
        html = page.read_text()
        attrs, text = _element(html, "headline-probability")
        if case in oof.index:
            assert attrs["data-source"] == "cv"
            assert text.strip() == f"{100 * oof.loc[case, 'mean']:.1f}%", case
            assert float(attrs["data-probability"]) == pytest.approx(oof.loc[case, "mean"], abs=5e-7)
            assert "never saw this patient" in html
            # the range across the three repeats is printed beside it
            assert f"{100 * oof.loc[case, 'min']:.1f}%–{100 * oof.loc[case, 'max']:.1f}%" in html
            # the final model's in-sample number is secondary, with its caveat
            final = result.summary["patients"][case]["headline"]["final_probability"]
            assert _element(html, "final-probability")[1].strip() == f"{100 * final:.1f}%"
            assert "optimistic" in _element(html, "final-model-line")[1]
            checked += 1
        else:
            assert attrs["data-source"] == "external" and "External case" in html
            final = result.summary["patients"][case]["headline"]["final_probability"]
            assert text.strip() == f"{100 * final:.1f}%"
    assert checked == 6


def test_cross_validated_decision_counts_each_repeats_fold_decision(binary_run):
    result, folder, *_ = binary_run
    pr = folder.predictions()
    cv = pr[pr["cohort"] == "cv"]
    for case, page in result.patient_pages.items():
        if case not in set(cv["case_id"]):
            continue
        calls = int(cv.loc[cv["case_id"] == case, "y_pred"].sum())
        text = _element(page.read_text(), "headline-decision")[1].strip()
        assert text == ("malignant" if calls >= 2 else "benign"), (case, calls)


def test_confusion_matrix_reproduces_metrics_sensitivity_and_specificity(binary_run):
    result, folder, *_ = binary_run
    html = result.cohort_page.read_text()
    row = folder.metrics().query("cohort == 'cv' and model == 'logreg'").iloc[0]
    n = {k: int(_element(html, f"cm-{k}")[0]["data-count"]) for k in ("tp", "fn", "fp", "tn")}
    assert n["tp"] + n["fn"] == 3 * row["n_positive"]  # every case counted once per repeat
    assert n["tp"] / (n["tp"] + n["fn"]) == pytest.approx(row["sensitivity"], abs=1e-12)
    assert n["tn"] / (n["tn"] + n["fp"]) == pytest.approx(row["specificity"], abs=1e-12)
    caption = re.search(r'<table class="confusion".*?<figcaption>(.*?)</figcaption>', html, re.S).group(1)
    assert f"sensitivity {row['sensitivity']:.3f}" in caption and f"specificity {row['specificity']:.3f}" in caption


def test_roc_caption_quotes_metrics_auc_and_ci(binary_run):
    result, folder, *_ = binary_run
    html = result.cohort_page.read_text()
    row = folder.metrics().query("cohort == 'cv' and model == 'logreg'").iloc[0]
    attrs, caption = _element(html, "roc-caption")
    assert float(attrs["data-auc"]) == pytest.approx(row["auc"], abs=1e-12)
    assert float(attrs["data-auc-low"]) == pytest.approx(row["auc_ci_low"], abs=1e-12)
    assert float(attrs["data-auc-high"]) == pytest.approx(row["auc_ci_high"], abs=1e-12)
    caption = " ".join(caption.split())
    assert f"AUC {row['auc']:.3f} (95% CI {row['auc_ci_low']:.3f}–{row['auc_ci_high']:.3f}" in caption
    assert "metrics.csv" in caption and "predictions.csv" in caption


def test_pages_have_no_nan_text_and_every_image_has_alt_text(binary_run):
    result, *_ = binary_run
    for page in [result.cohort_page, *result.patient_pages.values()]:
        html = page.read_text()
        text = unescape(re.sub(r"<[^>]+>", " ", re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)))
        assert not re.search(r"\bnan\b|\bNone\b|e[+-]\d\d\b", text, re.I), page
        for img in re.findall(r"<img\b[^>]*>", html):
            assert re.search(r'\balt="[^"]+"', img), img[:80]


def test_multiclass_pages_lead_with_out_of_fold_probability_and_confusion_reproduces_recall(tmp_path):
    X, y = make_cohort(n=45, seed=3)
    y = pd.Series(np.array(["a", "b", "c"])[np.arange(len(y)) % 3], index=y.index, name="label")
    X.iloc[:, 0] += (y == "b") * 3.0
    settings = ModelSettings(models=["logreg"], outer_folds=3, outer_repeats=2, inner_folds=2, bootstrap=20,
                             select_k=4)
    train_models(X, y, settings, tmp_path / "models")
    folder = ModelFolder(tmp_path / "models")
    result = explain(tmp_path / "models", X, tmp_path / "explain", labels=y, settings=FAST,
                     patients=list(X.index[:3]))
    pr = folder.predictions().query("cohort == 'cv'")
    mean = pr.groupby("case_id")[["y_prob_a", "y_prob_b", "y_prob_c"]].mean()
    for case, page in result.patient_pages.items():
        text = _element(page.read_text(), "headline-probability")[1].strip()
        assert text == f"{100 * mean.loc[case].max():.1f}%"
        assert _element(page.read_text(), "headline-decision")[1].strip() == mean.loc[case].idxmax()[len("y_prob_"):]
    html = result.cohort_page.read_text()
    matrix = np.array([[int(_element(html, f"cm-{i}-{j}")[0]["data-count"]) for j in range(3)] for i in range(3)])
    row = folder.metrics().query("cohort == 'cv'").iloc[0]
    recall = np.mean(np.diag(matrix) / matrix.sum(axis=1))
    assert recall == pytest.approx(row["sensitivity"], abs=1e-12)
    assert float(_element(html, "roc-caption")[0]["data-auc"]) == pytest.approx(row["auc"], abs=1e-12)


def test_fold_stability_says_not_selected_exactly_where_a_fold_dropped_the_feature(binary_run):
    from radpipe.model.persist import load_model

    result, folder, X, _ = binary_run
    table = pd.read_csv(result.out_dir / "fold_stability.csv")
    assert set(table["fold"]) == {d.name for d in folder.fold_dirs()}
    for fold_dir in folder.fold_dirs():
        kept = set(load_model(fold_dir).pipeline[:-1].get_feature_names_out())
        rows = table[table["fold"] == fold_dir.name].set_index("feature")
        assert set(rows.index[rows["selected"]]) == kept  # select_k=4: four per fold
        assert rows.loc[~rows["selected"], "mean_abs_shap"].isna().all()
    html = result.cohort_page.read_text()
    heat = re.search(r'<table class="heat" id="fold-importance">(.*?)</table>', html, re.S).group(1)
    shown = re.findall(r'<td title="([^"]+)">', heat)
    n_dropped = sum(int((~table[(table["feature"] == f)]["selected"]).sum()) for f in shown)
    assert heat.count("not selected") == n_dropped > 0
