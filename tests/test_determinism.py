"""Determinism: the same cohort and settings give byte-identical tables with --jobs 1 and --jobs 2, and the
Parquet file embeds nothing that depends on when or where it was written."""

from __future__ import annotations

import re
import time

import numpy as np
import pyarrow.parquet as pq
from typer.testing import CliRunner

from radpipe.cli import app
from tests.synth import make_cohort, write_case

TABLES = ("features.csv", "features_long.csv", "qc.csv", "diagnostics.csv", "codebook.csv", "features.parquet")


def test_jobs_1_and_jobs_2_give_byte_identical_tables(tmp_path):
    cohort = make_cohort(tmp_path / "cohort", n=6)
    sphere = np.zeros((16, 24, 24), np.uint8)
    sphere[5:11, 8:16, 8:16] = 255
    write_case(cohort, "case_255", seed=7, mask_array=sphere)  # fixed: binarised
    write_case(cohort, "case_empty", seed=8, mask_array=np.zeros((16, 24, 24), np.uint8))  # failed

    runner = CliRunner()
    serial = runner.invoke(app, ["extract", str(cohort), "--out", str(tmp_path / "j1"), "--jobs", "1"])
    time.sleep(1.1)  # a timestamp with one-second resolution would now differ
    parallel = runner.invoke(app, ["extract", str(cohort), "--out", str(tmp_path / "j2"), "--jobs", "2"])
    assert serial.exit_code == parallel.exit_code == 1, (serial.output, parallel.output)

    differing = [name for name in TABLES
                 if (tmp_path / "j1" / name).read_bytes() != (tmp_path / "j2" / name).read_bytes()]
    assert not differing, differing

    features = (tmp_path / "j1" / "features.csv").read_text().splitlines()
    assert [line.split(",", 1)[0] for line in features[1:]] == [*(f"case{i:02d}" for i in range(6)), "case_255"]


def test_parquet_metadata_holds_nothing_time_or_machine_dependent(tmp_path):
    cohort = make_cohort(tmp_path / "cohort", n=2)
    assert CliRunner().invoke(app, ["extract", str(cohort), "--out", str(tmp_path / "out")]).exit_code == 0
    parquet = pq.ParquetFile(tmp_path / "out" / "features.parquet")
    text = " ".join(
        [parquet.metadata.created_by or ""]
        + [f"{k!r}={v!r}" for k, v in (parquet.schema_arrow.metadata or {}).items()]
    )
    assert not re.search(r"\d{4}-\d{2}-\d{2}|\d{2}:\d{2}:\d{2}", text), text  # no dates or times
    assert str(tmp_path) not in text and "/tmp" not in text  # no paths


def test_training_with_1_or_2_jobs_gives_byte_identical_results(tmp_path):
    """Same data, recipe and seed: metrics, predictions and splits are byte-identical whatever --jobs."""
    from radpipe.model import ModelSettings, train_models
    from tests.test_model_train import _cohort

    X, y, groups = _cohort(n=48)
    for jobs in (1, 2):
        settings = ModelSettings(models=["logreg", "rf"], outer_folds=3, inner_folds=3, bootstrap=50, n_jobs=jobs,
                                 group_column="patient", positive_class="malignant")
        train_models(X, y, settings, tmp_path / f"jobs{jobs}", groups=groups)
    for name in ("metrics.csv", "predictions.csv", "splits.json", "train_features.csv", "model_card.json"):
        assert (tmp_path / "jobs1" / name).read_bytes() == (tmp_path / "jobs2" / name).read_bytes(), name
