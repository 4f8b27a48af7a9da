"""The Dask backend (``scheduler="local"``: a 2-worker ``LocalCluster``) runs the same per-case function as
joblib, so the tables it writes are byte-identical. Skipped when dask is not installed, except under CI=true."""

from __future__ import annotations

import os

import pytest

from radpipe.cohort import load_cohort
from radpipe.extract.settings import ExtractSettings
from radpipe.extract.stage import extract_cohort
from tests.synth import make_cohort


def _require_distributed() -> None:
    try:
        import dask.distributed  # noqa: F401
    except ImportError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("dask[distributed] is not installed; CI must test the Dask backend")
        pytest.skip("dask[distributed] is not installed (pip install 'radpipe[dask]')")


def test_dask_local_cluster_matches_joblib(tmp_path):
    _require_distributed()
    cohort = load_cohort(make_cohort(tmp_path / "cohort", n=4))
    # one filter as well as Original, so the crop and the filtered image types go through both backends
    settings = ExtractSettings(setting={"binWidth": 10}, imageType={"Original": {}, "LoG": {"sigma": [1.0]}},
                               featureClass={"firstorder": None, "glcm": None})

    joblib_run = extract_cohort(cohort, settings, tmp_path / "joblib", jobs=2, formats=("csv",))
    dask_run = extract_cohort(cohort, settings, tmp_path / "dask", scheduler="local", formats=("csv",))

    assert joblib_run.summary.computed == dask_run.summary.computed == 4
    assert joblib_run.summary.cached == dask_run.summary.cached == 0
    assert joblib_run.n_failed == dask_run.n_failed == 0
    assert any(c.startswith("log-sigma-1-0-mm-3D_") for c in joblib_run.features.columns)
    for table in ("features.csv", "features_long.csv", "qc.csv"):
        assert (tmp_path / "dask" / table).read_bytes() == (tmp_path / "joblib" / table).read_bytes(), table


def test_dask_rerun_is_served_from_cache(tmp_path):
    """Results computed by Dask workers land in the same cache the joblib backend reads."""
    _require_distributed()
    cohort = load_cohort(make_cohort(tmp_path / "cohort", n=4))
    settings = ExtractSettings(setting={"binWidth": 10}, featureClass={"firstorder": None})
    cache = tmp_path / "cache"
    first = extract_cohort(cohort, settings, tmp_path / "dask", scheduler="local", cache_dir=cache, formats=("csv",))
    again = extract_cohort(cohort, settings, tmp_path / "joblib", jobs=1, cache_dir=cache, formats=("csv",))
    assert (first.summary.computed, again.summary.computed, again.summary.cached) == (4, 0, 4)
    assert (tmp_path / "dask" / "features.csv").read_bytes() == (tmp_path / "joblib" / "features.csv").read_bytes()


def test_local_cluster_settings_name_real_dask_options():
    """dask.config.set accepts any key, so a misspelt one would silently change nothing."""
    _require_distributed()
    import dask
    import distributed  # noqa: F401  (registers the distributed defaults)

    from radpipe.extract.runner import LOCAL_CLUSTER_CONFIG

    for key in LOCAL_CLUSTER_CONFIG:
        assert dask.config.get(key, default="missing") != "missing", key
