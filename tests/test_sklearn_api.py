"""RadiomicsFeatures: a scikit-learn transformer over image/mask paths that gives `radpipe extract`'s values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import radpipe._radiomics_features as module
from radpipe import RadiomicsFeatures, cohort_paths
from radpipe.cohort import load_cohort
from radpipe.extract.settings import ExtractSettings
from radpipe.extract.stage import extract_cohort
from tests.synth import make_cohort, write_case

# A small, fast feature set; the equality tests use every class.
SMALL = {"setting": {"binWidth": 10}, "featureClass": {"shape": None, "firstorder": None}}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Eight synthetic lesions (classes a/b alternate), as a path table and labels."""
    folder = make_cohort(tmp_path_factory.mktemp("sklearn_api") / "cohort", n=8)
    cohort = load_cohort(str(folder))
    return folder, cohort_paths(cohort), cohort.labels


def test_init_stores_arguments_unchanged_and_clone_round_trips():
    params = {"setting": {"binWidth": 25}, "featureClass": {"firstorder": ["Mean"]}}
    rf = RadiomicsFeatures(params, n_jobs=2, memory=None)
    assert rf.params is params
    twin = clone(rf)
    assert twin.get_params() == rf.get_params()
    assert twin.params is not params  # clone deep-copies
    bad = RadiomicsFeatures({"setting": {"binwidth": 25}})  # misspelt: not checked until fit
    assert clone(bad).get_params()["params"] == {"setting": {"binwidth": 25}}


def test_fit_validates_settings_with_a_readable_message(synthetic):
    _, paths, _ = synthetic
    with pytest.raises(ValueError, match="binwidth"):
        RadiomicsFeatures({"setting": {"binwidth": 25}}).fit(paths)
    with pytest.raises(ValueError, match="unknown key 'min_voxel'"):
        RadiomicsFeatures({"min_voxel": 3}).fit(paths)
    with pytest.raises(ValueError, match="'mask' column"):
        RadiomicsFeatures(SMALL).fit(paths[["image"]])


def test_fit_learns_names_from_the_first_case_only(synthetic, monkeypatch):
    _, paths, _ = synthetic
    seen = []
    real = module.extract_case
    monkeypatch.setattr(module, "extract_case", lambda case, settings: seen.append(case.case_id) or real(case, settings))
    rf = RadiomicsFeatures(SMALL).fit(paths)
    assert seen == ["case00"]
    names = rf.get_feature_names_out()
    assert names[0] == "original_shape_Elongation"
    assert "original_firstorder_Mean" in names and not any("glcm" in n for n in names)
    assert list(rf.feature_names_in_) == ["image", "mask"]


def test_transform_returns_features_indexed_like_input(synthetic):
    _, paths, _ = synthetic
    shuffled = paths.iloc[[3, 0, 5]]
    rf = RadiomicsFeatures(SMALL).set_output(transform="pandas").fit(paths)
    features = rf.transform(shuffled)
    assert list(features.index) == ["case03", "case00", "case05"]
    assert list(features.columns) == list(rf.get_feature_names_out())
    assert (features.dtypes == "float64").all()
    # larger radius for class b: volume ordered as the synthetic generator made it
    volume = features["original_shape_VoxelVolume"]
    assert volume["case03"] > volume["case00"]


def test_a_failed_case_raises_naming_the_case_and_reason(synthetic, tmp_path):
    _, paths, _ = synthetic
    write_case(tmp_path, "empty", seed=1, mask_array=np.zeros((16, 24, 24), dtype=np.uint8))
    bad = pd.concat([paths.iloc[:2], pd.DataFrame(
        {"image": [str(tmp_path / "images" / "empty.nii.gz")], "mask": [str(tmp_path / "masks" / "empty.nii.gz")]},
        index=["empty"])])
    rf = RadiomicsFeatures(SMALL).fit(paths)
    with pytest.raises(ValueError, match=r"could not extract 1 of 3 case\(s\): empty: .*cannot drop rows"):
        rf.transform(bad)


def test_grid_search_round_trip_extracts_each_case_once_with_memory(synthetic, tmp_path, monkeypatch):
    _, paths, y = synthetic
    calls = []
    real = module.extract_case
    monkeypatch.setattr(module, "extract_case", lambda case, settings: calls.append(case.case_id) or real(case, settings))
    coarse = {**SMALL, "setting": {"binWidth": 40}}
    pipe = make_pipeline(RadiomicsFeatures(SMALL, memory=str(tmp_path / "cache")), StandardScaler(),
                         LogisticRegression())
    search = GridSearchCV(pipe, {"radiomicsfeatures__params": [SMALL, coarse], "logisticregression__C": [0.1, 1.0]},
                          cv=StratifiedKFold(2), scoring="roc_auc")
    search.fit(paths, y.loc[paths.index])
    assert search.best_params_["radiomicsfeatures__params"] in (SMALL, coarse)
    # 2 settings x 8 cases: every later fold, C value and the refit read the cache
    assert len(calls) == 2 * len(paths)
    assert search.predict(paths).shape == (len(paths),)


def test_cross_validate_a_pipeline_from_image_paths(synthetic):
    _, paths, y = synthetic
    pipe = make_pipeline(RadiomicsFeatures(SMALL), StandardScaler(), LogisticRegression())
    scores = cross_validate(pipe, paths, y.loc[paths.index], cv=StratifiedKFold(2), scoring="roc_auc")
    assert len(scores["test_score"]) == 2
    assert np.all((scores["test_score"] >= 0) & (scores["test_score"] <= 1))


def test_parallel_extraction_gives_the_same_table(synthetic):
    _, paths, _ = synthetic
    serial = RadiomicsFeatures(SMALL).fit_transform(paths.iloc[:4])
    parallel = RadiomicsFeatures(SMALL, n_jobs=2).fit_transform(paths.iloc[:4])
    pd.testing.assert_frame_equal(parallel, serial, check_exact=True)


class _Spy(TransformerMixin, BaseEstimator):
    """Records every table the previous Pipeline step hands on (a module-level list survives clone)."""

    seen: list[pd.DataFrame] = []

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        _Spy.seen.append(X.copy())
        return X


def _features_inside_cross_validate(paths, y, params, memory=None) -> pd.DataFrame:
    """Every row RadiomicsFeatures handed on, in training and held-out folds, during cross_validate."""
    _Spy.seen = []
    pipe = make_pipeline(RadiomicsFeatures(params, memory=memory), _Spy(), StandardScaler(), LogisticRegression(max_iter=1000))
    cross_validate(pipe, paths, y, cv=StratifiedKFold(2), scoring="roc_auc")
    held_out = pd.concat(_Spy.seen)
    return held_out[~held_out.index.duplicated()]


def _assert_equal_to_1e12(ours: pd.DataFrame, reference: pd.DataFrame) -> None:
    assert list(ours.columns) == list(reference.columns)
    assert sorted(ours.index) == sorted(reference.index)
    a = ours.loc[reference.index].to_numpy(float)
    b = reference.to_numpy(float)
    assert np.array_equal(np.isnan(a), np.isnan(b))
    scale = np.maximum(np.abs(b), 1.0)
    worst = np.nanmax(np.abs(a - b) / scale)
    print(f"worst scaled difference vs radpipe extract: {worst:.1e} over {a.size} values")
    assert worst <= 1e-12


def test_inside_cross_validate_equals_radpipe_extract_on_synthetic_cases(synthetic, tmp_path):
    folder, paths, y = synthetic
    params = {"setting": {"binWidth": 10}}  # every feature class
    extracted = extract_cohort(load_cohort(str(folder)), ExtractSettings(**params), tmp_path / "out").features
    ours = _features_inside_cross_validate(paths, y.loc[paths.index], params)
    _assert_equal_to_1e12(ours, extracted)


@pytest.mark.realdata
def test_inside_cross_validate_equals_radpipe_extract_on_pyradiomics_samples(data_dir, tmp_path):
    """The five pyradiomics sample cases (CT/MR), every feature class: same values as `radpipe extract`."""
    cohort = load_cohort("pyradiomics_samples")
    params = {"setting": {"binWidth": 25}}
    extracted = extract_cohort(cohort, ExtractSettings(**params), tmp_path / "out", jobs=2).features
    paths = cohort_paths(cohort)
    assert paths.loc["brain1", "label_value"] == 1
    y = pd.Series(["x", "y", "x", "y", "x"], index=paths.index)  # unlabelled cohort: made-up classes
    ours = _features_inside_cross_validate(paths, y, params, memory=str(tmp_path / "cache"))
    _assert_equal_to_1e12(ours, extracted)
