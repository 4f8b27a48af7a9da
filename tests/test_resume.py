"""Crash safety: a run killed with SIGKILL mid-extraction resumes with only the unfinished cases, ending with
tables byte-identical to an uninterrupted run; a damaged cache entry is recomputed, never trusted; a second
run into the same output folder refuses with a clear message instead of interleaving."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from radpipe.cli import app
from tests.synth import make_cohort

TABLES = ("features.csv", "features_long.csv", "features.parquet", "codebook.csv", "diagnostics.csv", "qc.csv")
N_CASES = 12


def _command(cohort: Path, out: Path, jobs: int = 1) -> list[str]:
    return [sys.executable, "-m", "radpipe", "extract", str(cohort), "--out", str(out), "--jobs", str(jobs)]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _cache_entries(out: Path) -> list[Path]:
    return sorted((out / ".cache").glob("*/*.json"))


def _start_and_wait_for(cohort: Path, out: Path, n_entries: int, timeout: float = 120,
                        jobs: int = 1) -> subprocess.Popen:
    process = subprocess.Popen(_command(cohort, out, jobs), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while len(_cache_entries(out)) < n_entries:
        if process.poll() is not None:
            raise AssertionError(f"the run ended before {n_entries} cases were cached: "
                                 f"{process.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("timed out waiting for cache entries")
        time.sleep(0.01)
    return process


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The cohort and an uninterrupted run of it."""
    root = tmp_path_factory.mktemp("resume")
    cohort = make_cohort(root / "cohort", n=N_CASES)
    result = CliRunner().invoke(app, ["extract", str(cohort), "--out", str(root / "reference"), "--jobs", "1"])
    assert result.exit_code == 0, result.output
    return cohort, root / "reference"


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def _assert_tables_identical(out: Path, reference: Path) -> None:
    for name in TABLES:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


@pytest.mark.parametrize("jobs", [1, 2])
def test_killed_run_resumes_with_only_the_unfinished_cases(reference, tmp_path, jobs):
    """With --jobs 2 each worker's result is cached as it arrives, before the next one is awaited."""
    cohort, reference_out = reference
    out = tmp_path / "out"
    process = _start_and_wait_for(cohort, out, n_entries=3, jobs=jobs)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    finished = len(_cache_entries(out))
    unfinished = N_CASES - finished
    assert 0 < unfinished < N_CASES, f"the kill came too late ({finished} cases cached)"
    assert not (out / "features.csv").exists()  # no table is written before every case is done

    again = subprocess.run(_command(cohort, out, jobs), env=_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    manifest = _manifest(out)
    print(f"\n--jobs {jobs}: killed after {finished}/{N_CASES} cases cached; the rerun computed {manifest['computed']} "
          f"(unfinished: {unfinished}) and took {manifest['cached']} from the cache")
    assert (manifest["computed"], manifest["cached"]) == (unfinished, finished)
    _assert_tables_identical(out, reference_out)


def test_damaged_or_half_written_cache_entries_are_recomputed(reference, tmp_path):
    cohort, reference_out = reference
    out = tmp_path / "out"
    runner = CliRunner()
    assert runner.invoke(app, ["extract", str(cohort), "--out", str(out)]).exit_code == 0
    entries = _cache_entries(out)
    assert len(entries) == N_CASES
    entries[0].write_bytes(entries[0].read_bytes()[:100])  # cut short
    entries[1].write_text('["not", "a", "case"]')  # valid JSON, wrong shape
    entries[2].write_bytes(b"\x89PNG\x00\xff garbage")  # not text at all
    entries[3].write_text(json.dumps({"case_id": "case03"}))  # fields missing
    # what a kill during atomic_write leaves behind: a temporary file, never read as an entry
    leftover = entries[4].parent / f".{entries[4].name}.abc123.tmp"
    leftover.write_text('{"case_id": "case')
    (out / ".features.csv.xyz789.tmp").write_text("case_id,orig")  # likewise for a table

    result = runner.invoke(app, ["extract", str(cohort), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    manifest = _manifest(out)
    assert (manifest["computed"], manifest["cached"]) == (4, N_CASES - 4)
    _assert_tables_identical(out, reference_out)
    assert not leftover.exists() and not list(out.glob(".*.tmp"))  # cleaned up under the lock


def test_cache_entry_of_another_case_is_not_taken(reference, tmp_path):
    cohort, reference_out = reference
    out = tmp_path / "out"
    runner = CliRunner()
    assert runner.invoke(app, ["extract", str(cohort), "--out", str(out)]).exit_code == 0
    entries = _cache_entries(out)
    swapped = json.loads(entries[1].read_text())
    entries[0].write_text(json.dumps(swapped))  # a valid entry, but for another case
    assert runner.invoke(app, ["extract", str(cohort), "--out", str(out)]).exit_code == 0
    assert _manifest(out)["computed"] == 1
    _assert_tables_identical(out, reference_out)


def test_second_run_into_the_same_folder_refuses_while_the_first_holds_it(reference, tmp_path):
    cohort, reference_out = reference
    out = tmp_path / "out"
    first = _start_and_wait_for(cohort, out, n_entries=1)
    first.send_signal(signal.SIGSTOP)  # hold the first run mid-extraction, lock taken
    try:
        second = subprocess.run(_command(cohort, out), env=_env(), capture_output=True, text=True, timeout=300)
    finally:
        first.send_signal(signal.SIGCONT)
    stdout, stderr = first.communicate(timeout=300)
    assert second.returncode == 2, second.stderr[-2000:]
    message = " ".join(second.stderr.split())
    assert "another radpipe run is writing to" in message and "--out" in message, message
    assert "Traceback" not in second.stderr
    assert first.returncode == 0, stderr.decode()[-2000:]
    assert _manifest(out)["computed"] == N_CASES  # the refused run computed nothing into the folder
    _assert_tables_identical(out, reference_out)
