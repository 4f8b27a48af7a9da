"""``radpipe run``: a recipe through extract → model → explain, each stage reading the files the last wrote.

The stages talk only through their output folders (``features/``, ``models/``, ``explain/``), so
any stage can be rerun alone, and a statistician can stop after the feature tables. ``run_recipe``
never prints: it tells a :class:`RunHooks` what happens (the command line shows progress bars).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from radpipe._io import atomic_write_text
from radpipe.cohort import Cohort, load_cohort
from radpipe.config import Recipe
from radpipe.extract.discretisation import read_discretisation
from radpipe.extract.stage import ExtractResult, extract_cohort
from radpipe.extract.tables import read_feature_table
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


class RunHooks:
    """What :func:`run_recipe` tells its caller while it works; every hook does nothing here.

    The command line subclasses it with progress bars and summary tables (``radpipe/_cli_progress.py``).
    """

    def note(self, message: str) -> None:
        """Something the user should read before the work starts (reduced folds, dropped features)."""

    @contextmanager
    def extracting(self, cohort: Cohort, out_dir: Path) -> Iterator[Callable]:
        """Around one cohort's extraction; yields ``on_result(case_result, cached)``."""
        yield lambda result, cached: None

    def extracted(self, cohort: Cohort, result: ExtractResult) -> None:
        """After one cohort's extraction (its warnings and summary are in ``result``)."""

    @contextmanager
    def training(self, n_fits: int) -> Iterator[tuple[Callable[[str], None], Callable[[str], None]]]:
        """Around training; yields ``(progress(message), advance(note))`` for ``n_fits`` fits."""
        yield (lambda message: None), (lambda note: None)

    def trained(self, result) -> None:
        """After training (``result`` is a :class:`~radpipe.model.train.TrainResult`)."""

    @contextmanager
    def explaining(self, n_patients: int) -> Iterator[Callable[[int, int], None]]:
        """Around the explain stage; yields ``progress(done, total)``."""
        yield lambda done, total: None


def _check_negative_controls(recipe: Recipe, survival: bool, n_classes: int) -> None:
    from radpipe.errors import ConfigError

    if survival or n_classes != 2:
        raise ConfigError("negative controls are compared by AUC, so they need a binary outcome "
                          f"(this recipe's is {'time-to-event' if survival else f'{n_classes}-class'})",
                          key="negative_controls")
    if recipe.extract.roi_mode != "single" or recipe.extract.extra_masks:
        raise ConfigError("negative controls need one ROI per case (extract.roi_mode: single, no extract.extra_masks)",
                          key="negative_controls")


def _check_robust_features(recipe: Recipe, requested, out_dir: Path, pseudonymise: Path | None):
    """The model settings with ``robust_features`` pointing at a table: a given one is read now (a missing file or
    column is refused before any extraction); ``auto`` points at the one this run computes on the training cohort."""
    source = requested.robust_features
    if not source:
        return requested
    if source != "auto":
        from radpipe.robustness.table import read_robustness

        read_robustness(source)
        return requested
    if pseudonymise:
        from radpipe.errors import ConfigError

        raise ConfigError("model.robust_features: auto writes perturbed-feature tables with the real case ids; with "
                          "--pseudonymise run `radpipe robustness` apart and give its robustness.csv",
                          key="model.robust_features")
    return requested.model_copy(update={"robust_features": str(Path(out_dir) / "robustness" / "robustness.csv")})


def run_recipe(recipe: Recipe, recipe_dir: Path, out_dir: str | Path, *, jobs: int = 1,
               scheduler: str | None = None, explain: bool = True,
               pseudonymise: Path | None = None, hooks: RunHooks | None = None) -> RunResult:
    """Run all three stages of ``recipe`` into ``out_dir`` (features/, models/, explain/).

    Every check of the outcomes (labels, positive class, folds, groups, batches) runs before the first
    case is extracted (:func:`radpipe.model.inputs.check_recipe_inputs`). External cohorts are extracted
    with the training cohort's bin width. With ``pseudonymise=KEY_FILE`` every output carries hashed case
    ids (see radpipe.pseudonym). ``hooks`` hears about progress (see :class:`RunHooks`).

    Examples
    --------
    A recipe written in a notebook, on a small synthetic cohort:

    >>> import tempfile
    >>> from radpipe.config import Recipe
    >>> from radpipe.demo import make_demo_cohort
    >>> work = Path(tempfile.mkdtemp())
    >>> cohort = make_demo_cohort(work / "cohort", n_cases=20)
    >>> recipe = Recipe.model_validate({
    ...     "name": "small", "dataset": str(cohort),
    ...     "extract": {"featureClass": {"shape": [], "firstorder": []}},
    ...     "model": {"models": ["logreg"], "positive_class": "aggressive", "outer_folds": 4, "bootstrap": 0}})
    >>> result = run_recipe(recipe, work, work / "out", explain=False)
    >>> result.metrics.loc[0, ["cohort", "model"]].tolist(), bool(0.5 < result.metrics.loc[0, "auc"] <= 1)
    (['cv', 'logreg'], True)
    """
    from radpipe.model.inputs import (
        LABEL_COLUMN,
        check_recipe_inputs,
        modelling_table,
        training_inputs,
        with_dataset_outcome,
    )
    from radpipe.model.train import fit_models
    from radpipe.model.validate import fit_count

    hooks = hooks or RunHooks()
    out_dir = Path(out_dir)
    cohort = load_cohort(recipe.dataset, relative_to=recipe_dir)
    external_cohorts = {name: load_cohort(name, relative_to=recipe_dir) for name in recipe.external}
    recipe = recipe.model_copy(update={"model": with_dataset_outcome(recipe.model, cohort)})
    survival = recipe.model.is_survival
    if survival:  # a time-to-event outcome: the dataset's outcome table holds the time and event columns
        from radpipe.model.inputs import check_survival_recipe_inputs, survival_training_inputs
        from radpipe.model.survival import fit_survival_models

        checked = check_survival_recipe_inputs(cohort, recipe.model, external=external_cohorts)
    else:
        checked = check_recipe_inputs(cohort, recipe.model, external=external_cohorts)  # before hours of extraction
    for message in checked.notes():
        hooks.note(message)
    if recipe.negative_controls:  # refused now, not after hours of extraction and training
        _check_negative_controls(recipe, survival, len(checked.classes) if not survival else 0)
    requested = _check_robust_features(recipe, checked.requested, out_dir, pseudonymise)

    def extract(one: Cohort, folder: Path, reference: Path | None = None) -> ExtractResult:
        with hooks.extracting(one, folder) as on_result:
            result = extract_cohort(one, recipe.extract, folder, jobs=jobs, scheduler=scheduler,
                                    pseudonymise=pseudonymise, reference=reference, on_result=on_result)
        hooks.extracted(one, result)
        return result

    extracted = extract(cohort, out_dir / "features")
    # external cohorts reuse the training cohort's frozen bin width, never one chosen from test data
    external_results = {name: extract(ext, out_dir / f"features_{name}", reference=out_dir / "features")
                        for name, ext in external_cohorts.items()}
    rename = Pseudonymiser(pseudonymise) if pseudonymise else (lambda case_id: case_id)

    def keyed(table: pd.DataFrame) -> pd.DataFrame:
        return table.rename(index=rename).rename_axis("case_id")

    if recipe.model.robust_features == "auto":  # label-free, and on the training cohort only: never external ones
        from radpipe.robustness.stage import robustness_cohort

        hooks.note(f"robust_features: auto: {recipe.robustness.n_versions} perturbed versions of each training case "
                   f"-> {out_dir / 'robustness'}")
        robustness_cohort(cohort, recipe.extract, recipe.robustness, out_dir / "robustness", jobs=jobs,
                          scheduler=scheduler)
    X = modelling_table(read_feature_table(extracted.out_dir / "features.csv"), recipe.extract.aggregate)
    if survival:
        inputs = survival_training_inputs(X, keyed(checked.outcomes), requested,
                                          source=str(cohort.spec.root / cohort.spec.labels))
    else:
        inputs = training_inputs(X, keyed(checked.outcomes), requested, label_column=checked.label_column,
                                 dataset=cohort.name)
    # the fold counts were told before extraction; again only when failed cases changed them
    for message in inputs.notes(folds=inputs.folds != checked.folds):
        hooks.note(message)
    external = {}
    for name, result in external_results.items():
        ext_X = modelling_table(read_feature_table(result.out_dir / "features.csv"), recipe.extract.aggregate)
        column = external_cohorts[name].spec.label_column  # fit_models reads an external outcome as 'label'
        outcomes = keyed(checked.external[name])
        if column != LABEL_COLUMN and not survival:
            outcomes = outcomes.drop(columns=[LABEL_COLUMN], errors="ignore").rename(columns={column: LABEL_COLUMN})
        external[name] = ext_X, outcomes
    with hooks.training(fit_count(inputs.settings)) as (progress, advance):
        fit = fit_survival_models if survival else fit_models
        trained = fit(inputs, out_dir / "models", external=external or None, progress=progress,
                      advance=advance, discretisation=read_discretisation(extracted.out_dir))
    hooks.trained(trained)
    if recipe.negative_controls:
        from radpipe.controls import run_negative_controls

        codebook_path = extracted.out_dir / "codebook.csv"
        run_negative_controls(
            cohort, recipe.extract, inputs, trained.metrics, out_dir / "controls", out_dir / "models",
            # controls use the training cohort's frozen bin width, as external cohorts do
            extract=lambda one, folder: extract(one, folder, reference=out_dir / "features"),
            codebook=pd.read_csv(codebook_path) if codebook_path.is_file() else None,
            aggregate=recipe.extract.aggregate, seed=recipe.model.seed, jobs=jobs, progress=hooks.note)

    explain_dir = None
    if explain:
        from radpipe.explain.report import explain as explain_model

        explain_dir = out_dir / "explain"
        images = {rename(case.case_id): case.lesion_images for case in cohort.cases}
        with hooks.explaining(len(inputs.X)) as progress:
            # a survival model's outcome (time, event) is read from the model folder, not passed as labels
            explain_model(out_dir / "models", inputs.X, explain_dir, labels=None if survival else inputs.y,
                          images=images,
                          settings=recipe.explain, n_jobs=jobs, progress=progress,
                          codebook=extracted.out_dir / "codebook.csv")
    atomic_write_text(out_dir / "manifest.json", json.dumps({
        "stage": "run", "recipe": recipe.model_dump(mode="json"), "dataset": cohort.name,
        "model_settings_used": inputs.settings.model_dump(mode="json"),
        "features": "features/", "models": "models/", "explain": "explain/" if explain else None,
    }, indent=2, default=str))
    return RunResult(extracted, external_results, out_dir / "models", explain_dir, trained.metrics)
