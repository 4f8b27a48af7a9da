"""The extract stage as one call: cohort in, feature tables, QC ledger and manifest out."""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from filelock import FileLock, Timeout

from radpipe._io import atomic_write_text, sha256_bytes_of, software_versions
from radpipe.cohort import Cohort
from radpipe.errors import ConfigError
from radpipe.extract import tables
from radpipe.extract.discretisation import (
    describe_discretisation,
    reference_discretisation,
    resolve_discretisation,
)
from radpipe.extract.feature_qc import degenerate_features
from radpipe.extract.features import CaseInput, CaseResult
from radpipe.extract.runner import DigestMemo, ResultCache, RunSummary, case_inputs, run_cases
from radpipe.extract.settings import ExtractSettings
from radpipe.extract.survey import CohortSurvey, summarise, survey_rows
from radpipe.pseudonym import Pseudonymiser

FORMATS = ("csv", "parquet")
# bump when the table-writing code changes what it writes: reruns then rewrite the tables
# (2: codebook feature_qc column; 3: codebook units in px for 2D images without spacing)
TABLES_FORMAT = 3


class ExtractResult:
    """What ``extract_cohort`` produced: the feature table (indexed by case_id, plus a roi column for
    multi-lesion cohorts), the QC ledger, the run summary and the output folder.

    ``tables_written`` is False when nothing had changed since the previous run into ``out_dir`` (same
    cases, inputs, settings and formats, and every table still as written): the tables were left as they
    were, and ``features`` / ``qc`` are read back from them on first use.

    ``discretisation`` is the bin width used and where it came from (as in ``manifest.json``; None when
    pyradiomics' default was left in place), ``warnings`` the sentences the user should read (bin width,
    voxel spacing), ``survey`` the :class:`~radpipe.extract.survey.CohortSurvey` they were derived from, and
    :attr:`discretisation_line` a one-line summary for the console.
    """

    def __init__(self, features: pd.DataFrame | None, qc: pd.DataFrame | None, summary: RunSummary, out_dir: Path,
                 *, tables_written: bool = True, formats: tuple[str, ...] = FORMATS,
                 discretisation: dict | None = None, warnings: list[str] | None = None,
                 survey: CohortSurvey | None = None):
        self._features, self._qc = features, qc
        self.summary, self.out_dir = summary, Path(out_dir)
        self.tables_written, self.formats = tables_written, formats
        self.discretisation, self.warnings, self.survey = discretisation, list(warnings or []), survey

    @property
    def discretisation_line(self) -> str:
        """``discretisation: binWidth 0.25 SUV (auto: the median ROI gets 42 grey levels)``."""
        return describe_discretisation(self.discretisation)

    @property
    def features(self) -> pd.DataFrame:
        if self._features is None:
            self._features = _read_features(self.out_dir, self.formats)
        return self._features

    @property
    def qc(self) -> pd.DataFrame:
        if self._qc is None:
            self._qc = pd.read_csv(self.out_dir / "qc.csv", dtype=str, keep_default_na=False)
        return self._qc

    @property
    def n_failed(self) -> int:
        """Cases with at least one failed ledger row (including files that could not be paired)."""
        return self.summary.failed

    def __repr__(self) -> str:
        s = self.summary
        return (f"ExtractResult({self.out_dir}: {s.n_cases} cases, {s.computed} computed, {s.cached} from cache, "
                f"{s.failed} failed{'' if self.tables_written else ', tables unchanged'}, "
                f"{len(self.warnings)} warning(s))")


def _read_features(out_dir: Path, formats: tuple[str, ...] = FORMATS) -> pd.DataFrame:
    """The wide table as ``extract_cohort`` returns it, read back from what it wrote (Parquet when there is one;
    the CSV holds every float at full precision, and pandas reads it back exactly)."""
    if "parquet" in formats:
        wide = pd.read_parquet(out_dir / "features.parquet")
    else:
        wide = pd.read_csv(out_dir / "features.csv", dtype={"case_id": str, "roi": str})
    return wide.set_index("case_id") if not wide.empty else wide


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
                   reference: str | Path | dict | None = None,
                   on_result: Callable[[CaseResult, bool], None] | None = None) -> ExtractResult:
    """Extract every case of ``cohort`` and write the tables into ``out_dir``.

    Writes ``features.csv`` (wide), ``features_long.csv``, ``features.parquet``, ``codebook.csv``,
    ``diagnostics.csv``, ``qc.csv`` and ``manifest.json``. Finished cases are cached under
    ``out_dir/.cache`` (or ``cache_dir``), so rerunning after a crash or after adding cases only
    computes what is new. A rerun in which nothing changed (every case from the cache, the same
    settings and formats, and every table still holding the bytes the manifest records) leaves the
    tables as they are and only records the run in ``manifest.json``, like ``make``; a table deleted
    or edited by hand is written again.

    With ``pseudonymise=KEY_FILE`` every case id in the outputs is replaced by a stable hashed id
    (the key file holds the secret and the mapping), file names are left out of diagnostics.csv,
    and the cache, which knows the real ids, is kept beside the key file instead of in ``out_dir``.

    Discretisation: when the recipe sets neither ``binWidth`` nor ``binCount``, one fixed bin width is chosen
    for the whole cohort from its ROI intensity ranges (the median ROI gets 32-64 grey levels), unless
    ``reference`` (the training cohort's features folder, its manifest.json, a model folder, or a
    ``discretisation`` record) supplies the frozen one. The choice, the grey levels it gives and any warning
    (a recipe width giving the median ROI fewer than 8 or more than 512 levels, voxel spacing that varies or
    is anisotropic without resampling) are in ``manifest.json`` and on the result. Degenerate feature columns
    (constant, placeholder values, flat ROIs) are named in the codebook's ``feature_qc`` column.
    """
    if cohort.parts:  # several images per case: each modality through this function, then one merged table
        from radpipe.extract.multimodal import extract_multimodal

        return extract_multimodal(cohort, settings, out_dir, jobs=jobs, scheduler=scheduler, cache_dir=cache_dir,
                                  formats=formats, pseudonymise=pseudonymise, reference=reference,
                                  on_result=on_result)
    out_dir = Path(out_dir)
    frozen = reference if isinstance(reference, dict) or reference is None else reference_discretisation(reference)
    formats = tuple(formats)
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
        # a second, cached read of every case: the discretisation has to be known before extracting
        survey = summarise(survey_rows(items, settings, jobs=jobs, cache_dir=cache_folder), settings)
        settings, discretisation, bin_warnings = resolve_discretisation(
            settings, survey.ok["roi_min"], survey.ok["roi_max"], reference=frozen, unit=survey.intensity_unit)
        warnings = bin_warnings + survey.warnings
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
        known_ids = len(pseudonyms.mapping) if pseudonyms else 0
        outputs_key = _outputs_key(items, summary.keys, problem_rows, settings, formats, pseudonyms)
        previous = _unchanged_outputs(out_dir, outputs_key) if summary.computed == 0 else None
        if previous is not None:
            written = previous
            wide = qc = None
            if pseudonyms and len(pseudonyms.mapping) != known_ids:
                pseudonyms.save()
        else:
            wide, qc, written = _write_tables(out_dir, summary.results, problem_rows, settings, formats, pseudonyms,
                                              intensity_unit=survey.intensity_unit,
                                              length_unit=survey.length_unit)
        summary.failed = _failed_cases(summary.results, problem_rows)
        inputs = {item.case_id: {"image_sha256": item.image_sha256, "mask_sha256": item.mask_sha256}
                  for item in items}
        if pseudonyms:
            inputs = {pseudonyms(case_id): hashes for case_id, hashes in inputs.items()}
        manifest = {
            "stage": "extract",
            "cohort": cohort.name,
            "cohort_root": str(cohort.spec.root),
            "n_cases": len(items),
            "computed": summary.computed,
            "cached": summary.cached,
            "failed": summary.failed,
            "fixed": summary.fixed,
            "tables_written": previous is None,
            "settings": json.loads(settings.model_dump_json()),
            "pyradiomics_params": settings.pyradiomics_params(),
            "engine": _engine_record(settings),
            "discretisation": discretisation,
            "spacing": _spacing_record(survey),
            "warnings": warnings,
            # what discovery saw that is not a case (layout, image series without a segmentation): counts, and
            # with --pseudonymise any case id (a layout example names one) as its pseudonym
            "cohort_notes": [pseudonyms.text(note, [item.case_id for item in items]
                                             + [row["case_id"] for row in problem_rows]) if pseudonyms else note
                             for note in cohort.notes],
            "pseudonymised": bool(pseudonyms),
            "inputs": inputs,
            "versions": software_versions(),
            "outputs": {"key": outputs_key, "sha256": written},
            "started": started.isoformat(timespec="seconds"),
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "wall_seconds": round(time.perf_counter() - clock, 3),
        }
        atomic_write_text(out_dir / "manifest.json", json.dumps(manifest, indent=2, default=str))
    finally:
        lock.release()
    if wide is not None:
        wide = wide.set_index("case_id") if not wide.empty else wide
    return ExtractResult(wide, qc, summary, out_dir, tables_written=previous is None, formats=formats,
                         discretisation=discretisation, warnings=warnings, survey=survey)


def _engine_record(settings: ExtractSettings) -> dict:
    """Which feature engine computed the table, and its version."""
    from importlib.metadata import version

    name = settings.engine
    try:
        return {"name": name, "version": version("mirp" if name == "mirp" else "pyradiomics-bhklab")}
    except Exception:  # a pyradiomics installed under another distribution name
        return {"name": name, "version": software_versions().get(name, "")}


def _spacing_record(survey: CohortSurvey) -> dict:
    """The cohort's voxel spacing for the manifest: median and range per axis (after preprocessing)."""
    return {"median_mm": list(survey.median_spacing),
            "range_mm": [list(pair) for pair in survey.spacing_range()] if len(survey.ok) else [],
            "varies": survey.spacing_varies, "anisotropic": survey.anisotropic, "resampled": survey.resampled}


def _write_tables(out_dir: Path, results: list[CaseResult], problem_rows: list[dict], settings: ExtractSettings,
                  formats: tuple[str, ...], pseudonyms: Pseudonymiser | None, *, intensity_unit: str = "a.u.",
                  length_unit: str = "mm") -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """Build and write every table; return the wide table, the QC ledger and {file name: sha256 written}."""
    wide = tables.feature_table(results)
    qc = tables.qc_table(results, problem_rows)
    diagnostics = tables.diagnostics_table(results)
    if pseudonyms:
        wide = pseudonyms.table(wide)
        qc = pseudonyms.table(qc, text_columns=("reason",))
        diagnostics = pseudonyms.table(diagnostics.drop(columns=["image_file", "mask_file"], errors="ignore"),
                                       text_columns=("conversions",))
        pseudonyms.save()
    params = settings.pyradiomics_params()
    prep = "; ".join(step.step for step in settings.preprocessing) or "none"
    from radpipe.extract.ibsi import ibsi_table

    if settings.engine == "mirp":  # MIRP's columns already carry IBSI-based names
        from radpipe.extract.mirp_engine import mirp_codebook, mirp_keywords

        codebook = mirp_codebook(list(wide.columns), mirp_keywords(settings)[0], prep, intensity_unit=intensity_unit)
    else:
        codebook = tables.codebook_table(list(wide.columns), params, ibsi_table(), prep,
                                         intensity_unit=intensity_unit, length_unit=length_unit,
                                         feature_qc=degenerate_features(wide), names=settings.names)
    # the long table keeps pyradiomics' parts (image type, class, feature) whatever the column names
    long = tables.long_table(wide)
    if settings.names != "pyradiomics" and settings.engine != "mirp":
        wide = wide.rename(columns=dict(zip(codebook["pyradiomics_column"], codebook["column"], strict=True)))
    written = tables.write_extraction_tables(out_dir, wide, long, codebook, qc, diagnostics, formats)
    return wide, qc, written


def _failed_cases(results: list[CaseResult], problem_rows: list[dict]) -> int:
    """Cases with at least one failed row in the QC ledger."""
    failed = {row.case_id for result in results for row in result.qc if row.status == "failed"}
    return len(failed | {row["case_id"] for row in problem_rows if row["status"] == "failed"})


def _outputs_key(items: list[CaseInput], keys: dict[str, str], problem_rows: list[dict], settings: ExtractSettings,
                 formats: tuple[str, ...], pseudonyms: Pseudonymiser | None) -> str:
    """A hash of everything the tables are made from: every case's cache key (in order), the files that could
    not be paired, the settings, the formats and the pseudonyms. The same key means the same table bytes."""
    ids = [item.case_id for item in items] + [row["case_id"] for row in problem_rows]
    payload = json.dumps({
        "format": TABLES_FORMAT,
        "radpipe": software_versions().get("radpipe"),
        "cases": [[item.case_id, keys[item.case_id]] for item in items],
        "problems": problem_rows,
        "settings": settings.fingerprint(),
        "formats": sorted(set(formats)),
        "names": settings.names,  # column names change the tables, not the cached feature values
        "pseudonyms": [pseudonyms(case_id) for case_id in ids] if pseudonyms else None,
    }, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def _unchanged_outputs(out_dir: Path, outputs_key: str) -> dict[str, str] | None:
    """{file name: sha256} of the previous run's tables when they were made from ``outputs_key`` and every one
    still holds exactly those bytes; None when anything differs (then every table is written again)."""
    try:
        record = json.loads((out_dir / "manifest.json").read_text()).get("outputs") or {}
    except (OSError, ValueError, AttributeError):
        return None
    files = record.get("sha256")
    if record.get("key") != outputs_key or not isinstance(files, dict) or not files:
        return None
    for name, digest in files.items():
        path = out_dir / name
        if not path.is_file() or sha256_bytes_of(path) != digest:
            return None
    return files
