"""Every cohort layout gives the same feature table; tables open in R/Excel-style readers without surprises."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from radpipe.cli import app
from radpipe.cohort import discover, load_cohort
from radpipe.config import DatasetSpec
from radpipe.extract.settings import ExtractSettings
from radpipe.extract.stage import extract_cohort
from tests.synth import make_cohort

runner = CliRunner()


def test_folders_per_case_batch_csv_and_glob_layouts_give_identical_tables(tmp_path):
    folders = make_cohort(tmp_path / "folders", n=4)
    per_case = tmp_path / "per_case"
    batch_rows = ["case_id,Image,Mask"]
    flat = tmp_path / "flat"
    flat.mkdir()
    for index in range(4):
        case_id = f"case{index:02d}"
        (per_case / case_id).mkdir(parents=True)
        shutil.copy(folders / "images" / f"{case_id}.nii.gz", per_case / case_id / "image.nii.gz")
        shutil.copy(folders / "masks" / f"{case_id}.nii.gz", per_case / case_id / "mask.nii.gz")
        batch_rows.append(f"{case_id},images/{case_id}.nii.gz,masks/{case_id}.nii.gz")
        shutil.copy(folders / "images" / f"{case_id}.nii.gz", flat / f"{case_id}_ct.nii.gz")
        shutil.copy(folders / "masks" / f"{case_id}.nii.gz", flat / f"{case_id}_seg.nii.gz")
    (folders / "batch.csv").write_text("\n".join(batch_rows) + "\n")
    cohorts = {
        "folders": load_cohort(folders),
        "per_case": discover("per_case", DatasetSpec(root=per_case, layout="per_case", labels=None)),
        "batch_csv": load_cohort(folders / "batch.csv"),
        "glob": discover("glob", DatasetSpec(root=flat, images="*_ct.nii.gz", masks="*_seg.nii.gz",
                                             case_pattern=r"(?P<case_id>case\d+)_(ct|seg)\.nii\.gz", labels=None)),
    }
    tables = {}
    for name, cohort in cohorts.items():
        assert [c.case_id for c in cohort.cases] == ["case00", "case01", "case02", "case03"], name
        extract_cohort(cohort, ExtractSettings(), tmp_path / f"out_{name}")
        tables[name] = (tmp_path / f"out_{name}" / "features.csv").read_bytes()
    assert len(set(tables.values())) == 1


def test_csv_round_trips_with_plain_dtypes(tmp_path):
    extract_cohort(load_cohort(make_cohort(tmp_path / "c", n=3)), ExtractSettings(), tmp_path / "out")
    path = tmp_path / "out" / "features.csv"
    raw = path.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf") and b"\r" not in raw
    header = next(csv.reader(raw.decode("utf-8").splitlines()))
    assert header[0] == "case_id" and "Unnamed: 0" not in header  # no index column
    # what R's read.csv does: strings stay strings, every feature parses as a double with '.' decimals
    table = pd.read_csv(path, dtype={"case_id": str})
    assert table.drop(columns="case_id").dtypes.eq(np.float64).all()
    parquet = pd.read_parquet(tmp_path / "out" / "features.parquet")
    np.testing.assert_array_equal(table.drop(columns="case_id").to_numpy(),
                                  parquet.drop(columns="case_id").to_numpy())  # exact, not approximate


def test_tables_merge_prefixes_modalities(tmp_path):
    (tmp_path / "pet.csv").write_text("case_id,original_firstorder_Mean\na,1.5\nb,2.5\nc,3.0\n")
    (tmp_path / "ct.csv").write_text("case_id,original_firstorder_Mean\nb,40\na,30\n")
    result = runner.invoke(app, ["tables", "merge", str(tmp_path / "pet.csv"), str(tmp_path / "ct.csv"),
                                 "--prefixes", "pet_,ct_", "--out", str(tmp_path / "merged.csv")])
    assert result.exit_code == 0, result.output
    merged = pd.read_csv(tmp_path / "merged.csv")
    assert list(merged.columns) == ["case_id", "pet_original_firstorder_Mean", "ct_original_firstorder_Mean"]
    assert merged.set_index("case_id").loc["a"].tolist() == [1.5, 30.0]
    assert len(merged) == 2  # only cases present in every table
