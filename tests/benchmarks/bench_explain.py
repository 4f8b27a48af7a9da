"""Wall time of the explain stage on a BUSI-sized table (294 cases x 100 features, synthetic), all patient pages.

Targets from issue 6, on 2 cores: <= 60 s for random forest / XGBoost, <= 5 min for an RBF-SVM.
Run with `make bench` (pytest -s -m bench tests/benchmarks).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.svm import SVC

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_explain import make_cohort, make_model_dir  # noqa: E402

from radpipe.explain import ExplainSettings, explain  # noqa: E402

pytestmark = pytest.mark.bench


def _xgb():
    xgb = pytest.importorskip("xgboost")
    return xgb.XGBClassifier(n_estimators=200, max_depth=3, learning_rate=0.05, random_state=0, n_jobs=1)


CONFIGS = {
    "rf": lambda: RandomForestClassifier(n_estimators=300, min_samples_leaf=2, random_state=0, n_jobs=1),
    "xgb": _xgb,
    "svm-rbf": lambda: CalibratedClassifierCV(SVC(kernel="rbf", C=1.0), cv=5),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_explain_wall_time(name, tmp_path):
    X, y = make_cohort(n=294, d=100, seed=1)
    clf = CONFIGS[name]()
    # XGBoost wants 0/1 labels; the model card keeps the class names
    y_fit = (y == "malignant").astype(int) if name == "xgb" else y
    model_dir = make_model_dir(tmp_path, clf, X, y_fit, folds=5, name=name)
    start = time.perf_counter()
    result = explain(model_dir, X, tmp_path / "out", labels=y, settings=ExplainSettings(), n_jobs=2)
    elapsed = time.perf_counter() - start
    target = 60 if name in ("rf", "xgb") else 300
    print(f"\n[bench] explain {name}: {len(result.patient_pages)} patient pages, explainer {result.shap.explainer}, "
          f"{result.shap.values.shape[1]} final features, {elapsed:.1f} s wall on n_jobs=2 (target <= {target} s); "
          f"stages {result.summary['timings_seconds']}")
    assert len(result.patient_pages) == 294
