"""Several images per case (PET + MR, or two time points): each part extracted as its own cohort, then one table.

Every modality goes through the single-modality extraction unchanged (:func:`radpipe.extract.stage.extract_cohort`,
with that modality's settings, into ``<out>/modalities/<name>/``), so its values are exactly those of a
single-modality run. The merged tables in ``<out>/`` prefix each column with the modality
(``pet_original_glcm_Contrast``); the codebook, QC ledger and diagnostics gain a ``modality`` column.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from radpipe._io import atomic_write_text, software_versions
from radpipe.cohort import Cohort
from radpipe.errors import ConfigError
from radpipe.extract import tables
from radpipe.extract.delta import delta_codebook, delta_features
from radpipe.extract.discretisation import describe_discretisation
from radpipe.extract.features import CaseResult
from radpipe.extract.runner import RunSummary
from radpipe.extract.settings import ExtractSettings

__all__ = ["MultiExtractResult", "extract_multimodal", "part_settings", "PART_FOLDERS"]

MODALITY_COLUMN = "modality"
#: where each part's own single-image outputs go, below the merged tables
PART_FOLDERS = {"modality": "modalities", "timepoint": "timepoints"}


def part_settings(cohort: Cohort, part: str, settings: ExtractSettings) -> ExtractSettings:
    """The recipe's extract settings with the keys the dataset gives for this modality put on top.

    Examples
    --------
    >>> from radpipe.config import DatasetSpec
    >>> from radpipe.cohort import Cohort
    >>> spec = DatasetSpec.model_validate({"root": ".", "modalities": {
    ...     "pet": {"images": "pet/*", "masks": "pet_masks/*", "extract": {"setting": {"binWidth": 0.5}}},
    ...     "mr": {"images": "mr/*", "masks": "mr_masks/*"}}})
    >>> cohort = Cohort("demo", spec, [])
    >>> recipe = ExtractSettings(setting={"binCount": 32}, min_voxels=20)
    >>> part_settings(cohort, "pet", recipe).setting, part_settings(cohort, "pet", recipe).min_voxels
    ({'binWidth': 0.5}, 20)
    >>> part_settings(cohort, "mr", recipe).setting
    {'binCount': 32}
    """
    modalities = cohort.spec.modalities or {}
    override = modalities[part].extract if part in modalities else None
    if override is None:
        return settings
    return settings.model_copy(update={key: getattr(override, key) for key in override.model_fields_set})


class MultiExtractResult:
    """What :func:`extract_multimodal` produced: the merged tables plus each part's own
    :class:`~radpipe.extract.stage.ExtractResult` (``parts``), with the same attributes a single extraction has."""

    def __init__(self, features: pd.DataFrame, qc: pd.DataFrame, summary: RunSummary, out_dir: Path,
                 parts: dict, failed: int, formats: tuple[str, ...]):
        self.features, self.qc, self.summary, self.out_dir = features, qc, summary, Path(out_dir)
        self.parts, self._failed, self.formats = parts, failed, formats
        self.tables_written = True
        self.warnings = [f"{name}: {text}" for name, part in parts.items() for text in part.warnings]
        self.discretisation = {name: part.discretisation for name, part in parts.items()}
        self.survey = None

    @property
    def discretisation_line(self) -> str:
        return "; ".join(f"{name} {describe_discretisation(part.discretisation)}" for name, part in self.parts.items())

    @property
    def n_failed(self) -> int:
        """Cases with a failed row in the QC ledger that are not in the merged table."""
        return self._failed

    def __repr__(self) -> str:
        s = self.summary
        return (f"MultiExtractResult({self.out_dir}: {len(self.features)} cases x {len(self.parts)} "
                f"{'modalities' if len(self.parts) > 1 else 'part'}, {s.computed} computed, {s.cached} from cache, "
                f"{self._failed} failed)")


def extract_multimodal(cohort: Cohort, settings: ExtractSettings, out_dir: str | Path, *, jobs: int = 1,
                       scheduler: str | None = None, cache_dir: str | Path | None = None,
                       formats: tuple[str, ...] = ("csv", "parquet"), pseudonymise: str | Path | None = None,
                       reference: str | Path | dict | None = None,
                       on_result: Callable[[CaseResult, bool], None] | None = None,
                       prefix_parts: bool = True) -> MultiExtractResult:
    """Extract every modality of a multimodal cohort and write one table with modality-prefixed columns.

    :func:`radpipe.extract.stage.extract_cohort` calls this for a cohort whose dataset declares ``modalities``;
    the arguments are the same. Each modality is extracted with :func:`part_settings` into
    ``out_dir/modalities/<name>/`` (its own tables, cache entries, discretisation and manifest), then:

    - ``features.csv`` / ``.parquet``: one row per case, ``<modality>_<pyradiomics name>`` columns;
    - ``features_long.csv``: the long form with a ``modality`` column;
    - ``codebook.csv``: each modality's codebook, columns prefixed, with ``modality``; display names start with it;
    - ``qc.csv`` and ``diagnostics.csv``: every modality's rows with a ``modality`` column, plus a row per case
      that lacks a modality (discovery) or whose extraction failed in one (here). With
      ``require_all_modalities: true`` such a case is left out of the table; with ``false`` it is kept with
      empty cells for that modality, which the model stage imputes within each training fold.

    ``reference`` (an earlier multimodal features folder) freezes each modality's bin width from
    ``reference/modalities/<name>``.

    Examples
    --------
    >>> import tempfile
    >>> from radpipe.demo import make_demo_cohort
    >>> from radpipe.cohort import discover
    >>> from radpipe.config import DatasetSpec
    >>> root = make_demo_cohort(Path(tempfile.mkdtemp()) / "study", n_cases=4)
    >>> spec = DatasetSpec.model_validate({"root": str(root), "modalities": {
    ...     "a": {"images": "images/*", "masks": "masks/*"},
    ...     "b": {"images": "images/*", "masks": "masks/*", "extract": {"setting": {"binCount": 8}}}}})
    >>> cohort = discover("two", spec)
    >>> result = extract_multimodal(cohort, ExtractSettings(featureClass={"firstorder": ["Mean"]}),
    ...                             Path(tempfile.mkdtemp()))
    >>> list(result.features.columns)
    ['a_original_firstorder_Mean', 'b_original_firstorder_Mean']
    >>> bool((result.features["a_original_firstorder_Mean"] == result.features["b_original_firstorder_Mean"]).all())
    True
    """
    from radpipe.extract.stage import extract_cohort  # the stage calls this module: imported when used

    if not cohort.parts:
        raise ConfigError(f"dataset '{cohort.name}' declares no modalities", key="modalities")
    if settings.roi_mode != "single" or settings.extra_masks:
        raise ConfigError("a multimodal dataset is extracted with one ROI per case and modality "
                          "(roi_mode: single, no extra_masks)", key="extract.roi_mode")
    out_dir = Path(out_dir)
    started, clock = datetime.now(UTC), time.perf_counter()
    folder = PART_FOLDERS[cohort.part_kind]
    kind = cohort.part_kind  # the name of the part column in the tables: "modality" or "timepoint"
    mapped, registration_rows = map_modalities(cohort, out_dir / folder)
    parts = {}
    for name, part in mapped.items():
        part_reference = reference
        if isinstance(reference, str | Path) and (Path(reference) / folder / name).is_dir():
            part_reference = Path(reference) / folder / name
        elif isinstance(reference, dict) and name in reference:
            part_reference = reference[name]
        parts[name] = extract_cohort(part, part_settings(cohort, name, settings), out_dir / folder / name, jobs=jobs,
                                     scheduler=scheduler, cache_dir=cache_dir, formats=formats,
                                     pseudonymise=pseudonymise, reference=part_reference, on_result=on_result)

    rename = _renamer(pseudonymise)  # after the parts: the first of them wrote the key file these ids come from
    case_ids = [rename(case.case_id) for case in cohort.cases]
    wides = {name: _plain_index(result.features) for name, result in parts.items()}
    require_all = cohort.spec.require_all_modalities if cohort.part_kind == "modality" else True
    late_rows = []
    kept = []
    for case_id in case_ids:
        missing = [name for name, wide in wides.items() if case_id not in wide.index]
        present = [name for name in wides if name not in missing]
        # a part missing at discovery already has its row; this is about extractions that failed
        discovered = {p.modality for p in cohort.problems if rename(p.case_id) == case_id} | {
            row["modality"] for row in registration_rows if row["status"] != "ok" and rename(row["case_id"]) == case_id}
        for name in missing:
            if name in discovered:
                continue
            if require_all or not present:
                late_rows.append(_qc_row(case_id, name, "failed", f"missing_{kind}",
                                         f"the {name} extraction failed (see the {name} rows): the case is left out "
                                         f"(it needs every {kind})" if require_all else
                                         f"the {name} extraction failed and so did every other {kind}", kind))
            else:
                late_rows.append(_qc_row(case_id, name, "fixed", "missing_modality",
                                         f"the {name} extraction failed (see the {name} rows): the case is kept, its "
                                         f"{name} features are empty and imputed within each training fold", kind))
        if present and (not missing or not require_all):
            kept.append(case_id)

    blocks = {name: wide.reindex(kept) for name, wide in wides.items()}
    books = {name: _read_csv(result.out_dir / "codebook.csv") for name, result in parts.items()}
    codebook = merged_codebook(books, prefix_parts=prefix_parts, part_column=kind)
    if kind == "timepoint":  # longitudinal: the change of every feature between the two time points
        first, second = list(blocks)
        changes, zero_notes = delta_features(blocks[first], blocks[second])
        n = len(changes.columns) // 2
        blocks["delta"] = changes.iloc[:, :n].rename(columns=lambda c: c.removeprefix("delta_"))
        blocks["reldelta"] = changes.iloc[:, n:].rename(columns=lambda c: c.removeprefix("reldelta_"))
        codebook["derivation"] = "measured at " + codebook[kind]
        codebook = pd.concat([codebook, delta_codebook(books[first], (first, second))], ignore_index=True)
        late_rows += [_qc_row(note["case_id"], "reldelta", "fixed", "zero_baseline",
                              f"{len(note['features'])} feature(s) are 0 at {first}, so their relative change is left "
                              f"empty: {', '.join(note['features'][:5])}{' …' if len(note['features']) > 5 else ''}",
                              kind) for note in zero_notes]
    prefix = (lambda name: f"{name}_") if prefix_parts else (lambda name: "")
    merged = pd.concat([block.add_prefix(prefix(name)) for name, block in blocks.items()], axis=1)
    merged.index.name = "case_id"
    wide_out = merged.reset_index()
    long_out = pd.concat([tables.long_table(block.dropna(how="all").rename_axis("case_id").reset_index())
                          .assign(**{kind: name}) for name, block in blocks.items()], ignore_index=True)
    long_out = long_out[["case_id", "roi", kind, *tables.LONG_COLUMNS[2:]]]
    problem_rows = [_qc_row(rename(p.case_id), p.modality, p.status, p.action, _renamed_text(p.reason, p.case_id, rename),
                            kind) for p in cohort.problems]
    problem_rows += [_qc_row(rename(row["case_id"]), row["modality"], "failed", "registration_failed",
                             f"registration onto {row['fixed']} failed: {row['reason']}; its {row['modality']} features "
                             "are not computed", kind) for row in registration_rows if row["status"] != "ok"]
    qc_columns = ["case_id", "roi", kind, "status", "action", "reason"]
    qc = pd.concat([_with_part(result.qc, name, kind) for name, result in parts.items()]
                   + [pd.DataFrame(problem_rows + late_rows, columns=qc_columns)], ignore_index=True)
    qc = qc[qc_columns].sort_values(["case_id", kind], kind="stable").reset_index(drop=True)
    # the single-image diagnostics already have a 'modality' column: the DICOM header's (PT, MR), kept renamed
    diagnostics = pd.concat([_with_part(_read_csv(result.out_dir / "diagnostics.csv")
                                        .rename(columns={"modality": "header_modality"}), name, kind)
                             for name, result in parts.items()], ignore_index=True)
    written = tables.write_extraction_tables(out_dir, wide_out, long_out, codebook, qc, diagnostics, formats)

    summary = RunSummary(computed=sum(r.summary.computed for r in parts.values()),
                         cached=sum(r.summary.cached for r in parts.values()),
                         fixed=int(qc.loc[qc["status"] == "fixed", "case_id"].nunique()),
                         results=[row for r in parts.values() for row in r.summary.results])
    # a case kept with one modality empty is not lost (its rows say so); failed means left out of the table
    summary.failed = len(set(qc.loc[qc["status"] == "failed", "case_id"]) - set(kept))
    summary.wall_seconds = time.perf_counter() - clock
    manifest = {
        "stage": "extract",
        "cohort": cohort.name,
        "cohort_root": str(cohort.spec.root),
        cohort.part_kind + "s": {name: {"folder": f"{folder}/{name}", "n_cases": len(cohort.parts[name].cases),
                                        "discretisation": result.discretisation,
                                        "settings": json.loads(part_settings(cohort, name, settings).model_dump_json())}
                                 for name, result in parts.items()},
        "require_all_modalities": require_all,
        "n_cases": len(kept),
        "computed": summary.computed, "cached": summary.cached, "failed": summary.failed, "fixed": summary.fixed,
        "pseudonymised": bool(pseudonymise),
        "versions": software_versions(),
        "outputs": {"sha256": written},
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_seconds": round(summary.wall_seconds, 3),
    }
    atomic_write_text(out_dir / "manifest.json", json.dumps(manifest, indent=2, default=str))
    return MultiExtractResult(merged, qc, summary, out_dir, parts, summary.failed, tuple(formats))


def map_modalities(cohort: Cohort, folder: Path) -> tuple[dict[str, Cohort], list[dict]]:
    """Each modality's cohort, with ``register_to`` / ``mask_from`` applied (:mod:`radpipe.register`).

    ``register_to: F``: the image (and its own mask, or with ``mask_from: F`` the mask of F) is registered onto F's
    grid and written to ``folder/<modality>/registered/``. ``mask_from: S`` alone: S's image is registered to this
    modality's image and S's mask carried onto this modality's grid, the image left as it is. Every registration
    writes a row to ``folder/<modality>/registration.csv``; a failed one (diverged, or mask overlap below
    ``min_dice``) drops that case's modality, as a QC row, rather than fusing badly registered images.
    """
    spec = cohort.spec.modalities or {}
    parts = dict(cohort.parts)
    rows: list[dict] = []
    for name, entry in spec.items():
        if not (entry.register_to or entry.mask_from):
            continue
        import SimpleITK as sitk

        from radpipe.cohort import Case
        from radpipe.extract.features import read_case_mask
        from radpipe.extract.io import read_image
        from radpipe.register import map_modality, mask_to_moving, register_images

        reference = entry.register_to or entry.mask_from
        fixed_cases = {case.case_id: case for case in cohort.parts[reference].cases}
        out = folder / name / "registered"
        out.mkdir(parents=True, exist_ok=True)
        cases, part_rows = [], []
        for case in cohort.parts[name].cases:
            other = fixed_cases.get(case.case_id)
            row = {"case_id": case.case_id, "modality": name, "fixed": reference}
            try:
                fixed, _ = read_image(_path(other.image))
                fixed_mask, _ = read_case_mask(Path(other.mask), fixed, None)
                moving, _ = read_image(_path(case.image))
                if entry.register_to:
                    own_mask = None if entry.mask_from else read_case_mask(Path(case.mask), moving, None)[0]
                    image, mask, qc = map_modality(fixed, moving, own_mask, entry.registration,
                                                   fixed_mask=None if entry.mask_from else fixed_mask)
                    mask = fixed_mask if entry.mask_from else mask
                else:  # mask transfer: this modality keeps its grid, the other's mask is carried onto it
                    result = register_images(fixed, moving, settings=entry.registration)
                    image, qc = moving, result.qc_row()
                    interpolation = result.settings.mask_interpolation
                    mask = mask_to_moving(fixed_mask, moving, result.transform, interpolation=interpolation)
                    if qc["status"] == "ok" and not sitk.GetArrayViewFromImage(mask).any():
                        qc.update(status="failed", reason="the mask is empty after it was carried onto this image")
            except Exception as exc:  # an unreadable pair is this case's problem, not the cohort's
                qc = {"status": "failed", "reason": f"could not register: {exc}"}
            row.update(qc)
            part_rows.append(row)
            if row["status"] != "ok":
                continue
            image_file, mask_file = case.image, out / f"{case.case_id}_mask.nii.gz"
            if entry.register_to:  # (a mask transfer leaves the image where it is)
                image_file = out / f"{case.case_id}_image.nii.gz"
                sitk.WriteImage(image, str(image_file), True)
            sitk.WriteImage(sitk.Cast(mask > 0, sitk.sitkUInt8), str(mask_file), True)
            cases.append(Case(case.case_id, image_file, mask_file, case.label, case.group))
        pd.DataFrame(part_rows).to_csv(folder / name / "registration.csv", index=False)
        rows += part_rows
        part = cohort.parts[name]
        parts[name] = Cohort(part.name, part.spec, cases, part.clinical, list(part.problems), list(part.notes))
    return parts, rows


def _path(image) -> str | tuple[str, ...]:
    return tuple(str(p) for p in image) if isinstance(image, tuple | list) else str(image)


def merged_codebook(books: dict[str, pd.DataFrame], *, prefix_parts: bool = True,
                    part_column: str = MODALITY_COLUMN) -> pd.DataFrame:
    """Each part's codebook with its columns prefixed, a ``modality`` column after ``column``, and display names
    that say which modality a feature comes from (``pet: Joint entropy``)."""
    frames = []
    for name, book in books.items():
        book = book.copy()
        if prefix_parts:
            book["column"] = name + "_" + book["column"]
            book["display_name"] = name + ": " + book["display_name"]
        book.insert(1, part_column, name)
        frames.append(book)
    return pd.concat(frames, ignore_index=True)


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:  # no case extracted: the part wrote an empty table
        return pd.DataFrame()


def _plain_index(wide: pd.DataFrame) -> pd.DataFrame:
    if wide.empty:
        return pd.DataFrame(index=pd.Index([], name="case_id"))
    return wide.drop(columns=["roi"], errors="ignore")


def _with_part(table: pd.DataFrame, name: str, column: str) -> pd.DataFrame:
    table = table.copy()
    table.insert(2 if "roi" in table.columns else min(1, len(table.columns)), column, name)
    return table


def _qc_row(case_id: str, part: str, status: str, action: str, reason: str, column: str = MODALITY_COLUMN) -> dict:
    return {"case_id": case_id, "roi": "", column: part, "status": status, "action": action, "reason": reason}


def _renamer(pseudonymise) -> Callable[[str], str]:
    if not pseudonymise:
        return lambda case_id: case_id
    from radpipe.pseudonym import Pseudonymiser

    return Pseudonymiser(pseudonymise)


def _renamed_text(text: str, case_id: str, rename) -> str:
    pseudonym = rename(case_id)
    return text if pseudonym == case_id else text.replace(case_id, pseudonym)
