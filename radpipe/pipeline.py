"""``radpipe run``: a recipe through extract → model → explain, each stage reading the files the last wrote.

The stages talk only through their output folders (``features/``, ``models/``, ``explain/``), so
any stage can be rerun alone, and a statistician can stop after the feature tables.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from radpipe._io import atomic_write_text
from radpipe.cohort import Cohort, load_cohort
from radpipe.config import Recipe
from radpipe.console import console, progress_bar, summary_table
from radpipe.errors import ConfigError
from radpipe.extract.stage import ExtractResult, extract_cohort
from radpipe.extract.tables import aggregate_rois, read_feature_table
from radpipe.pseudonym import Pseudonymiser


@dataclass
class RunResult:
    extract: ExtractResult
    external: dict[str, ExtractResult]
    model_dir: Path
    explain_dir: Path | None
    metrics: pd.DataFrame

    @property
    def n_failed(self) -> int:
        return self.extract.n_failed + sum(result.n_failed for result in self.external.values())


def extract_with_progress(cohort: Cohort, recipe_extract, out_dir: Path, *, jobs: int = 1,
                          scheduler: str | None = None, formats=("csv", "parquet"),
                          cache_dir: Path | None = None, pseudonymise: Path | None = None,
                          quiet: bool = False) -> ExtractResult:
    """extract_cohort with a progress bar and the closing summary table."""
    with progress_bar(f"extract {cohort.name}", len(cohort.cases)) as advance:
        def on_result(result, cached):
            advance(note=f"{result.case_id}{' (cached)' if cached else ''}"
                    + (" [red]failed[/]" if result.status == "failed" else ""))

        result = extract_cohort(cohort, recipe_extract, out_dir, jobs=jobs, scheduler=scheduler,
                                formats=formats, cache_dir=cache_dir, pseudonymise=pseudonymise,
                                on_result=on_result)
    if not quiet:
        s = result.summary
        rate = s.computed / s.wall_seconds if s.wall_seconds and s.computed else 0.0
        summary_table(f"extract {cohort.name} → {out_dir}", [
            ("cases", str(len(cohort.cases) + len(cohort.problems))),
            ("computed", str(s.computed)), ("from cache", str(s.cached)),
            ("fixed (see qc.csv)", str(s.fixed)), ("failed (see qc.csv)", str(result.n_failed)),
            ("wall time", f"{s.wall_seconds:.1f} s"), ("speed", f"{rate:.2f} cases/s"),
        ])
    return result


def modelling_table(features: pd.DataFrame, aggregate: str) -> pd.DataFrame:
    """One numeric row per patient: lesions aggregated as the recipe says."""
    table = aggregate_rois(features, aggregate) if "roi" in features.columns else features
    return table.select_dtypes("number")


def labelled(X: pd.DataFrame, labels: pd.Series) -> tuple[pd.DataFrame, pd.Series]:
    """Keep the cases that have both features and a label, in feature-table order."""
    common = [case_id for case_id in X.index if case_id in labels.index]
    return X.loc[common], labels.loc[common]


def batch_labels(table: pd.DataFrame, case_ids, settings, *, file: str | None, outer_folds: int | None = None,
                 name: str = "the training cohort", key: str = "model.batch_column") -> pd.Series:
    """The batch (scanner, centre) of each case for ComBat, from the labels table, checked before any work.

    A missing column, a case without a batch, a single batch, or a batch too small to appear at least twice in
    the inner training folds of nested CV is a ConfigError naming the file and ``key``.
    ``outer_folds=None`` checks only the column and the values (for external cohorts).
    """
    column = settings.batch_column
    if column not in table.columns:
        raise ConfigError(f"{name} has no batch column '{column}' for harmonise: {settings.harmonise} "
                          f"(columns: {list(table.columns)})", file=file, key=key)
    values = table[column].reindex(list(case_ids))
    absent = values.index[values.isna() | (values.astype(str).str.strip() == "")]
    if len(absent):
        raise ConfigError(f"{len(absent)} labelled case(s) of {name} have no '{column}' value, e.g. "
                          f"{absent[:5].tolist()}: ComBat needs every case's batch", file=file, key=key)
    values = values.astype(str).str.strip()
    if outer_folds is None:
        return values
    counts = values.value_counts()
    if len(counts) < 2:
        raise ConfigError(f"every labelled case has '{column}' = '{counts.index[0]}': with a single batch there "
                          "is nothing to harmonise (remove harmonise)", file=file, key=key)
    # an inner training fold holds about (1 - 1/outer)(1 - 1/inner) of the cases, and ComBat needs 2 of each
    # batch there; folds are stratified on outcome x batch, but on the outcome alone when a combined stratum is
    # smaller than the folds (small batches), so ask for about 4 to leave a margin
    share = (1 - 1 / outer_folds) * (1 - 1 / settings.inner_folds)
    needed = math.ceil(4 / share)
    small = counts[counts < needed]
    if len(small):
        raise ConfigError(
            f"batch(es) {small.to_dict()} of column '{column}' have fewer than {needed} labelled cases: an inner "
            f"training fold of the nested CV ({outer_folds} outer x {settings.inner_folds} inner folds) holds about "
            f"{share:.0%} of the cases, and ComBat needs at least 2 of every batch in each (about 4 expected leaves "
            "a margin for unlucky splits). Merge small batches (e.g. rare scanners into one 'other' value) in the "
            "labels file", file=file, key=key)
    return values


def train_from_tables(X: pd.DataFrame, y: pd.Series, settings, out_dir: Path, *, groups: pd.Series | None = None,
                      external: dict | None = None):
    from radpipe.model.train import train_models

    if y.nunique() < 2:
        raise ConfigError(f"training needs at least two outcome classes; found {sorted(y.unique())}", key="label")
    with console.status("[bold]training models (nested cross-validation)…") as status:
        result = train_models(X, y, settings, out_dir, groups=groups, external=external,
                              progress=lambda message: status.update(f"[bold]{message}"))
    return result


def explain_from_folder(model_dir: Path, X: pd.DataFrame, out_dir: Path, *, labels: pd.Series | None,
                        images: dict | None, settings, jobs: int = 1, patients: list[str] | None = None,
                        trust: bool = False):
    from radpipe.explain.report import explain

    total = len(patients) if patients else len(X)
    with progress_bar("explain patients", total) as advance:
        last = {"done": 0}

        def progress(done: int, _total: int) -> None:
            advance(done - last["done"])
            last["done"] = done

        return explain(model_dir, X, out_dir, labels=labels, images=images, patients=patients,
                       settings=settings, n_jobs=jobs, progress=progress, trust=trust)


def _cohort_batches(cohort: Cohort, settings, *, training: bool) -> pd.Series | None:
    """The labelled cases' batches when the recipe harmonises (None otherwise)."""
    if not settings.harmonise:
        return None
    file = str(cohort.spec.root / cohort.spec.labels) if cohort.spec.labels else None
    return batch_labels(cohort.clinical, cohort.labels.index, settings, file=file,
                        outer_folds=settings.outer_folds if training else None,
                        name=f"the labels table of dataset '{cohort.name}'")


def with_batch(X: pd.DataFrame, batches: pd.Series | None, column: str | None) -> pd.DataFrame:
    """X with the batch column ComBat reads (X unchanged when there are no batches)."""
    if batches is None:
        return X
    if column in X.columns:
        raise ConfigError(f"the batch column '{column}' has the name of a feature column; rename it in the "
                          "labels file", key="model.batch_column")
    return pd.concat([X, batches.reindex(X.index).rename(column)], axis=1)  # one concat: X may be fragmented


def _outcome_settings(settings, cohort: Cohort, classes: list[str]):
    """The model settings for this cohort's outcome, checked before extraction.

    A dataset's ``positive_class`` declares a binary outcome: it is copied into the model settings (unless the
    recipe sets its own) when the labels have exactly two classes. Discovery already leaves a third value out
    (``unknown_label``) when the positive class is one of the labels, so more than two classes here, or a
    positive class that is no label, is a ConfigError. A dataset without ``positive_class`` with three or more
    classes trains a multi-class model; ``model.positive_class`` is refused for it.
    """
    declared = cohort.spec.positive_class
    if declared and declared not in classes:
        raise ConfigError(
            f"dataset '{cohort.name}' sets positive_class '{declared}', which is not one of its labels {classes[:10]}: "
            "fix the value, or remove positive_class (with more than two classes the model is then multi-class)",
            key="positive_class")
    if settings.positive_class is not None:
        if len(classes) > 2:
            raise ConfigError(
                f"model.positive_class '{settings.positive_class}' applies only to a binary outcome, but dataset "
                f"'{cohort.name}' has {len(classes)} classes {classes[:10]}: remove it to train a multi-class model "
                "(every class is scored one-vs-rest)", key="model.positive_class")
        if settings.positive_class not in classes:
            raise ConfigError(f"model.positive_class '{settings.positive_class}' is not one of the labels of "
                              f"dataset '{cohort.name}' {classes}", key="model.positive_class")
        return settings
    if declared and len(classes) == 2:
        return settings.model_copy(update={"positive_class": declared})
    return settings


def run_recipe(recipe: Recipe, recipe_dir: Path, out_dir: str | Path, *, jobs: int = 1,
               scheduler: str | None = None, explain: bool = True,
               pseudonymise: Path | None = None) -> RunResult:
    """Run all three stages of ``recipe`` into ``out_dir`` (features/, models/, explain/).

    With ``pseudonymise=KEY_FILE`` every output carries hashed case ids (see radpipe.pseudonym).
    """
    out_dir = Path(out_dir)
    cohort = load_cohort(recipe.dataset, relative_to=recipe_dir)
    external_cohorts = {name: load_cohort(name, relative_to=recipe_dir) for name in recipe.external}
    classes = sorted(cohort.labels.unique())
    if len(classes) < 2:  # say so before hours of extraction, not after
        found = f"only {classes}" if classes else "no labels"
        raise ConfigError(
            f"dataset '{cohort.name}' has {found}: `radpipe run` trains a model and needs at least two outcome "
            "classes in its labels file (use `radpipe extract` for feature tables alone)", key="dataset")
    settings = _outcome_settings(recipe.model, cohort, classes)
    batches = _cohort_batches(cohort, recipe.model, training=True)
    external_batches = {name: _cohort_batches(ext, recipe.model, training=False)
                        for name, ext in external_cohorts.items()}
    if batches is not None:
        for name, values in external_batches.items():
            unseen = sorted(set(values) - set(batches))
            if unseen:
                raise ConfigError(
                    f"external cohort '{name}' has batch value(s) {unseen} in column '{recipe.model.batch_column}' "
                    f"that the training cohort lacks (its batches: {sorted(set(batches))}): ComBat is fitted on the "
                    "training cohort and cannot harmonise a scanner/centre it has not seen", key="model.batch_column")

    extracted = extract_with_progress(cohort, recipe.extract, out_dir / "features", jobs=jobs, scheduler=scheduler,
                                      pseudonymise=pseudonymise)
    external_results = {
        name: extract_with_progress(ext, recipe.extract, out_dir / f"features_{name}", jobs=jobs,
                                    scheduler=scheduler, pseudonymise=pseudonymise)
        for name, ext in external_cohorts.items()
    }
    rename = Pseudonymiser(pseudonymise) if pseudonymise else (lambda case_id: case_id)

    def keyed(series: pd.Series | None) -> pd.Series | None:
        return None if series is None else series.rename(index=rename).rename_axis("case_id")

    X = modelling_table(read_feature_table(out_dir / "features" / "features.csv"), recipe.extract.aggregate)
    X, y = labelled(X, keyed(cohort.labels))
    X = with_batch(X, keyed(batches), recipe.model.batch_column)
    groups = keyed(cohort.groups).loc[X.index] if cohort.groups is not None else None
    external = {}
    for name, result in external_results.items():
        ext_X = modelling_table(read_feature_table(result.out_dir / "features.csv"), recipe.extract.aggregate)
        ext_X, ext_y = labelled(ext_X, keyed(external_cohorts[name].labels))
        external[name] = with_batch(ext_X, keyed(external_batches[name]), recipe.model.batch_column), ext_y
    trained = train_from_tables(X, y, settings, out_dir / "models", groups=groups, external=external or None)
    metrics = trained.metrics
    summary_table("cross-validated performance", [
        (row.model, f"AUC {row.auc:.3f} (95% CI {row.auc_ci_low:.3f}–{row.auc_ci_high:.3f})")
        for row in metrics[metrics["cohort"] == "cv"].itertuples()
    ])

    explain_dir = None
    if explain:
        explain_dir = out_dir / "explain"
        images = {rename(case.case_id): (case.image, case.mask) for case in cohort.cases}
        explain_from_folder(out_dir / "models", X, explain_dir, labels=y, images=images,
                            settings=recipe.explain, jobs=jobs)
    atomic_write_text(out_dir / "manifest.json", json.dumps({
        "stage": "run", "recipe": recipe.model_dump(mode="json"), "dataset": cohort.name,
        "features": "features/", "models": "models/", "explain": "explain/" if explain else None,
    }, indent=2, default=str))
    return RunResult(extracted, external_results, out_dir / "models", explain_dir, metrics)
