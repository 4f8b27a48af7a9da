"""Reporting checklists filled in from a run: CLEAR (Kocak et al., Insights Imaging 2023;14:75,
doi:10.1186/s13244-023-01415-8) and METRICS (Kocak et al., Insights Imaging 2024;15:8,
doi:10.1186/s13244-023-01572-w).

The items are listed in ``data/checklist_clear.csv`` and ``data/checklist_metrics.csv`` with short names in
radpipe's own words (read the published checklists for the full wording). Each item names a rule; a rule looks
at this run's files and answers with a status, a value and a pointer to where the run shows it:

* ``filled``: the run's outputs answer the item (the value says how; the pointer shows where);
* ``partly``: the run gives part of the answer, the author adds the rest;
* ``needs the author``: radpipe cannot know (ethics, acquisition protocol, discussion, ...);
* ``not applicable``: the item is about a pipeline radpipe does not have (end-to-end deep learning).

A pointer is ``<path>[#<key>]`` relative to the run folder (the folder holding ``features/``, ``models/`` and
``explain/``): for a JSON file the key is a dotted path into it (``models/model_card.json#cv.outer``), for a CSV a
column name (``models/metrics.csv#auc_ci_low``). :func:`pointer_exists` checks one, so a test can assert that
every filled row points at something real.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import pandas as pd

from radpipe.model.folder import ModelFolder

CHECKLISTS = {
    "clear": ("CLEAR", "Kocak et al. CheckList for EvaluAtion of Radiomics research (CLEAR). Insights Imaging "
                       "2023;14:75", "https://doi.org/10.1186/s13244-023-01415-8"),
    "metrics": ("METRICS", "Kocak et al. METhodological RadiomICs Score (METRICS). Insights Imaging 2024;15:8",
                "https://doi.org/10.1186/s13244-023-01572-w"),
}
STATUSES = ("filled", "partly", "needs the author", "not applicable")
CHECKLIST_COLUMNS = ["item", "section", "name", "status", "value", "pointer"]
AUTHOR = ("needs the author", "", "")


def checklist_items(name: str) -> pd.DataFrame:
    """The item definitions of checklist ``name`` (``clear`` or ``metrics``): item, section, name, rule.

    >>> items = checklist_items("clear")
    >>> len(items), int(items["item"].iloc[-1])
    (58, 58)
    >>> len(checklist_items("metrics"))
    30
    """
    source = files("radpipe.explain").joinpath("data", f"checklist_{name}.csv")
    with source.open("r", encoding="utf-8") as handle:
        return pd.read_csv(handle)


@dataclass
class RunFiles:
    """The folders of one run and the records the rules read."""

    root: Path
    models: ModelFolder
    features: Path | None
    explain: Path
    card: dict = field(default_factory=dict)
    extraction: dict = field(default_factory=dict)
    metrics: pd.DataFrame | None = None

    @classmethod
    def of(cls, model_dir: Path, explain_dir: Path, features_dir: Path | None) -> RunFiles:
        folder = ModelFolder(Path(model_dir))
        dirs = [folder.path.resolve(), Path(explain_dir).resolve()]
        if features_dir is not None:
            dirs.append(Path(features_dir).resolve())
        root = Path(os.path.commonpath(dirs))
        extraction = {}
        manifest = Path(features_dir) / "manifest.json" if features_dir else None
        if manifest is not None and manifest.is_file():
            extraction = json.loads(manifest.read_text())
        return cls(root, folder, Path(features_dir).resolve() if features_dir else None,
                   Path(explain_dir).resolve(), folder.card(), extraction, folder.metrics())

    def ptr(self, path: Path, key: str = "") -> str:
        """A pointer to ``path`` (and ``key`` in it) relative to the run folder; '' when the file is missing."""
        if not Path(path).exists():
            return ""
        rel = Path(os.path.relpath(Path(path).resolve(), self.root)).as_posix()
        return f"{rel}#{key}" if key else rel

    def model_file(self, name: str) -> Path:
        return self.models.path / name

    def feature_file(self, name: str) -> Path:
        return (self.features or self.root / "features") / name

    @property
    def cv(self) -> dict:
        return self.card.get("cv", {})

    def external_cohorts(self) -> list[str]:
        if self.metrics is None or "cohort" not in self.metrics:
            return []
        return [str(c) for c in dict.fromkeys(self.metrics["cohort"]) if c != "cv"]


def pointer_exists(root: str | Path, pointer: str) -> bool:
    """Whether ``pointer`` (``path[#key]``) names an existing file and, with a key, a JSON field or CSV column in it.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> _ = (root / "card.json").write_text('{"cv": {"outer": "5-fold"}}')
    >>> pointer_exists(root, "card.json#cv.outer"), pointer_exists(root, "card.json#cv.inner")
    (True, False)
    """
    path, _, key = pointer.partition("#")
    target = Path(root) / path
    if not path or not target.exists():
        return False
    if not key:
        return True
    if target.suffix == ".json":
        node = json.loads(target.read_text())
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True
    if target.suffix == ".csv":
        return key in pd.read_csv(target, nrows=0).columns
    return False


# ---------------------------------------------------------------- rules: (status, value, pointer)

Rule = Callable[[RunFiles], tuple[str, str, str]]


def _filled_or_author(pointer: str, value: str, status: str = "filled") -> tuple[str, str, str]:
    return (status, value, pointer) if pointer else AUTHOR


def _guideline(run: RunFiles):
    # this very file, written a moment later: its pointer cannot wait for it to exist
    written = Path(os.path.relpath(run.explain / "checklist_clear.md", run.root)).as_posix()
    return "partly", "radpipe writes this checklist from the run; say in the paper that you followed it", written


def _sample_size(run: RunFiles):
    size = run.models.sample_size()
    if not size:
        return AUTHOR
    return ("filled", f"Riley et al. minimum n {size.get('n_required')} against {size.get('n_available')} available",
            run.ptr(run.models.sample_size_path, "n_required"))


def _eligibility(run: RunFiles):
    qc = run.feature_file("qc.csv")
    if not qc.exists():
        return AUTHOR
    failed = pd.read_csv(qc, dtype=str).query("status == 'failed'")["case_id"].nunique()
    return ("partly", f"{failed} cases excluded by image/mask quality control, with reasons; clinical inclusion "
                      "criteria are the author's", run.ptr(qc, "reason"))


def _pipeline(run: RunFiles):
    return _filled_or_author(run.ptr(run.model_file("model_card.json"), "pipeline_steps"),
                             "every fitted step in order (model card); flow of cases and methods in study.html")


def _data_source(run: RunFiles):
    cohort = run.extraction.get("cohort")
    return _filled_or_author(run.ptr(run.feature_file("manifest.json"), "cohort_root"),
                             f"cohort '{cohort}' read from its folder; public or private is the author's to say",
                             "partly")


def _split(run: RunFiles):
    return _filled_or_author(run.ptr(run.models.splits_path, "folds"),
                             f"{run.cv.get('outer', 'outer cross-validation')}; case ids of every fold listed")


def _clinical_predictors(run: RunFiles):
    if run.models.comparison_path.exists():
        return ("partly", "clinical covariates named in the recipe and encoded per fold; their definitions are the "
                          "author's", run.ptr(run.models.comparison_path, "kind"))
    return AUTHOR


def _outcome(run: RunFiles):
    return _filled_or_author(run.ptr(run.model_file("model_card.json"), "positive_class"),
                             f"outcome classes {run.card.get('classes')}, positive '{run.card.get('positive_class')}';"
                             " how the outcome was established is the author's", "partly")


def _segmentation(run: RunFiles):
    qc = run.feature_file("qc.csv")
    return ("partly", "masks checked (size, geometry, fixes logged); who or what drew them is the author's",
            run.ptr(qc, "status")) if qc.exists() else AUTHOR


def _segmentation_agreement(run: RunFiles):
    found = sorted(run.root.glob("*/agreement.csv"))  # a segment stage's folder beside features/
    if found:
        return "partly", "Dice/HD95 of radpipe's segmentation against expert masks", run.ptr(found[0])
    return AUTHOR


def _preprocessing(run: RunFiles):
    steps = (run.extraction.get("settings") or {}).get("preprocessing") or []
    return _filled_or_author(run.ptr(run.feature_file("manifest.json"), "settings.preprocessing"),
                             f"{len(steps)} pre-processing step(s)" if steps else "no pre-processing beyond resampling")


def _resampling(run: RunFiles):
    setting = ((run.extraction.get("pyradiomics_params") or {}).get("setting") or {})
    if setting.get("resampledPixelSpacing"):
        return _filled_or_author(run.ptr(run.feature_file("manifest.json"),
                                         "pyradiomics_params.setting.resampledPixelSpacing"),
                                 f"{setting['resampledPixelSpacing']} mm, {setting.get('interpolator', '')}")
    return _filled_or_author(run.ptr(run.feature_file("manifest.json"), "spacing"),
                             "no resampling; the voxel spacing of the images is recorded")


def _discretisation(run: RunFiles):
    disc = run.extraction.get("discretisation") or {}
    value = (f"fixed bin width {disc.get('binWidth')} {disc.get('intensity_unit') or ''}".strip()
             if disc.get("binWidth") is not None else "see the manifest")
    return _filled_or_author(run.ptr(run.feature_file("manifest.json"), "discretisation"), value)


def _image_types(run: RunFiles):
    types = list((run.extraction.get("pyradiomics_params") or {}).get("imageType") or {})
    return _filled_or_author(run.ptr(run.feature_file("manifest.json"), "pyradiomics_params.imageType"),
                             ", ".join(types) or "original")


def _software(run: RunFiles):
    versions = run.extraction.get("versions", {})
    tool = next((f"{k} {v}" for k, v in versions.items() if k.startswith("pyradiomics")), "")
    return _filled_or_author(run.ptr(run.feature_file("manifest.json"), "versions"),
                             f"{tool}, radpipe {versions.get('radpipe', '')}; IBSI codes in codebook.csv")


def _feature_classes(run: RunFiles):
    classes = list((run.extraction.get("pyradiomics_params") or {}).get("featureClass") or {})
    return _filled_or_author(run.ptr(run.feature_file("manifest.json"), "pyradiomics_params.featureClass"),
                             ", ".join(classes))


def _feature_count(run: RunFiles):
    codebook = run.feature_file("codebook.csv")
    if not codebook.exists():
        return AUTHOR
    n = len(pd.read_csv(codebook, usecols=["column"]))
    return "filled", f"{n} features per region, each described", run.ptr(codebook, "column")


def _extraction_settings(run: RunFiles):
    return _filled_or_author(run.ptr(run.feature_file("manifest.json"), "pyradiomics_params"),
                             "every pyradiomics setting as resolved, including the defaults")


def _steps(run: RunFiles) -> str:
    return str(run.card.get("pipeline_steps", ""))


def _missing_data(run: RunFiles):
    imputer = "impute" in _steps(run)
    return _filled_or_author(run.ptr(run.model_file("model_card.json"), "pipeline_steps"),
                             "imputed within each training fold (pipeline step 'impute'); failed cases in qc.csv"
                             if imputer else "no imputation step")


def _class_balance(run: RunFiles):
    counts = run.card.get("class_counts", {})
    weight = "class_weight='balanced'" in _steps(run)
    how = f"rebalanced by {run.cv.get('rebalance')}" if run.cv.get("rebalance") else (
        "class-weighted estimators" if weight else "no rebalancing")
    return _filled_or_author(run.ptr(run.model_file("model_card.json"), "class_counts"),
                             f"{', '.join(f'{v} {k}' for k, v in counts.items())}; {how}")


def _robustness(run: RunFiles):
    table = run.feature_file("robustness.csv")
    if table.exists():
        return "partly", "feature ICCs under image perturbation", run.ptr(table)
    return AUTHOR


def _scaling(run: RunFiles):
    return _filled_or_author(run.ptr(run.model_file("model_card.json"), "pipeline_steps"),
                             "standardised within each training fold" if "StandardScaler" in _steps(run)
                             else "see pipeline_steps")


def _selection(run: RunFiles):
    cv = run.cv
    return _filled_or_author(run.ptr(run.model_file("model_card.json"), "cv.selection"),
                             f"correlation filter |r| > {cv.get('correlation_threshold')}, {cv.get('selection')} "
                             f"selection of {cv.get('select_k')} features, within training folds")


def _redundancy(run: RunFiles):
    return _filled_or_author(run.ptr(run.model_file("model_card.json"), "cv.correlation_threshold"),
                             f"features correlated above |r| = {run.cv.get('correlation_threshold')} removed per fold")


def _dimensionality(run: RunFiles):
    size = run.models.sample_size()
    if size:
        return ("filled", f"{size.get('events_per_predictor')} events per candidate predictor; Riley minimum n "
                          f"{size.get('n_required')}", run.ptr(run.models.sample_size_path, "events_per_predictor"))
    return _filled_or_author(run.ptr(run.model_file("model_card.json"), "cv.select_k"),
                             f"{run.cv.get('select_k')} selected features for {run.card.get('n_cases')} cases",
                             "partly")


def _algorithms(run: RunFiles):
    models = [] if run.metrics is None else list(dict.fromkeys(run.metrics["model"]))
    return _filled_or_author(run.ptr(run.models.metrics_path, "model"), ", ".join(map(str, models)))


def _tuning(run: RunFiles):
    return _filled_or_author(run.ptr(run.model_file("model_card.json"), "cv.inner"),
                             f"{run.cv.get('inner')}; chosen values in best_params")


def _confounders(run: RunFiles):
    if run.cv.get("harmonise"):
        return ("partly", f"batch effects of '{run.cv.get('batch_column')}' removed by {run.cv.get('harmonise')}",
                run.ptr(run.model_file("model_card.json"), "cv.harmonise"))
    if run.cv.get("group_column"):
        return ("partly", f"cases of one '{run.cv.get('group_column')}' kept in the same fold",
                run.ptr(run.model_file("model_card.json"), "cv.group_column"))
    return AUTHOR


def _model_choice(run: RunFiles):
    return _filled_or_author(run.ptr(run.models.metrics_path, "auc"),
                             f"the model with the best out-of-fold AUC ({run.card.get('model_name')})")


def _testing(run: RunFiles):
    ext = run.external_cohorts()
    return _filled_or_author(run.ptr(run.model_file("model_card.json"), "cv.outer"),
                             f"nested cross-validation ({run.cv.get('outer')})"
                             + (f"; external: {', '.join(ext)}" if ext else "; no external cohort"))


def _metrics(run: RunFiles):
    return _filled_or_author(run.ptr(run.models.metrics_path, "auc"),
                             "AUC, balanced accuracy, sensitivity, specificity, PPV, NPV, F1, Brier; the rationale is"
                             " the author's", "partly")


def _performance(run: RunFiles):
    return _filled_or_author(run.ptr(run.models.metrics_path, "auc"),
                             "AUC, balanced accuracy, sensitivity, specificity, PPV, NPV, F1, Brier, calibration")


def _uncertainty(run: RunFiles):
    return _filled_or_author(run.ptr(run.models.metrics_path, "auc_ci_low"),
                             f"stratified bootstrap 95% CIs ({run.cv.get('bootstrap')} resamples)")


def _statistical_comparison(run: RunFiles):
    if run.models.comparison_path.exists():
        return "filled", "DeLong's test and paired bootstrap of AUC differences", run.ptr(
            run.models.comparison_path, "delong_p")
    return _filled_or_author(run.ptr(run.models.metrics_path, "delong_p_vs_best"),
                             "DeLong's test of each model against the best")


def _clinical_comparison(run: RunFiles):
    if run.models.comparison_path.exists():
        return "filled", "clinical, radiomics and combined models on the same folds", run.ptr(
            run.models.comparison_path, "auc_difference")
    return AUTHOR


def _added_value(run: RunFiles):
    if run.models.comparison_path.exists():
        return _clinical_comparison(run)
    return _filled_or_author(run.ptr(run.models.decision_curve_path, "net_benefit"),
                             "decision curves against treat-all and treat-none; no clinical comparison model",
                             "partly")


def _simple_model(run: RunFiles):
    models = [] if run.metrics is None else set(run.metrics["model"])
    if "logreg" in models or "clinical" in models:
        return "filled", "penalised logistic regression among the compared models", run.ptr(run.models.metrics_path,
                                                                                              "model")
    return AUTHOR


def _calibration(run: RunFiles):
    return _filled_or_author(run.ptr(run.models.calibration_summary_path, "calibration_slope"),
                             "calibration plot, calibration-in-the-large and slope with bootstrap CIs")


def _explainability(run: RunFiles):
    return _filled_or_author(run.ptr(run.explain / "shap_values.csv"),
                             "SHAP for every case, LIME and similar patients on the patient pages")


def _baseline(run: RunFiles):
    return _filled_or_author(run.ptr(run.model_file("model_card.json"), "class_counts"),
                             "outcome counts only; demographics are the author's", "partly")


def _case_flow(run: RunFiles):
    return _filled_or_author(run.ptr(run.explain / "study.html"),
                             "found, failed quality control, included, folds, external (study.html)")


def _feature_statistics(run: RunFiles):
    return _filled_or_author(run.ptr(run.model_file("model_card.json"), "selected_features"),
                             "features the final model kept; per-fold stability in fold_stability.csv", "partly")


def _external(run: RunFiles):
    ext = run.external_cohorts()
    if not ext:
        return AUTHOR
    return "filled", f"final models tested on {', '.join(ext)}", run.ptr(run.models.metrics_path, "cohort")


def _multicentre(run: RunFiles):
    if run.external_cohorts():
        return "partly", "an external cohort was tested; whether it is another centre is the author's", run.ptr(
            run.models.metrics_path, "cohort")
    return AUTHOR


def _feature_data(run: RunFiles):
    return _filled_or_author(run.ptr(run.feature_file("features.csv")),
                             "the feature table is ready to share; publishing it is the author's", "partly")


def _settings_shared(run: RunFiles):
    return _filled_or_author(run.ptr(run.feature_file("manifest.json"), "settings"),
                             "extraction settings written with the features; publishing them is the author's",
                             "partly")


def _code(run: RunFiles):
    return _filled_or_author(run.ptr(run.model_file("model_card.json"), "versions"),
                             "radpipe is open source and the versions are recorded; share the recipe", "partly")


def _model_file(run: RunFiles):
    return _filled_or_author(run.ptr(run.models.model_path),
                             "model.joblib with its sha256 and model card, loadable by `radpipe predict`")


def _ready_to_use(run: RunFiles):
    return _filled_or_author(run.ptr(run.models.model_path),
                             "`radpipe predict` applies the saved model to new feature tables", "partly")


def _deep_learning(run: RunFiles):
    return "not applicable", "radpipe uses hand-crafted features, no end-to-end deep learning", ""


RULES: dict[str, Rule] = {
    "author": lambda run: AUTHOR, "guideline": _guideline, "sample_size": _sample_size, "eligibility": _eligibility,
    "pipeline": _pipeline, "data_source": _data_source, "split": _split, "clinical_predictors": _clinical_predictors,
    "outcome": _outcome, "segmentation": _segmentation, "segmentation_agreement": _segmentation_agreement,
    "preprocessing": _preprocessing, "resampling": _resampling, "discretisation": _discretisation,
    "image_types": _image_types, "software": _software, "feature_classes": _feature_classes,
    "feature_count": _feature_count, "extraction_settings": _extraction_settings, "missing_data": _missing_data,
    "class_balance": _class_balance, "robustness": _robustness, "scaling": _scaling, "selection": _selection,
    "redundancy": _redundancy, "dimensionality": _dimensionality, "algorithms": _algorithms, "tuning": _tuning,
    "confounders": _confounders, "model_choice": _model_choice, "testing": _testing, "metrics": _metrics,
    "performance": _performance, "uncertainty": _uncertainty, "statistical_comparison": _statistical_comparison,
    "clinical_comparison": _clinical_comparison, "added_value": _added_value, "simple_model": _simple_model,
    "calibration": _calibration, "explainability": _explainability, "baseline": _baseline, "case_flow": _case_flow,
    "feature_statistics": _feature_statistics, "external": _external, "multicentre": _multicentre,
    "feature_data": _feature_data, "settings_shared": _settings_shared, "code": _code, "model_file": _model_file,
    "ready_to_use": _ready_to_use, "deep_learning": _deep_learning,
}


def fill_checklist(name: str, run: RunFiles) -> pd.DataFrame:
    """Checklist ``name`` answered from ``run``: columns :data:`CHECKLIST_COLUMNS`."""
    rows = []
    for item in checklist_items(name).itertuples(index=False):
        try:
            status, value, pointer = RULES[item.rule](run)
        except (OSError, ValueError, KeyError) as exc:  # an unreadable optional file: leave the item to the author
            status, value, pointer = "needs the author", f"radpipe could not read its record: {exc}", ""
        rows.append({"item": int(item.item), "section": item.section, "name": item.name, "status": status,
                     "value": value, "pointer": pointer})
    return pd.DataFrame(rows, columns=CHECKLIST_COLUMNS)


def _markdown(name: str, table: pd.DataFrame, run: RunFiles) -> str:
    title, citation, doi = CHECKLISTS[name]
    counts = table["status"].value_counts()
    lines = [
        f"# {title} checklist, filled in by radpipe from this run", "",
        f"Source: {citation}, {doi}. Item names here are radpipe's short paraphrases; read the published checklist "
        "for each item's full wording before you tick it.", "",
        f"Pointers are paths relative to the run folder `{run.root}` (`file#key`: a field of a JSON file or a column "
        "of a CSV).", "",
        "Status: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in STATUSES if counts.get(s, 0)), "",
        "| item | section | item (paraphrased) | status | value | where |", "|---|---|---|---|---|---|",
    ]
    for row in table.itertuples(index=False):
        value = str(row.value).replace("|", "\\|")
        lines.append(f"| {row.item} | {row.section} | {row.name} | {row.status} | {value} | "
                     f"{'`' + row.pointer + '`' if row.pointer else ''} |")
    return "\n".join(lines) + "\n"


def write_checklists(model_dir: str | Path, explain_dir: str | Path,
                     features_dir: str | Path | None = None) -> dict[str, pd.DataFrame]:
    """Write ``checklist_clear.csv``/``.md`` and ``checklist_metrics.csv``/``.md`` into ``explain_dir``.

    Parameters
    ----------
    model_dir
        Folder written by ``radpipe train``.
    explain_dir
        Where the checklists go (the explain folder; ``study.html`` is looked for there).
    features_dir
        The extract stage's folder; without it the extraction items are left to the author.

    Returns
    -------
    dict
        ``{"clear": table, "metrics": table}`` with columns :data:`CHECKLIST_COLUMNS`.

    Examples
    --------
    >>> import tempfile
    >>> work = Path(tempfile.mkdtemp())
    >>> (work / "models").mkdir()
    >>> tables = write_checklists(work / "models", work / "explain")
    >>> sorted(p.name for p in (work / "explain").iterdir())
    ['checklist_clear.csv', 'checklist_clear.md', 'checklist_metrics.csv', 'checklist_metrics.md']
    >>> bool(tables["clear"]["status"].value_counts()["needs the author"] > 40)
    True
    """
    explain_dir = Path(explain_dir)
    explain_dir.mkdir(parents=True, exist_ok=True)
    run = RunFiles.of(Path(model_dir), explain_dir, Path(features_dir) if features_dir else None)
    tables = {}
    for name in CHECKLISTS:
        table = fill_checklist(name, run)
        table.to_csv(explain_dir / f"checklist_{name}.csv", index=False)
        (explain_dir / f"checklist_{name}.md").write_text(_markdown(name, table, run), encoding="utf-8")
        tables[name] = table
    return tables
