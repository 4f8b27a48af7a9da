"""A rerun in which nothing changed is a no-op, like ``make``: every case comes from the cache and the tables are
left exactly as they were (same bytes, not even rewritten). A table deleted or edited by hand is written again,
and a new case is the only one computed."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from radpipe.cli import app
from radpipe.cohort import load_cohort
from radpipe.extract.settings import ExtractSettings
from radpipe.extract.stage import extract_cohort
from tests.synth import make_cohort, write_case

TABLES = ("features.csv", "features_long.csv", "features.parquet", "codebook.csv", "diagnostics.csv", "qc.csv")
SETTINGS = ExtractSettings(setting={"binWidth": 10}, featureClass={"firstorder": None, "glcm": None})


def _snapshot(out):
    """Bytes and modification time of every table."""
    return {name: ((out / name).read_bytes(), (out / name).stat().st_mtime_ns) for name in TABLES}


def _manifest(out) -> dict:
    return json.loads((out / "manifest.json").read_text())


@pytest.fixture
def first_run(tmp_path):
    cohort_dir = make_cohort(tmp_path / "cohort", n=4)
    out = tmp_path / "out"
    first = extract_cohort(load_cohort(cohort_dir), SETTINGS, out)
    assert (first.summary.computed, first.summary.cached, first.tables_written) == (4, 0, True)
    return cohort_dir, out, first


def test_rerun_with_nothing_changed_computes_nothing_and_leaves_the_tables_alone(first_run):
    cohort_dir, out, first = first_run
    before = _snapshot(out)

    again = extract_cohort(load_cohort(cohort_dir), SETTINGS, out)

    assert (again.summary.computed, again.summary.cached, again.tables_written) == (0, 4, False)
    assert _snapshot(out) == before  # same bytes, and not even written again
    manifest = _manifest(out)
    assert (manifest["computed"], manifest["cached"], manifest["tables_written"]) == (0, 4, False)
    # the returned tables are the ones the first run returned, read back from the files
    pd.testing.assert_frame_equal(again.features, first.features)
    pd.testing.assert_frame_equal(again.qc, first.qc)
    assert again.n_failed == first.n_failed == 0


@pytest.mark.parametrize("damage", ["delete", "edit"])
def test_a_deleted_or_edited_table_is_written_again(first_run, damage):
    cohort_dir, out, _ = first_run
    before = {name: data for name, (data, _) in _snapshot(out).items()}
    if damage == "delete":
        (out / "features.csv").unlink()
    else:  # same size, one value changed: an edit a timestamp check could miss
        text = before["qc.csv"].replace(b",ok,", b",OK,", 1)
        assert text != before["qc.csv"]
        (out / "qc.csv").write_bytes(text)

    again = extract_cohort(load_cohort(cohort_dir), SETTINGS, out)

    assert (again.summary.computed, again.summary.cached, again.tables_written) == (0, 4, True)
    assert {name: (out / name).read_bytes() for name in TABLES} == before


def test_an_added_case_is_the_only_one_computed(first_run):
    cohort_dir, out, first = first_run
    write_case(cohort_dir, "case99", seed=99)

    grown = extract_cohort(load_cohort(cohort_dir), SETTINGS, out)

    assert (grown.summary.computed, grown.summary.cached, grown.tables_written) == (1, 4, True)
    assert list(grown.features.index) == [*first.features.index, "case99"]
    pd.testing.assert_frame_equal(grown.features.loc[first.features.index], first.features)


def test_changed_settings_or_formats_rewrite_the_tables(first_run):
    cohort_dir, out, _ = first_run
    csv_only = extract_cohort(load_cohort(cohort_dir), SETTINGS, out, formats=("csv",))
    assert (csv_only.summary.computed, csv_only.tables_written) == (0, True)  # the cases come from the cache
    again = extract_cohort(load_cohort(cohort_dir), SETTINGS, out, formats=("csv",))
    assert again.tables_written is False
    pd.testing.assert_frame_equal(again.features, csv_only.features)  # read back from the CSV, values exact

    changed_settings = ExtractSettings(setting={"binWidth": 5}, featureClass={"firstorder": None, "glcm": None})
    changed = extract_cohort(load_cohort(cohort_dir), changed_settings, out, formats=("csv",))
    assert (changed.summary.computed, changed.tables_written) == (4, True)


def test_pseudonymised_rerun_is_a_no_op_too(tmp_path):
    cohort_dir = make_cohort(tmp_path / "cohort", n=3)
    key = tmp_path / "secret" / "key.json"
    key.parent.mkdir()
    first = extract_cohort(load_cohort(cohort_dir), SETTINGS, tmp_path / "out", pseudonymise=key)
    before = _snapshot(tmp_path / "out")
    again = extract_cohort(load_cohort(cohort_dir), SETTINGS, tmp_path / "out", pseudonymise=key)
    assert (again.summary.computed, again.tables_written) == (0, False)
    assert _snapshot(tmp_path / "out") == before
    pd.testing.assert_frame_equal(again.features, first.features)

    key.unlink()  # a new secret gives new pseudonyms: every table is written again with them
    renamed = extract_cohort(load_cohort(cohort_dir), SETTINGS, tmp_path / "out", pseudonymise=key)
    assert renamed.tables_written is True
    assert set(renamed.features.index).isdisjoint(first.features.index)


def test_the_command_says_nothing_changed(tmp_path):
    cohort_dir = make_cohort(tmp_path / "cohort", n=3)
    command = ["extract", str(cohort_dir), "--out", str(tmp_path / "out"), "--format", "csv"]
    assert CliRunner().invoke(app, command).exit_code == 0
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    assert "nothing changed since the last run: 3 cases from the cache" in " ".join(result.output.split())
