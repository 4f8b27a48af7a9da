"""The extract stage as one call: cohort in, feature tables, QC ledger and manifest out."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from filelock import FileLock, Timeout

from radpipe._io import atomic_write_text, software_versions
from radpipe.cohort import Cohort
from radpipe.errors import ConfigError
from radpipe.extract import tables
from radpipe.extract.features import CaseResult
from radpipe.extract.runner import DigestMemo, ResultCache, RunSummary, case_inputs, run_cases
from radpipe.extract.settings import ExtractSettings
from radpipe.pseudonym import Pseudonymiser

FORMATS = ("csv", "parquet")


@dataclass
class ExtractResult:
    features: pd.DataFrame  # indexed by case_id (plus a roi column for multi-lesion cohorts)
    qc: pd.DataFrame
    summary: RunSummary
    out_dir: Path

    @property
    def n_failed(self) -> int:
        """Cases with at least one failed ledger row (including files that could not be paired)."""
        return self.summary.failed


def output_lock(out_dir: Path, wait_seconds: float = 0.0) -> FileLock:
    """One run per output folder: a second run waits up to ``wait_seconds``, then refuses."""
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(out_dir / ".radpipe.lock"))
    try:
        lock.acquire(timeout=wait_seconds)
    except Timeout:
        raise ConfigError(
            f"another radpipe run is writing to {out_dir} (lock file .radpipe.lock); "
            "wait for it to finish or choose another --out", key="--out") from None
    return lock


def reject_odd_dimensions(summary: RunSummary) -> list[str]:
    """Fail the cases whose image dimension (2D/3D) differs from most of the cohort's; return their ids.

    A PNG dropped among NIfTI volumes gives shape2D instead of shape features: its row is not comparable with
    the others, and its columns would add empty cells to every other row. Ties keep 3D.
    """
    dimensions = {result.case_id: int(result.diagnostics[0]["dimension"]) for result in summary.results
                  if result.status != "failed" and result.diagnostics and "dimension" in result.diagnostics[0]}
    counts = Counter(dimensions.values())
    if len(counts) < 2:
        return []
    majority = max(counts, key=lambda d: (counts[d], d))
    odd = sorted(case_id for case_id, d in dimensions.items() if d != majority)
    for index, result in enumerate(summary.results):
        if result.case_id in odd:
            summary.results[index] = CaseResult.failure(
                result.case_id,
                f"{dimensions[result.case_id]}D image in a cohort of {majority}D images "
                f"({counts[majority]} of {len(dimensions)} cases): its features are not comparable with the "
                f"others'; extract it in a cohort of its own", action="rejected")
    summary.failed = sum(r.status == "failed" for r in summary.results)
    summary.fixed = sum(r.status == "fixed" for r in summary.results)
    return odd


def extract_cohort(cohort: Cohort, settings: ExtractSettings, out_dir: str | Path, *, jobs: int = 1,
                   scheduler: str | None = None, cache_dir: str | Path | None = None,
                   formats: tuple[str, ...] = FORMATS, pseudonymise: str | Path | None = None,
                   on_result: Callable[[CaseResult, bool], None] | None = None) -> ExtractResult:
    """Extract every case of ``cohort`` and write the tables into ``out_dir``.

    Writes ``features.csv`` (wide), ``features_long.csv``, ``features.parquet``, ``codebook.csv``,
    ``diagnostics.csv``, ``qc.csv`` and ``manifest.json``. Finished cases are cached under
    ``out_dir/.cache`` (or ``cache_dir``), so rerunning after a crash or after adding cases only
    computes what is new.

    With ``pseudonymise=KEY_FILE`` every case id in the outputs is replaced by a stable hashed id
    (the key file holds the secret and the mapping), file names are left out of diagnostics.csv,
    and the cache, which knows the real ids, is kept beside the key file instead of in ``out_dir``.
    """
    out_dir = Path(out_dir)
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ConfigError(f"unknown format(s) {sorted(unknown)}; choose from {', '.join(FORMATS)}", key="--format")
    started = datetime.now(UTC)
    clock = time.perf_counter()
    lock = output_lock(out_dir)
    try:
        pseudonyms = Pseudonymiser(pseudonymise) if pseudonymise else None
        shared_cache = cache_dir is not None
        if pseudonyms and not shared_cache:
            cache_dir = Path(f"{pseudonymise}.cache")  # the cache knows real case ids: keep it with the key
        cache_folder = Path(cache_dir) if cache_dir else out_dir / ".cache"
        memo = DigestMemo(cache_folder)
        items = case_inputs(cohort, settings, memo)
        memo.save()
        cache = ResultCache(cache_folder)
        # a killed run can leave temporary files behind (never half tables: writes are atomic); the lock
        # guarantees no other run is writing here now. A shared --cache-dir is left alone.
        for leftover in out_dir.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)
        if not shared_cache:
            cache.remove_leftovers()
        summary = run_cases(items, settings, cache, jobs=jobs, scheduler=scheduler, on_result=on_result)
        reject_odd_dimensions(summary)
        problem_rows = [
            {"case_id": p.case_id, "roi": "", "status": p.status, "action": p.action, "reason": p.reason}
            for p in cohort.problems
        ]
        wide = tables.feature_table(summary.results)
        qc = tables.qc_table(summary.results, problem_rows)
        diagnostics = tables.diagnostics_table(summary.results)
        inputs = {item.case_id: {"image_sha256": item.image_sha256, "mask_sha256": item.mask_sha256}
                  for item in items}
        if pseudonyms:
            wide = pseudonyms.table(wide)
            qc = pseudonyms.table(qc, text_columns=("reason",))
            diagnostics = pseudonyms.table(diagnostics.drop(columns=["image_file", "mask_file"], errors="ignore"),
                                           text_columns=("conversions",))
            inputs = {pseudonyms(case_id): hashes for case_id, hashes in inputs.items()}
            pseudonyms.save()
        params = settings.pyradiomics_params()
        prep = "; ".join(step.step for step in settings.preprocessing) or "none"

        if "csv" in formats:
            tables.write_csv(wide, out_dir / "features.csv")
            tables.write_csv(tables.long_table(wide), out_dir / "features_long.csv")
        if "parquet" in formats:
            tables.write_parquet(wide, out_dir / "features.parquet")
        from radpipe.extract.ibsi import ibsi_table

        tables.write_csv(tables.codebook_table(list(wide.columns), params, ibsi_table(), prep),
                         out_dir / "codebook.csv")
        tables.write_csv(diagnostics, out_dir / "diagnostics.csv")
        tables.write_csv(qc, out_dir / "qc.csv")
        manifest = {
            "stage": "extract",
            "cohort": cohort.name,
            "cohort_root": str(cohort.spec.root),
            "n_cases": len(items),
            "computed": summary.computed,
            "cached": summary.cached,
            "failed": int((qc.groupby("case_id")["status"].apply(lambda s: (s == "failed").any())).sum()),
            "fixed": summary.fixed,
            "settings": json.loads(settings.model_dump_json()),
            "pyradiomics_params": params,
            "pseudonymised": bool(pseudonyms),
            "inputs": inputs,
            "versions": software_versions(),
            "started": started.isoformat(timespec="seconds"),
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "wall_seconds": round(time.perf_counter() - clock, 3),
        }
        atomic_write_text(out_dir / "manifest.json", json.dumps(manifest, indent=2, default=str))
    finally:
        lock.release()
    index = wide.set_index("case_id") if not wide.empty else wide
    summary.failed = manifest["failed"]
    return ExtractResult(index, qc, summary, out_dir)
