"""The ``radpipe`` command line: one thin function per command, wiring only.

Exit codes: 0 all went well; 1 some cases failed (see qc.csv); 2 usage or configuration error, or
an input refused outright such as a tampered model (nothing was computed); 3 radpipe itself failed
(a bug: rerun with --debug and report it).
"""

from __future__ import annotations

import functools
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

from radpipe.console import console, error, summary_table, warn

app = typer.Typer(
    name="radpipe",
    help="Radiomics from image + mask to validated, explained models.\n\n"
    "Stages: **extract** (pyradiomics features, QC ledger) → **train** (nested CV, bootstrap CIs) → "
    "**explain** (SHAP/LIME HTML reports). **run** chains all three from a recipe; "
    "**demo** runs them on a built-in synthetic cohort.\n\n"
    "Try: `radpipe demo`; then, for your own cohort, `radpipe init my_study --cohort path/to/cohort` "
    "and `radpipe run my_study/recipe.yaml --out my_study/out`.\n\n"
    "Exit codes: 0 all went well, 1 some cases failed (see qc.csv), 2 configuration or usage error "
    "(nothing computed), 3 a radpipe bug (rerun with --debug).",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
tables_app = typer.Typer(help="Work with feature tables (merge runs or modalities).", no_args_is_help=True)
app.add_typer(tables_app, name="tables")

EXIT_OK, EXIT_CASES_FAILED, EXIT_CONFIG, EXIT_BUG = 0, 1, 2, 3

REGISTRY_HELP = ("Dataset names are looked up in the first registry found: --datasets FILE (given before the "
                 "command), $RADPIPE_DATASETS, datasets.yaml in the recipe's or the working folder or a parent "
                 "of them, and the source checkout's datasets.yaml when radpipe runs from one.")


@app.callback()
def _options(
    datasets: Annotated[Path | None, typer.Option(
        "--datasets", help="Dataset registry (datasets.yaml) to look dataset names up in, for every command: "
        "`radpipe --datasets my.yaml extract my_cohort --out x`.")] = None,
) -> None:
    from radpipe.config import use_datasets_file

    use_datasets_file(datasets)

Jobs = Annotated[int, typer.Option("--jobs", "-j", min=1, help="Parallel worker processes.")]
Debug = Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")]
Pseudonymise = Annotated[Path | None, typer.Option(
    "--pseudonymise", help="Replace case ids in every output by stable hashed ids; the key (secret + mapping) "
    "is written to this file, which you keep apart from the outputs.")]


def guarded(command):
    """Turn radpipe's own errors into one readable line and an exit code; tracebacks only with --debug."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from radpipe.errors import RadpipeError

        debug = kwargs.get("debug", False)
        if not debug:
            # loky's note that it replaced an idle worker is not something a user can act on
            warnings.filterwarnings("ignore", message="A worker stopped while some jobs", category=UserWarning)
        try:
            code = command(*args, **kwargs)
        except RadpipeError as exc:  # refused input (e.g. a tampered model): nothing was computed
            if debug:
                raise
            error(str(exc))
            raise typer.Exit(EXIT_CONFIG) from None
        except (typer.Exit, KeyboardInterrupt):
            raise
        except Exception as exc:
            if debug:
                raise
            error(f"radpipe failed unexpectedly: {type(exc).__name__}: {exc}\n"
                  "Rerun with --debug for the traceback, and please report it.")
            raise typer.Exit(EXIT_BUG) from None
        raise typer.Exit(code or EXIT_OK)

    return wrapper


def _load_recipe(path: Path | None):
    from radpipe.config import Recipe, load_recipe

    if path is None:
        return Recipe(name="adhoc", dataset="."), Path.cwd()
    return load_recipe(path), path.resolve().parent


@app.command()
@guarded
def extract(
    dataset: Annotated[str, typer.Argument(help="A dataset name from datasets.yaml, a cohort folder "
                                           "(images/, masks/, labels.csv) or a pyradiomics batch CSV (Image,Mask).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for the tables.")],
    recipe: Annotated[Path | None, typer.Option(help="Recipe whose extract: section to use.")] = None,
    params: Annotated[Path | None, typer.Option(help="A standard pyradiomics parameter file (YAML/JSON).")] = None,
    jobs: Jobs = 1,
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address (tcp://host:8786) or 'local'.")] = None,
    format: Annotated[str, typer.Option("--format", help="Table formats: csv, parquet or both.")] = "csv,parquet",
    cache_dir: Annotated[Path | None, typer.Option(help="Share a result cache between runs (default OUT/.cache).")] = None,
    pseudonymise: Pseudonymise = None,
    reference: Annotated[Path | None, typer.Option(
        help="The training cohort's features folder (or model folder): reuse its bin width instead of choosing "
        "one from this cohort.")] = None,
    names: Annotated[str | None, typer.Option(
        "--names", help="Feature column names: 'pyradiomics' (original_glcm_Contrast) or 'ibsi' "
        "(cm_contrast_d1_3d_avg_fbs_w25); default the recipe's extract.names. codebook.csv keeps both.")] = None,
    debug: Debug = False,
) -> int:
    """Extract pyradiomics features for every case of a cohort.

    Writes features.csv (one row per case), features_long.csv, features.parquet, codebook.csv,
    diagnostics.csv, qc.csv (every case: ok / fixed / failed, with the reason) and manifest.json.
    A case that fails is recorded and the others go on; the exit code is then 1.
    Rerunning the same command reuses finished cases (after a crash, or when cases were added).
    """
    from radpipe._cli_progress import ConsoleHooks
    from radpipe.cohort import load_cohort
    from radpipe.extract.stage import extract_cohort

    spec, base = _load_recipe(recipe)
    settings = spec.extract
    if params is not None:
        settings = settings.model_copy(update={"params_file": params.resolve()})
        settings.resolve_paths(Path.cwd())
    if names is not None:
        from radpipe.errors import ConfigError

        if names not in ("pyradiomics", "ibsi"):
            raise ConfigError(f"unknown naming {names!r}; choose 'pyradiomics' or 'ibsi'", key="--names")
        settings = settings.model_copy(update={"names": names})
    cohort = load_cohort(dataset, relative_to=base)
    formats = tuple(part.strip() for part in format.split(",") if part.strip())
    hooks = ConsoleHooks(show_case_ids=pseudonymise is None)
    with hooks.extracting(cohort, out) as on_result:
        result = extract_cohort(cohort, settings, out, jobs=jobs, scheduler=scheduler, formats=formats,
                                cache_dir=cache_dir, pseudonymise=pseudonymise, reference=reference,
                                on_result=on_result)
    hooks.extracted(cohort, result)
    if not result.tables_written:
        console.print(f"nothing changed since the last run: {result.summary.cached} cases from the cache, "
                      f"tables in {out} left as they were")
    return EXIT_CASES_FAILED if result.n_failed else EXIT_OK


@app.command()
@guarded
def train(
    features: Annotated[Path, typer.Argument(help="Feature table (features.csv or .parquet) with a case_id column.")],
    labels: Annotated[Path, typer.Option(help="CSV with case_id and the outcome column.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for models, metrics and predictions.")],
    recipe: Annotated[Path | None, typer.Option(help="Recipe whose model: section to use.")] = None,
    label_column: Annotated[str, typer.Option(help="Outcome column in --labels.")] = "label",
    group_column: Annotated[str | None, typer.Option(help="Column in --labels that groups cases for grouped CV.")] = None,
    models: Annotated[str | None, typer.Option(
        help="Comma-separated model names. Default: search (selection, k, decorrelation, model family and "
        "hyper-parameters chosen together inside the inner CV); a list such as svm,rf,xgb tunes and compares "
        "each family on its own.")] = None,
    positive_class: Annotated[str | None, typer.Option(help="Outcome value counted as positive.")] = None,
    batch_column: Annotated[str | None, typer.Option(
        help="Column in --labels naming each case's scanner/centre: harmonise the features with ComBat, "
        "fitted inside every training fold.")] = None,
    clinical: Annotated[str | None, typer.Option(
        help="Comma-separated columns of --labels used as clinical covariates (e.g. age,grade): also trains a "
        "clinical-only and a combined clinical + radiomics model on the same folds and compares them "
        "(comparison.csv).")] = None,
    time: Annotated[str | None, typer.Option(
        "--time", help="Survival outcome: the follow-up time column of --labels (with --event).")] = None,
    event: Annotated[str | None, typer.Option(
        "--event", help="Survival outcome: the event column of --labels, 1/True = event, 0/False = censored.")] = None,
    jobs: Jobs = 1,
    debug: Debug = False,
) -> int:
    """Train and compare models with nested cross-validation.

    Writes metrics.csv (AUC with bootstrap 95% CI per model), predictions.csv (out-of-fold),
    the refit best model (model.joblib + sha256 + model_card.json/.md) and every model under models/.
    With --time and --event the outcome is time to event: survival models (coxnet, rsf, gbsa; needs
    `pip install "radpipe[survival]"`) scored by Harrell's and Uno's C, time-dependent AUC and risk groups.
    """
    from radpipe.model.inputs import modelling_table, read_features, read_outcomes, training_inputs
    from radpipe.model.train import fit_models

    spec, _ = _load_recipe(recipe)
    update = {"n_jobs": jobs}
    if models:
        update["models"] = [m.strip() for m in models.split(",")]
    if positive_class:
        update["positive_class"] = positive_class
    if group_column:
        update["group_column"] = group_column
    if batch_column:
        update.update(harmonise="combat", batch_column=batch_column)
    if clinical:
        update["clinical"] = [c.strip() for c in clinical.split(",") if c.strip()]
    if (time is None) != (event is None):
        from radpipe.errors import ConfigError

        raise ConfigError("a survival outcome needs both --time and --event (the follow-up time and event columns "
                          "of --labels)", key="--time" if time is None else "--event")
    if time is not None:
        from radpipe.model.settings import SURVIVAL_MODEL_NAMES

        previous = spec.model.outcome.model_dump() if spec.model.outcome else {"type": "survival"}
        update["outcome"] = {**previous, "time": time, "event": event}
        if not models and not spec.model.is_survival:
            update["models"] = list(SURVIVAL_MODEL_NAMES)
    settings = type(spec.model).model_validate({**spec.model.model_dump(), **update})
    if settings.is_survival:
        return _train_survival(features, labels, out, settings, spec)
    table = read_outcomes(labels, label_column=label_column, key="--labels")
    X = modelling_table(read_features(features, key="FEATURES"), spec.extract.aggregate)
    inputs = training_inputs(X, table, settings, label_column=label_column, source=str(labels))
    return _fit_with_progress(fit_models, inputs, out, features)


def _fit_with_progress(fit, inputs, out: Path, features: Path) -> int:
    """Say what was checked, train with a progress bar, and print the summary (classifiers and survival)."""
    from radpipe._cli_progress import ConsoleHooks
    from radpipe.extract.discretisation import read_discretisation
    from radpipe.model.validate import fit_count

    hooks = ConsoleHooks()
    console.print(repr(inputs), highlight=False, markup=False)
    for message in inputs.notes():
        hooks.note(message)
    with hooks.training(fit_count(inputs.settings)) as (progress, advance):
        result = fit(inputs, out, progress=progress, advance=advance, discretisation=read_discretisation(features))
    hooks.trained(result)
    return EXIT_OK


def _train_survival(features: Path, labels: Path, out: Path, settings, spec) -> int:
    from radpipe.model.inputs import modelling_table, read_features, read_outcomes, survival_training_inputs
    from radpipe.model.survival import fit_survival_models, require_survival

    require_survival()
    outcome = settings.outcome
    table = read_outcomes(labels, label_column=None, columns=[outcome.time, outcome.event], key="--labels")
    X = modelling_table(read_features(features, key="FEATURES"), spec.extract.aggregate)
    inputs = survival_training_inputs(X, table, settings, source=str(labels))
    return _fit_with_progress(fit_survival_models, inputs, out, features)


@app.command()
@guarded
def explain(
    model_dir: Annotated[Path, typer.Argument(help="Folder written by `radpipe train` (model.joblib + model_card.json).")],
    features: Annotated[Path, typer.Option(help="Feature table of the patients to explain.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for the reports.")],
    cohort: Annotated[str | None, typer.Option(help="Dataset name or folder, for labels and image slices.")] = None,
    labels: Annotated[Path | None, typer.Option(
        help="CSV with case_id,label to show true outcomes (and, for a model trained with ComBat, the batch "
        "column when the feature table lacks it).")] = None,
    patients: Annotated[str | None, typer.Option(help="Comma-separated case ids (default: every case).")] = None,
    recipe: Annotated[Path | None, typer.Option(help="Recipe whose explain: section to use.")] = None,
    trust: Annotated[bool, typer.Option(help="Open a model file that has no valid sha256 sidecar.")] = False,
    jobs: Jobs = 1,
    debug: Debug = False,
) -> int:
    """Write SHAP and LIME explanations: cohort.html, patients/<case_id>.html, shap_values.csv, lime.csv."""

    from radpipe._cli_progress import ConsoleHooks
    from radpipe.explain.report import explain as explain_model
    from radpipe.model.folder import ModelFolder
    from radpipe.model.inputs import features_for_model, modelling_table, read_features, read_outcomes
    from radpipe.model.persist import load_model

    spec, base = _load_recipe(recipe)
    model = load_model(ModelFolder(model_dir).require().path, trust=trust)  # refuse a tampered model first
    X = modelling_table(read_features(features, key="--features"), spec.extract.aggregate)
    y = images = batches = None
    if cohort:
        from radpipe.cohort import load_cohort

        loaded = load_cohort(cohort, relative_to=base)
        y = loaded.labels
        images = {case.case_id: case.lesion_images for case in loaded.cases}
        # a harmonised model needs each case's scanner/centre: the cohort's clinical table has it
        batches = loaded.clinical if not loaded.clinical.empty else None
    if labels:
        table = read_outcomes(labels, label_column=None, key="--labels")
        y = table["label"].dropna() if "label" in table.columns else y
        batches = table
    X = features_for_model(model, X, batches)
    _same_discretisation(model, features)
    chosen = [p.strip() for p in patients.split(",")] if patients else None
    with ConsoleHooks().explaining(len(chosen) if chosen else len(X)) as progress:
        explain_model(model_dir, X, out, labels=y, images=images, patients=chosen, settings=spec.explain,
                      n_jobs=jobs, progress=progress, trust=trust,
                      codebook=Path(features).with_name("codebook.csv"))  # extract writes it beside features.csv
    console.print(f"cohort report: [bold]{Path(out) / 'cohort.html'}[/]")
    return EXIT_OK


@app.command()
@guarded
def run(
    recipe: Annotated[Path, typer.Argument(help="A recipe, e.g. pipelines/busi.yaml.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: features/, models/, explain/.")],
    jobs: Jobs = 1,
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address or 'local' for extraction.")] = None,
    no_explain: Annotated[bool, typer.Option("--no-explain", help="Stop after the model stage.")] = False,
    pseudonymise: Pseudonymise = None,
    debug: Debug = False,
) -> int:
    """Run a recipe end to end: extract → train → explain."""
    from radpipe._cli_progress import ConsoleHooks
    from radpipe.config import load_recipe
    from radpipe.pipeline import run_recipe

    spec = load_recipe(recipe)
    result = run_recipe(spec, recipe.resolve().parent, out, jobs=jobs, scheduler=scheduler, explain=not no_explain,
                        pseudonymise=pseudonymise, hooks=ConsoleHooks(show_case_ids=pseudonymise is None))
    if result.explain_dir:
        console.print(f"cohort report: [bold]{result.explain_dir / 'cohort.html'}[/]")
    return EXIT_CASES_FAILED if result.n_failed else EXIT_OK


@app.command()
@guarded
def predict(
    model: Annotated[Path, typer.Argument(help="Model folder or model.joblib written by `radpipe train`.")],
    features: Annotated[Path, typer.Argument(help="Feature table of new cases (same columns as training).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="CSV for the predictions.")],
    labels: Annotated[Path | None, typer.Option(
        help="CSV with case_id and the batch (scanner/centre) column of a model trained with harmonisation "
        "(e.g. the labels file given to `radpipe train --batch-column`); not needed when the feature table "
        "has that column, ignored for other models. No outcome column is needed.")] = None,
    trust: Annotated[bool, typer.Option(help="Open a model file that has no valid sha256 sidecar.")] = False,
    debug: Debug = False,
) -> int:
    """Predict probabilities and classes for new cases.

    A binary model writes case_id, y_prob (of the positive class) and predicted (at the model's threshold);
    a multi-class model writes one y_prob_<class> column per class and predicted, the most probable class;
    a survival model writes risk (higher = worse), surv_<h> (survival at each horizon of its card) and
    risk_group (high/low at the cut-off frozen at training).
    A model trained with ComBat harmonisation needs each case's batch (its model card's cv.batch_column):
    a column of the feature table, or else of the --labels CSV.
    """
    from radpipe.extract.tables import write_csv
    from radpipe.model.folder import ModelFolder
    from radpipe.model.inputs import features_for_model, read_features, read_outcomes
    from radpipe.model.persist import load_model
    from radpipe.model.prediction import predict as predict_cases

    ModelFolder(model).require()
    loaded = load_model(model, trust=trust)
    table = read_outcomes(labels, label_column=None, key="--labels") if labels else None
    X = features_for_model(loaded, read_features(features, key="FEATURES"), table)
    _same_discretisation(loaded, features)
    result = predict_cases(loaded, X)
    write_csv(result.reset_index() if "case_id" not in result.columns else result, out)
    console.print(f"{len(result)} predictions → [bold]{out}[/]")
    if "ood_flag" in result.columns and result["ood_flag"].any():  # a warning only: predictions are unchanged
        console.print(f"{int(result['ood_flag'].sum())} case(s) unlike the training cases (ood_flag, beyond the "
                      "99th percentile of the training cases' own distances): check their images and extraction")
    return EXIT_OK


def _same_discretisation(loaded, features: Path) -> None:
    """Refuse features binned differently from the model's training cohort; warn when it cannot be checked."""
    from radpipe.model.inputs import check_extraction

    unchecked = check_extraction(loaded, features)
    if unchecked:
        warn(unchecked)


@app.command()
@guarded
def evaluate(
    model: Annotated[Path, typer.Argument(help="Model folder written by `radpipe train`.")],
    features: Annotated[Path, typer.Argument(help="Feature table of a labelled test cohort.")],
    labels: Annotated[Path, typer.Option(
        help="CSV with case_id,label (and, for a model trained with harmonisation, its batch column when the "
        "feature table lacks it).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="CSV for the metrics row.")] = None,
    trust: Annotated[bool, typer.Option(help="Open a model file that has no valid sha256 sidecar.")] = False,
    debug: Debug = False,
) -> int:
    """Score a saved model on a labelled external cohort (metrics with bootstrap CIs).

    For a multi-class model: macro one-vs-rest AUC, per-class AUC (auc_ovr_<class>) and macro-averaged metrics.
    A model trained with ComBat harmonisation reads each case's batch (its model card's cv.batch_column) from
    the feature table, or else from --labels.
    """
    from radpipe.errors import ConfigError
    from radpipe.extract.tables import write_csv
    from radpipe.model.folder import ModelFolder
    from radpipe.model.inputs import features_for_model, read_features, read_outcomes
    from radpipe.model.persist import load_model
    from radpipe.model.prediction import evaluate as evaluate_model

    ModelFolder(model).require()
    loaded = load_model(model, trust=trust)
    table = read_outcomes(labels, key="--labels")
    y = table["label"].dropna()
    X = features_for_model(loaded, read_features(features, key="FEATURES"), table)
    _same_discretisation(loaded, features)
    common = [c for c in X.index if c in y.index]
    if not common:
        raise ConfigError(f"no case of the feature table has a label in {labels} (feature table case ids, e.g. "
                          f"{X.index[:3].tolist()}; labelled, e.g. {y.index[:3].tolist()})", key="--labels")
    metrics = evaluate_model(loaded, X.loc[common], y.loc[common])
    console.print(metrics.T.to_string())
    if out:
        write_csv(metrics, out)
    return EXIT_OK


@app.command()
@guarded
def init(
    study_dir: Annotated[Path, typer.Argument(help="Study folder to write datasets.yaml, recipe.yaml and README.md "
                                              "into (created when missing).")],
    cohort: Annotated[Path | None, typer.Option(
        help="Your cohort folder (images/ + masks/, per-case folders, a DICOM tree or a pyradiomics batch CSV); "
        "without it, templates with CHANGE_ME placeholders are written.")] = None,
    positive_class: Annotated[str | None, typer.Option(help="Outcome value counted as positive.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite study files that already exist.")] = False,
    jobs: Jobs = 1,
    debug: Debug = False,
) -> int:
    """Start a study on your own cohort: a registry entry and a recipe with defaults read from the data.

    The cohort's layout is detected and every case surveyed: the recipe gets the intensity unit, a fixed bin
    width for the cohort's ROI intensity range, and resampling when voxel spacing varies or is anisotropic.
    Existing files are never overwritten without --force.
    """
    from radpipe.study import init_study

    result = init_study(study_dir, cohort, positive_class=positive_class, force=force, jobs=jobs)
    for sentence in result.detected:
        console.print(f"detected: {sentence}", highlight=False)
    for sentence in result.warnings:
        warn(sentence)
    summary_table(f"study → {study_dir}", [(path.name, str(path)) for path in result.files])
    console.print(f"next: cd {study_dir} && radpipe validate recipe.yaml && radpipe run recipe.yaml --out out",
                  highlight=False)
    return EXIT_OK


@app.command()
@guarded
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("demo_out"),
    cases: Annotated[int, typer.Option(help="Synthetic cases to generate.")] = 40,
    jobs: Jobs = 2,
    debug: Debug = False,
) -> int:
    """Generate a small SYNTHETIC 3D cohort and run the demo recipe on it end to end."""
    from radpipe._cli_progress import ConsoleHooks
    from radpipe.demo import run_demo

    report = run_demo(Path(out), n_cases=cases, jobs=jobs, hooks=ConsoleHooks())
    console.print(f"\n[bold green]demo finished[/] (synthetic data). Open [bold]{report}[/]")
    return EXIT_OK


@app.command(epilog=REGISTRY_HELP)
@guarded
def datasets(
    debug: Debug = False,
) -> int:
    """List the named cohorts of the dataset registry, and whether their data is present.

    Prints which registry file it read. Choose one with `radpipe --datasets FILE datasets`.
    """
    from radpipe.config import datasets_search_description, find_datasets_file, load_datasets

    registry = find_datasets_file()
    if registry is None:
        console.print(f"no dataset registry found; looked at: {datasets_search_description()}.\n"
                      "Name a cohort folder directly (`radpipe extract path/to/cohort --out x`), or write one "
                      "with `radpipe init my_study --cohort path/to/cohort`.", highlight=False)
        return EXIT_OK
    known = load_datasets(registry)
    console.print(f"registry: [bold]{registry}[/]", highlight=False)
    rows = []
    for name, spec in known.items():
        present = "found" if spec.root.exists() else "[red]missing[/]"
        rows.append((name, f"{present}  {spec.root}  {spec.description}"))
    summary_table(f"datasets in {registry}", rows)
    return EXIT_OK


@app.command()
@guarded
def validate(
    recipe: Annotated[Path, typer.Argument(help="Recipe to check.")],
    debug: Debug = False,
) -> int:
    """Check a recipe and its dataset without computing anything: everything `radpipe run` checks before it
    extracts (labels and outcome column, positive class, folds, group and batch columns, external cohorts)."""
    from radpipe._cli_progress import ConsoleHooks
    from radpipe.cohort import load_cohort
    from radpipe.config import load_recipe
    from radpipe.model.inputs import check_recipe_inputs, with_dataset_outcome

    spec = load_recipe(recipe)
    base = recipe.resolve().parent
    cohort = load_cohort(spec.dataset, relative_to=base)
    external = {name: load_cohort(name, relative_to=base) for name in spec.external}
    spec = spec.model_copy(update={"model": with_dataset_outcome(spec.model, cohort)})
    if spec.model.is_survival:
        from radpipe.model.inputs import check_survival_recipe_inputs

        checked = check_survival_recipe_inputs(cohort, spec.model, external=external)
        settings = checked.settings
        counts = checked.folds.counts
        console.print(f"[green]ok[/]: {recipe} is valid; {cohort!r}")
        console.print(f"  survival outcome: time '{settings.outcome.time}', event '{settings.outcome.event}'; "
                      f"{counts.get('events', 0)} events, {counts.get('censored', 0)} censored; folds "
                      f"{settings.outer_folds} outer x {settings.inner_folds} inner", highlight=False, markup=False)
        for message in checked.notes():
            ConsoleHooks().note(message)
        return EXIT_OK
    checked = check_recipe_inputs(cohort, spec.model, external=external)
    console.print(f"[green]ok[/]: {recipe} is valid; {cohort!r}")
    settings = checked.settings
    positive = f", positive class '{checked.classes[1]}'" if len(checked.classes) == 2 else ", multi-class"
    console.print(f"  outcome '{checked.label_column}': classes {checked.classes}{positive}; folds "
                  f"{settings.outer_folds} outer x {settings.inner_folds} inner", highlight=False, markup=False)
    for message in checked.notes():
        ConsoleHooks().note(message)
    for problem in cohort.problems:
        colour = "red" if problem.status == "failed" else "yellow"
        console.print(f"  [{colour}]{problem.case_id}[/] ({problem.action}): {problem.reason}")
    return EXIT_CASES_FAILED if any(p.status == "failed" for p in cohort.problems) else EXIT_OK


@tables_app.command("merge")
@guarded
def tables_merge(
    tables: Annotated[list[Path], typer.Argument(help="Feature tables to join on case_id.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Merged CSV.")],
    prefixes: Annotated[str | None, typer.Option(help="Comma-separated column prefixes, one per table (e.g. pet_,ct_).")] = None,
    debug: Debug = False,
) -> int:
    """Join feature tables from several runs or modalities on case_id, prefixing their columns."""
    from radpipe.errors import ConfigError
    from radpipe.extract.tables import read_feature_table, write_csv

    names = [p.strip() for p in prefixes.split(",")] if prefixes else [f"t{i + 1}_" for i in range(len(tables))]
    if len(names) != len(tables):
        raise ConfigError(f"{len(tables)} tables but {len(names)} prefixes", key="--prefixes")
    merged = None
    seen: set[str] = set()
    for path, prefix in zip(tables, names, strict=True):
        table = read_feature_table(path).add_prefix(prefix)
        seen |= set(table.index)
        merged = table if merged is None else merged.join(table, how="inner")
    dropped = sorted(seen - set(merged.index))
    if dropped:
        warn(f"{len(dropped)} case(s) are not in every table and were left out: {', '.join(dropped[:10])}"
             + (" …" if len(dropped) > 10 else ""))
    write_csv(merged.reset_index(), out)
    console.print(f"{len(merged)} cases × {merged.shape[1]} columns → [bold]{out}[/]")
    return EXIT_OK


@app.command()
@guarded
def segment(
    dataset: Annotated[str, typer.Argument(help="A dataset name, or a cohort folder (images/ [+ masks/], labels.csv): "
                                           "images without masks are segmented too.")],
    method: Annotated[str, typer.Option(help="threshold, relative, otsu, region_growing, watershed or refine.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The new cohort folder (images/, masks/, labels.csv, "
                                      "qc.csv), ready for `radpipe extract`.")],
    threshold: Annotated[float | None, typer.Option(help="Fixed level (e.g. SUV 2.5): threshold; lower bound for "
                                                    "region_growing; foreground for watershed --watershed-on distance.")] = None,
    fraction: Annotated[float | None, typer.Option(help="relative: share of the maximum near the seed, e.g. 0.41.")] = None,
    radius: Annotated[float | None, typer.Option(help="relative: mm around a seed point searched for the maximum "
                                                 "(default 15).")] = None,
    refine_with: Annotated[str | None, typer.Option(help="refine: the method applied inside the cohort's rough mask "
                                                    "or the seed box (default otsu).")] = None,
    watershed_on: Annotated[str | None, typer.Option(help="watershed: 'gradient' (flooded from the seeds, default) or "
                                                     "'distance' (splits touching objects).")] = None,
    smoothing: Annotated[float | None, typer.Option(help="watershed: Gaussian sigma (mm) of the gradient; default one "
                                                    "voxel; ultrasound speckle needs ~3 pixels.")] = None,
    seeds: Annotated[Path | None, typer.Option(help="CSV of seeds in mm: case_id,x,y,z (points) or "
                                               "case_id,x0,y0,z0,x1,y1,z1 (boxes).")] = None,
    seeds_from_masks: Annotated[str | None, typer.Option(help="Seeds from the cohort's own masks: 'centroid' or "
                                                         "'box' (written to OUT/seeds.csv).")] = None,
    compare: Annotated[str | None, typer.Option(help="Expert masks (a folder of <case_id>.* files, or a dataset): "
                                                "writes agreement.csv (Dice, HD95, volume difference) and a summary.")] = None,
    jobs: Jobs = 1,
    debug: Debug = False,
) -> int:
    """Segment every image with a classical method, writing a cohort folder `radpipe extract` reads.

    Writes masks/<case_id>.nii.gz, images/ (links), labels.csv, qc.csv (voxels, components, the threshold used,
    warnings, the reason a case failed) and manifest.json. Without seeds the largest object is kept.
    Exit 1 when some case failed (see qc.csv).
    """
    from radpipe.segment import SegmentSettings, segment_cohort

    given = {"threshold": threshold, "fraction": fraction, "radius": radius, "refine_with": refine_with,
             "watershed_on": watershed_on, "smoothing": smoothing}
    settings = SegmentSettings(method, **{key: value for key, value in given.items() if value is not None})
    result = segment_cohort(dataset, out, settings, seeds=seeds, seeds_from=seeds_from_masks, compare=compare,
                            jobs=jobs)
    rows = [(row.case_id, f"{row.status}  {row.voxels} voxels" + (f"  {row.reason}" if row.reason else "")
             + (f"  [yellow]{row.warnings}[/]" if row.warnings else "")) for row in result.qc.itertuples()]
    summary_table(f"segment {settings.method} → {out}", rows[:30] + ([("…", f"{len(rows) - 30} more in qc.csv")]
                                                                    if len(rows) > 30 else []))
    if result.summary is not None:
        dice = result.summary.set_index("measure").loc["dice"]
        console.print(f"Dice against {compare}: median {dice['median']:.3f} (IQR {dice['q1']:.3f}–{dice['q3']:.3f}), "
                      f"{int(dice['n'])} cases; per case in {Path(out) / 'agreement.csv'}", highlight=False)
    return EXIT_CASES_FAILED if result.n_failed else EXIT_OK


@app.command()
@guarded
def robustness(
    dataset: Annotated[str, typer.Argument(help="A dataset name from datasets.yaml, a cohort folder or a batch CSV.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (robustness.csv, robustness.html, ...).")],
    recipe: Annotated[Path | None, typer.Option(help="Recipe whose extract: and robustness: sections to use.")] = None,
    jobs: Jobs = 1,
    scheduler: Annotated[str | None, typer.Option(help="Dask scheduler address (tcp://host:8786) or 'local'.")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Share a result cache between runs (default OUT/.cache).")] = None,
    debug: Debug = False,
) -> int:
    """Perturb every case (rotation, translation, noise, volume, contour), extract every version and write the
    ICC of each feature.

    Writes robustness.csv (ICC(1,1), (2,1), (3,1) with 95% CIs; robust = lower bound >= the recipe's threshold),
    robustness.html, versions.csv, perturbed_features.csv, qc.csv and manifest.json; with extract.reader_masks
    also reader_icc.csv. Give robustness.csv to the model stage as model.robust_features. Exit 1 when some
    case failed (see qc.csv).
    """
    from radpipe.cohort import load_cohort
    from radpipe.console import progress_bar
    from radpipe.robustness.stage import robustness_cohort

    spec, base = _load_recipe(recipe)
    cohort = load_cohort(dataset, relative_to=base)
    total = len(cohort.cases) * len(spec.robustness.image_grid()) + (len(cohort.cases) if spec.extract.reader_masks
                                                                    else 0)
    with progress_bar(f"robustness {cohort.name}", total) as advance:
        result = robustness_cohort(cohort, spec.extract, spec.robustness, out, jobs=jobs, scheduler=scheduler,
                                   cache_dir=cache_dir, on_result=lambda r, cached: advance(
                                       note=r.case_id + (" (cached)" if cached else "")))
    rows = [("versions per case", str(len(result.versions))), ("computed", str(result.computed)),
            ("from cache", str(result.cached)), ("cases with failures (see qc.csv)", str(result.n_failed)),
            ("wall time", f"{result.wall_seconds:.1f} s")]
    if result.robustness is not None:
        rows += [(f"{row.image_type} {row.family}", f"{row.n_robust}/{row.n_features} robust")
                 for row in result.share_robust().itertuples()]
    summary_table(f"robustness {cohort.name} → {out}", rows)
    return EXIT_CASES_FAILED if result.n_failed else EXIT_OK


@app.command()
@guarded
def register(
    fixed: Annotated[Path, typer.Argument(help="The reference image (its grid is the output grid), e.g. the PET.")],
    moving: Annotated[Path, typer.Argument(help="The image to move onto FIXED, e.g. the MR.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for transform.tfm, moved_image.nii.gz, "
                                      "[moved_mask.nii.gz], registration_qc.csv and overlay.png.")],
    fixed_mask: Annotated[Path | None, typer.Option(help="Mask on FIXED: Dice before/after, slice of the overlay.")] = None,
    moving_mask: Annotated[Path | None, typer.Option(help="Mask on MOVING: moved onto FIXED's grid with the image.")] = None,
    transform: Annotated[str, typer.Option(help="rigid, affine (starts from rigid) or bspline (starts from affine).")] = "rigid",
    metric: Annotated[str, typer.Option(help="mi (Mattes mutual information, different modalities) or ms (mean "
                                        "squares, same modality).")] = "mi",
    debug: Debug = False,
) -> int:
    """Register MOVING to FIXED (SimpleITK, multi-resolution, seeded: the same inputs give the same transform).

    Exit 1 when the registration failed its QC (diverged, or the masks overlap less than Dice 0.5): the reason is in
    registration_qc.csv and on screen, and the outputs are written so you can look at them.
    """
    from radpipe.register.files import register_files
    from radpipe.register.settings import registration_settings

    settings = registration_settings({"transform": transform, "metric": metric}, where="--")
    done = register_files(fixed, moving, out, fixed_mask=fixed_mask, moving_mask=moving_mask, settings=settings)
    row = done.qc.iloc[0]
    rows = [("status", f"{row.status}" + (f"  {row.reason}" if row.reason else "")),
            ("metric", f"{row.metric} {row.metric_value:.4g} after {row.iterations} iterations"),
            ("time", f"{row.seconds:.1f} s")]
    if done.result.dice_after is not None:
        rows.append(("mask Dice", f"{done.result.dice_before:.3f} before → {done.result.dice_after:.3f} after"))
    summary_table(f"register {moving.name} → {fixed.name} ({transform}, {metric}) → {out}", rows)
    return EXIT_OK if done.result.ok else EXIT_CASES_FAILED


def main() -> None:  # python -m radpipe
    app(prog_name="radpipe")


if __name__ == "__main__":
    sys.exit(main())
