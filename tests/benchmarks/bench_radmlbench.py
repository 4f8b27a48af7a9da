"""radMLBench benchmark: radpipe's default model search with honest nested CV on each shared table,
printed beside the paper's (optimistic) best AUC and the repo's median pipeline.

Run: ``.venv/bin/pytest -m bench -s tests/benchmarks/bench_radmlbench.py``. Environment variables:
``RADPIPE_BENCH_LIMIT`` (number of datasets, smallest first), ``RADPIPE_BENCH_DATASETS``
(comma-separated names), ``RADPIPE_BENCH_JOBS`` (default 2), ``RADPIPE_BENCH_BOOTSTRAP`` (default 1000).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radpipe.model import ModelSettings, train_models


def load_radmlbench(path: Path) -> tuple[pd.DataFrame, pd.Series]:
    """Features and labels of one radMLBench table (``ID`` and ``Target`` are the last two columns)."""
    table = pd.read_csv(path)
    if list(table.columns[-2:]) != ["ID", "Target"]:
        raise ValueError(f"{path.name}: expected ID and Target as the last two columns")
    ids = table["ID"].astype(str)
    target = table["Target"].map(lambda v: int(str(v).strip().lower() in ("1", "true", "1.0")))
    X = table.iloc[:, :-2].set_axis(pd.Index(ids, name="case_id"), axis=0)
    y = pd.Series(np.where(target == 1, "1", "0"), index=X.index, name="label")
    return X, y


def _cpu_seconds() -> float:
    """CPU time of this process and its (loky worker) children: wall time lies on a shared machine."""
    try:
        import psutil
    except ImportError:
        return float("nan")
    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.Error:
            pass
    return total


def _datasets(root: Path) -> pd.DataFrame:
    published = pd.read_csv(root / "published_auc.csv").sort_values(["n_samples", "n_features"])
    names = os.environ.get("RADPIPE_BENCH_DATASETS")
    if names:
        published = published[published["dataset"].isin([n.strip() for n in names.split(",")])]
    limit = os.environ.get("RADPIPE_BENCH_LIMIT")
    return published.head(int(limit)) if limit else published


@pytest.mark.bench
@pytest.mark.realdata
def test_radmlbench(data_dir, tmp_path):
    root = data_dir / "radmlbench"
    settings = ModelSettings(
        positive_class="1",
        n_jobs=int(os.environ.get("RADPIPE_BENCH_JOBS", "2")),
        bootstrap=int(os.environ.get("RADPIPE_BENCH_BOOTSTRAP", "1000")),
    )
    rows = []
    print(f"\nradMLBench, default settings: models={settings.models}, {settings.outer_folds}-fold x "
          f"{settings.outer_repeats} outer, {settings.inner_folds}-fold inner {settings.search} search")
    print(f"{'dataset':30s} {'n':>4s} {'p':>5s}  {'radpipe AUC [95% CI]':24s} {'best':>5s} "
          f"{'pub best':>8s} {'repo med':>8s} {'time s':>7s} {'cpu s':>7s}")
    for _, ref in _datasets(root).iterrows():
        X, y = load_radmlbench(root / ref["file"])
        start, cpu_start = time.perf_counter(), _cpu_seconds()
        result = train_models(X, y, settings, tmp_path / ref["dataset"])
        seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
        row = result.metrics.set_index(["cohort", "model"]).loc[("cv", result.best_model)]
        rows.append({"dataset": ref["dataset"], "auc": row["auc"], "pub": ref["pub_auc_best_figS1_mean"],
                     "median": ref["repo_auc_median_all_configs_10x1"], "seconds": seconds, "cpu": cpu})
        print(f"{ref['dataset']:30s} {len(X):4d} {X.shape[1]:5d}  {row['auc']:.3f} [{row['auc_ci_low']:.3f}, "
              f"{row['auc_ci_high']:.3f}]     {result.best_model:>5s} {ref['pub_auc_best_figS1_mean']:8.3f} "
              f"{ref['repo_auc_median_all_configs_10x1']:8.3f} {seconds:7.1f} {cpu:7.1f}", flush=True)
    table = pd.DataFrame(rows)
    at_or_above = float((table["auc"] >= table["median"]).mean())
    shortfall = float((table["pub"] - table["auc"]).mean())
    print(f"SUMMARY datasets={len(table)} fraction>=repo_median={at_or_above:.2f} (target 0.90) "
          f"mean_shortfall_vs_published_best={shortfall:+.3f} (target <= 0.02) "
          f"median_wall_time_s={table['seconds'].median():.1f} (target <= 120) "
          f"median_cpu_s={table['cpu'].median():.1f} load_average={os.getloadavg()[0]:.1f}")
    assert len(table) > 0
