"""``radpipe run``: a recipe through extract → model → explain, each stage reading the files the last wrote.

The stages talk only through their output folders (``features/``, ``models/``, ``explain/``), so
any stage can be rerun alone, and a statistician can stop after the feature tables.
"""

from __future__ import annotations

import json
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
    groups = keyed(cohort.groups).loc[X.index] if cohort.groups is not None else None
    external = {}
    for name, result in external_results.items():
        ext_X = modelling_table(read_feature_table(result.out_dir / "features.csv"), recipe.extract.aggregate)
        external[name] = labelled(ext_X, keyed(external_cohorts[name].labels))
    settings = recipe.model
    if settings.positive_class is None and cohort.spec.positive_class:
        settings = settings.model_copy(update={"positive_class": cohort.spec.positive_class})
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
