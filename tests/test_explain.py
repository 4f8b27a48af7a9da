"""The explain stage on small synthetic cohorts: SHAP additivity, LIME reproducibility, the report files."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.feature_selection import SelectKBest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from radpipe.explain import (
    ExplainSettings,
    compute_lime,
    compute_shap,
    explain,
    parse_feature_name,
    read_lesion_slice,
    to_original,
)
from radpipe.model.metrics import metrics_with_ci
from radpipe.model.persist import save_model

FEATURES = [
    "original_shape2D_Elongation", "original_shape2D_Perimeter", "original_firstorder_Mean",
    "original_firstorder_Entropy", "original_glcm_Contrast", "original_glszm_ZoneEntropy",
    "wavelet-LLH_firstorder_Mean", "wavelet-HHL_glcm_Correlation", "log-sigma-2-0-mm-3D_glrlm_RunEntropy",
    "log-sigma-3-0-mm-3D_firstorder_Skewness", "square_gldm_DependenceEntropy", "original_ngtdm_Busyness",
]


def make_cohort(n: int = 60, d: int | None = None, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """A synthetic radiomics table (pyradiomics-style names) whose label depends on three features."""
    rng = np.random.default_rng(seed)
    names = FEATURES if d is None else [f"{FEATURES[i % len(FEATURES)]}_{i}" for i in range(d)]
    X = pd.DataFrame(rng.normal(size=(n, len(names))) * 3 + 10, columns=names)
    signal = X.iloc[:, 0] - X.iloc[:, 2] + 0.5 * X.iloc[:, 4] + rng.normal(scale=2, size=n)
    y = np.where(signal > np.median(signal), "malignant", "benign")
    X.index = pd.Index([f"case_{i:03d}" for i in range(n)], name="case_id")
    X.iloc[3, 5] = np.nan  # real tables have gaps
    return X, pd.Series(y, index=X.index, name="label")


def make_pipeline(clf, k: int = 6) -> Pipeline:
    return Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler()), ("select", SelectKBest(k=k)),
                     ("clf", clf)]).set_output(transform="pandas")


def make_model_dir(tmp: Path, clf, X: pd.DataFrame, y: pd.Series, *, folds: int = 3, name: str = "rf") -> Path:
    """A model folder like `radpipe train` writes: model, card, metrics, OOF predictions, fold models."""
    model_dir = tmp / name
    pipe = make_pipeline(clf).fit(X, y)
    card = {"model_name": name, "classes": ["benign", "malignant"], "positive_class": "malignant",
            "threshold": 0.45, "feature_names": list(X.columns), "intended_use": "synthetic test model",
            "pipeline_steps": [s for s, _ in pipe.steps]}
    save_model(pipe, card, model_dir)
    cv = StratifiedKFold(folds, shuffle=True, random_state=0)
    oof = cross_val_predict(make_pipeline(clf), X, y, cv=cv, method="predict_proba")[:, 1]
    y_true = y.astype(str).isin(["malignant", "1"]).astype(int).to_numpy()
    y_pred = (oof >= 0.45).astype(int)  # one threshold for every fold here; train uses each fold's own
    pd.DataFrame({"case_id": X.index, "model": name, "repeat": 0, "fold": 0, "label": y.values, "y_true": y_true,
                  "y_prob": oof, "cohort": "cv", "threshold": 0.45, "y_pred": y_pred}).to_csv(
        model_dir / "predictions.csv", index=False)
    row = metrics_with_ci(y_true, oof, 0.45, y_pred=y_pred, n_boot=50, seed=0)
    pd.DataFrame([{"cohort": "cv", "model": name, **row}]).to_csv(model_dir / "metrics.csv", index=False)
    X.to_csv(model_dir / "train_features.csv")
    for f, (train, _) in enumerate(cv.split(X, y)):
        fold_pipe = make_pipeline(clf).fit(X.iloc[train], y.iloc[train])
        save_model(fold_pipe, card, model_dir / "folds" / f"0_{f}")
    (model_dir / "model_card.md").write_text("# rf\n\nSynthetic model for tests.\n")
    return model_dir


def write_images(tmp: Path, case_ids) -> dict[str, tuple[Path, Path]]:
    """A 2D RGB PNG with a 0/255 mask for the first case, a 3D volume for the second."""
    import SimpleITK as sitk

    out = {}
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:64, :80]
    disk = ((yy - 30) ** 2 + (xx - 40) ** 2) < 12 ** 2
    rgb = np.repeat((rng.random((64, 80)) * 80 + disk * 120).astype(np.uint8)[..., None], 3, axis=2)
    img = sitk.GetImageFromArray(rgb, isVector=True)
    sitk.WriteImage(img, str(tmp / "a.png"))
    sitk.WriteImage(sitk.GetImageFromArray((disk * 255).astype(np.uint8)), str(tmp / "a_mask.png"))
    out[case_ids[0]] = (tmp / "a.png", tmp / "a_mask.png")
    zz, yy, xx = np.mgrid[:10, :32, :32]
    ball = (4 * (zz - 6) ** 2 + (yy - 16) ** 2 + (xx - 16) ** 2) < 16
    vol = sitk.GetImageFromArray((rng.random((10, 32, 32)) + ball * 3).astype(np.float32))
    vol.SetSpacing((1.0, 1.0, 3.0))
    msk = sitk.GetImageFromArray(ball.astype(np.uint8))
    msk.CopyInformation(vol)
    sitk.WriteImage(vol, str(tmp / "b.nii.gz"))
    sitk.WriteImage(msk, str(tmp / "b_mask.nii.gz"))
    out[case_ids[1]] = (tmp / "b.nii.gz", tmp / "b_mask.nii.gz")
    return out


@pytest.fixture(scope="module")
def cohort():
    return make_cohort()


def _prob(pipe, X):
    return pd.Series(pipe.predict_proba(X)[:, list(pipe.classes_).index("malignant")], index=X.index)


@pytest.mark.parametrize("clf, kind", [
    (RandomForestClassifier(n_estimators=30, random_state=0), "tree"),
    (GradientBoostingClassifier(n_estimators=30, random_state=0), "tree"),
    (LogisticRegression(C=0.5), "linear"),
])
def test_shap_adds_up_to_the_probability(cohort, clf, kind):
    X, y = cohort
    pipe = make_pipeline(clf).fit(X, y)
    res = compute_shap(pipe, X, X, positive_class="malignant", background=20)
    assert res.explainer == kind
    np.testing.assert_allclose(res.base_value + res.values.sum(axis=1), _prob(pipe, X), atol=1e-6, rtol=0)
    assert list(res.values.columns) == list(pipe[:-1].get_feature_names_out())


def test_shap_adds_up_for_xgboost_with_numeric_labels(cohort):
    xgb = pytest.importorskip("xgboost")
    X, y = cohort
    pipe = make_pipeline(xgb.XGBClassifier(n_estimators=30, max_depth=2, random_state=0)).fit(X, (y == "malignant").astype(int))
    res = compute_shap(pipe, X, X, positive_class="malignant", background=20)
    assert res.explainer == "tree"
    np.testing.assert_allclose(res.base_value + res.values.sum(axis=1), pipe.predict_proba(X)[:, 1], atol=1e-6, rtol=0)


def test_shap_for_positive_class_listed_first(cohort):
    X, y = cohort
    y2 = y.map({"malignant": "a_malignant", "benign": "z_benign"})  # positive class sorts first
    for clf in (RandomForestClassifier(n_estimators=20, random_state=0), LogisticRegression()):
        pipe = make_pipeline(clf).fit(X, y2)
        res = compute_shap(pipe, X, X, positive_class="a_malignant", background=20)
        np.testing.assert_allclose(res.base_value + res.values.sum(axis=1), pipe.predict_proba(X)[:, 0], atol=1e-6)


@pytest.mark.parametrize("explainer", ["permutation", "kernel"])
def test_model_agnostic_shap_adds_up_and_is_seeded(cohort, explainer):
    X, y = cohort
    X = X.iloc[:30]
    pipe = make_pipeline(CalibratedClassifierCV(SVC(), cv=3)).fit(X, y.iloc[:30])
    a = compute_shap(pipe, X.iloc[:6], X, positive_class="malignant", explainer=explainer,
                     agnostic_background=8, max_evals=60, seed=3)
    b = compute_shap(pipe, X.iloc[[5, 4, 3, 2, 1, 0]], X, positive_class="malignant", explainer=explainer,
                     agnostic_background=8, max_evals=60, seed=3)
    assert a.explainer == explainer
    np.testing.assert_allclose(a.base_value + a.values.sum(axis=1), _prob(pipe, X.iloc[:6]), atol=1e-6)
    # a case's values do not depend on which other cases are explained with it
    pd.testing.assert_frame_equal(a.values, b.values.loc[a.values.index])


def test_auto_explainer_is_model_agnostic_for_svm(cohort):
    X, y = cohort
    pipe = make_pipeline(CalibratedClassifierCV(SVC(), cv=3)).fit(X, y)
    res = compute_shap(pipe, X.iloc[:2], X, positive_class="malignant", agnostic_background=5, max_evals=40)
    assert res.explainer == "permutation"


def test_shap_back_on_input_features_gives_zero_to_dropped_ones(cohort):
    X, y = cohort
    pipe = make_pipeline(RandomForestClassifier(n_estimators=20, random_state=0), k=4).fit(X, y)
    res = compute_shap(pipe, X, X, positive_class="malignant", background=20)
    orig = to_original(res.values, X.columns)
    assert list(orig.columns) == list(X.columns)
    dropped = [c for c in X.columns if c not in res.values.columns]
    assert len(dropped) == len(X.columns) - 4
    assert (orig[dropped] == 0).all().all()
    np.testing.assert_allclose(orig.sum(axis=1), res.values.sum(axis=1))


def test_lime_is_reproducible_with_a_seed(cohort):
    X, y = cohort
    pipe = make_pipeline(RandomForestClassifier(n_estimators=20, random_state=0)).fit(X, y)
    kw = dict(positive_index=1, num_samples=200, top=5, seed=7)
    a = compute_lime(pipe, X.iloc[:4], X, **kw)
    b = compute_lime(pipe, X.iloc[:4], X, **kw)
    c = compute_lime(pipe, X.iloc[[3, 2]], X, **kw)  # other cases, other order
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 4 * 5
    assert set(a["feature"]) <= set(X.columns)
    pd.testing.assert_frame_equal(
        a[a.case_id == "case_002"].reset_index(drop=True), c[c.case_id == "case_002"].reset_index(drop=True))
    d = compute_lime(pipe, X.iloc[:4], X, **{**kw, "seed": 8})
    assert not np.allclose(a["weight"], d["weight"])


def test_feature_names_are_parsed_into_family_and_filter():
    assert parse_feature_name("original_shape2D_Elongation")["family"] == "shape"
    assert parse_feature_name("wavelet-LLH_firstorder_Mean") == {
        "filter": "wavelet", "filter_detail": "wavelet-LLH", "class": "firstorder", "family": "first order",
        "feature": "Mean"}
    assert parse_feature_name("log-sigma-2-0-mm-3D_glszm_ZoneEntropy")["filter"] == "LoG"
    assert parse_feature_name("num__original_glcm_Contrast")["family"] == "texture"
    assert parse_feature_name("age")["family"] == "other"


def test_settings_reject_unknown_keys():
    with pytest.raises(Exception, match="lime_sample"):
        ExplainSettings(lime_sample=10)
    assert ExplainSettings().model_dump()["lime_samples"] == 1000


def test_lesion_slice_reads_rgb_png_and_picks_the_largest_3d_slice(tmp_path):
    images = write_images(tmp_path, ["a", "b"])
    img, msk, spacing, where = read_lesion_slice(*images["a"])
    assert img.shape == (64, 80) and msk.dtype == bool and msk.sum() > 300
    img, msk, spacing, where = read_lesion_slice(*images["b"])
    assert img.shape == (32, 32) and "slice 7 of 10" in where


SETTINGS = ExplainSettings(lime_samples=150, shap_background=15, bootstrap=50, stability_cases=20)


@pytest.fixture(scope="module")
def report(tmp_path_factory, cohort):
    X, y = cohort
    X = X.rename(index={"case_002": 'case<2>&"x"'})
    y = y.rename(index={"case_002": 'case<2>&"x"'})
    tmp = tmp_path_factory.mktemp("explain")
    model_dir = make_model_dir(tmp, RandomForestClassifier(n_estimators=30, random_state=0), X, y)
    images = write_images(tmp, [X.index[0], X.index[1]])
    calls = []
    result = explain(model_dir, X, tmp / "out", labels=y, images=images, settings=SETTINGS,
                     progress=lambda done, total: calls.append((done, total)))
    return result, X, y, model_dir, calls


def test_report_writes_every_file(report):
    result, X, y, _, calls = report
    out = result.out_dir
    for name in ("shap_values.csv", "shap_values_original.csv", "lime.csv", "summary.json", "cohort.html",
                 "manifest.json"):
        assert (out / name).exists(), name
    assert len(list((out / "patients").glob("*.html"))) == len(X)
    assert calls[-1] == (len(X), len(X))
    shap = pd.read_csv(out / "shap_values.csv", index_col="case_id")
    assert list(shap.index) == list(X.index)
    prob = result.shap.base_value + result.shap.values.sum(axis=1)
    np.testing.assert_allclose(shap.drop(columns="base_value").sum(axis=1) + shap["base_value"], prob, atol=1e-9)
    lime = pd.read_csv(out / "lime.csv")
    assert list(lime.columns[:5]) == ["case_id", "rank", "feature_rule", "feature", "weight"]
    # LIME varies only the 6 inputs that survive selection, so it reports 6 features per case
    assert lime.groupby("case_id").size().eq(min(SETTINGS.lime_top, result.shap.values.shape[1])).all()
    assert set(lime["feature"]) <= set(result.shap.values.columns)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["explainer"] == "tree" and summary["n_patients"] == len(X)
    assert summary["additivity_max_error"] < 1e-6
    assert summary["fold_stability"]["n_folds"] == 3
    assert -1 <= summary["fold_stability"]["spearman_median"] <= 1
    assert 0 <= summary["shap_lime_agreement"]["mean_overlap"] <= 1
    assert summary["top_features"][0]["feature"] in X.columns
    assert {"shape", "first order", "texture"} <= set(summary["by_family"])


def _imgs(html: str, kind: str = "png") -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(rf'src="data:image/{kind};base64,([^"]+)"', html)]


def test_report_html_is_self_contained_and_escaped(report):
    import matplotlib.image as mpimg

    result, X, *_ = report
    pages = [result.cohort_page, *result.patient_pages.values()]
    for page in pages[:5] + [result.patient_pages['case<2>&"x"']]:
        html = page.read_text()
        assert not re.search(r'(src|href)\s*=\s*["\']?\s*(https?:)?//', html), page
        assert "<script src" not in html
        for png in _imgs(html):
            assert png[:8] == b"\x89PNG\r\n\x1a\n"
            assert mpimg.imread(io.BytesIO(png), format="png").shape[0] > 50
    cohort = result.cohort_page.read_text()
    assert 'case<2>&"x"' not in cohort and "case&lt;2&gt;&amp;" in cohort
    assert len(_imgs(cohort)) >= 8  # ROC, calibration, beeswarm, bar, groups, 5 dependence plots
    # confusion matrix and fold stability are HTML tables; a feature a fold did not select says so
    assert 'id="cm-tp"' in cohort and 'id="fold-importance"' in cohort
    assert "not selected" in cohort
    first = result.patient_pages[X.index[0]].read_text()
    # the lesion slice is the one picture (a JPEG); waterfall, LIME and groups are HTML bars
    assert "Lesion" in first and len(_imgs(first)) == 0 and len(_imgs(first, "jpeg")) == 1
    assert _imgs(first, "jpeg")[0][:3] == b"\xff\xd8\xff"
    assert "cohort average (base value)" in first and first.count("class=\"seg ") == result.shap.values.shape[1]  # 6 selected features, no "others" bar
    assert "Patient case&lt;2&gt;" in result.patient_pages['case<2>&"x"'].read_text()
    for png in (result.out_dir / "figures").glob("*.png"):
        assert png.read_bytes()[:4] == b"\x89PNG"
    lesions = sorted((result.out_dir / "figures").rglob("*_image.jpg"))
    assert lesions and all(path.read_bytes()[:3] == b"\xff\xd8\xff" for path in lesions)


def test_report_lists_unknown_patients_in_the_error(report, tmp_path):
    _, X, _, model_dir, _ = report
    with pytest.raises(Exception, match="nobody"):
        explain(model_dir, X, tmp_path, patients=["nobody"], settings=SETTINGS)


def test_jobs_do_not_change_the_results(tmp_path, cohort):
    X, y = cohort
    X, y = X.iloc[:24], y.iloc[:24]
    model_dir = make_model_dir(tmp_path, RandomForestClassifier(n_estimators=20, random_state=0), X, y, folds=2)
    settings = ExplainSettings(lime_samples=100, shap_background=10, bootstrap=20, stability_cases=10,
                               images=False)
    one = explain(model_dir, X, tmp_path / "one", labels=y, settings=settings, n_jobs=1)
    two = explain(model_dir, X, tmp_path / "two", labels=y, settings=settings, n_jobs=2)
    for name in ("shap_values.csv", "shap_values_original.csv", "lime.csv"):
        assert (one.out_dir / name).read_bytes() == (two.out_dir / name).read_bytes(), name


def test_patients_subset_and_missing_optional_files(tmp_path, cohort):
    X, y = cohort
    pipe = make_pipeline(LogisticRegression()).fit(X, y)
    save_model(pipe, {"model_name": "logreg", "classes": ["benign", "malignant"], "positive_class": "malignant",
                      "feature_names": list(X.columns)}, tmp_path / "m")
    result = explain(tmp_path / "m", X, tmp_path / "out", patients=["case_005", "case_001"],
                     settings=ExplainSettings(lime_samples=100, bootstrap=0))
    assert sorted(p.name for p in (tmp_path / "out" / "patients").iterdir()) == ["case_001.html", "case_005.html"]
    assert result.summary["explainer"] == "linear" and result.summary["additivity_max_error"] < 1e-6
    assert "no labels" in result.cohort_page.read_text()


@pytest.mark.realdata
def test_lesion_slice_on_real_ultrasound_and_pet(data_dir):
    """BUSI: RGB PNG with a 0/255 mask; STS: a 3D PET volume, the slice with the largest lesion area."""
    from radpipe.explain import plots

    img, msk, spacing, where = read_lesion_slice(data_dir / "busi/images/busi_0001.png",
                                                 data_dir / "busi/masks/busi_0001.png")
    assert img.ndim == 2 and img.shape == msk.shape and where == "2D image"
    assert 0 < msk.mean() < 0.5
    img, msk, spacing, where = read_lesion_slice(data_dir / "sts_pet/images/STS_001.nii.gz",
                                                 data_dir / "sts_pet/masks/STS_001.nii.gz")
    assert img.ndim == 2 and msk.any() and "largest mask area" in where
    jpeg = plots.lesion_slice(img, msk, spacing)
    assert jpeg[:3] == b"\xff\xd8\xff"
    img, msk, spacing, _ = read_lesion_slice(data_dir / "busi/images/busi_0001.png",
                                             data_dir / "busi/masks/busi_0001.png")
    jpeg = plots.lesion_slice(img, msk, spacing)
    assert len(jpeg) < 120_000  # a palette PNG of this speckled slice was 278 kB


@pytest.mark.slow  # each worker compiles shap's numba kernels first (tens of seconds on a busy machine)
def test_permutation_shap_is_identical_with_two_workers(cohort):
    X, y = cohort
    pipe = make_pipeline(CalibratedClassifierCV(SVC(), cv=3)).fit(X.iloc[:30], y.iloc[:30])
    kw = dict(positive_class="malignant", explainer="permutation", agnostic_background=6, max_evals=40, seed=5)
    one = compute_shap(pipe, X.iloc[:8], X.iloc[:30], n_jobs=1, **kw)
    two = compute_shap(pipe, X.iloc[:8], X.iloc[:30], n_jobs=2, **kw)
    assert one.values.to_csv() == two.values.to_csv() and one.base_value == two.base_value
