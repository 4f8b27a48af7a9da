"""``radpipe init``: a study folder for a researcher's own cohort, with defaults read from the data.

The folder gets a ``datasets.yaml`` naming the cohort (its layout as detected), a commented ``recipe.yaml``
whose extraction settings come from a survey of the cohort (modality, intensity unit, a fixed bin width,
resampling when voxel spacing varies), and a ``README.md`` with the next commands. Nothing is extracted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pandas as pd
import yaml

from radpipe.errors import ConfigError

STUDY_FILES = ("datasets.yaml", "recipe.yaml", "README.md")
#: Marks every value of a template a person has to fill in.
PLACEHOLDER = "CHANGE_ME"
_LABEL_COLUMNS = ("label", "outcome", "class", "target", "diagnosis", "y")
_GROUP_COLUMNS = ("group_id", "group", "patient_id", "patient", "lesion_group")
# model/explain keys written as commented defaults: the ones people change first
_MODEL_KEYS = ("models", "positive_class", "outer_folds", "inner_folds", "correlation_threshold", "selection",
               "select_k", "class_weight", "harmonise", "batch_column", "bootstrap")
_EXPLAIN_KEYS = ("top_features", "lime_samples", "shap_background", "dependence_plots")


@dataclass
class StudyInit:
    """What :func:`init_study` found and wrote.

    Attributes
    ----------
    study_dir
        The study folder.
    files
        The files written, in order (datasets.yaml, recipe.yaml, README.md).
    dataset
        The name of the cohort's entry in datasets.yaml (``None`` for a template).
    detected
        Sentences saying what was detected, for printing.
    warnings
        Sentences about what needs a person's decision (the positive class, unreadable cases, spacing).
    layout, survey
        The layout guess (:func:`radpipe.cohort.detect_layout`) and the cohort survey
        (:func:`radpipe.extract.survey.survey_cohort`); ``None`` for a template.
    """

    study_dir: Path
    files: list[Path]
    dataset: str | None
    detected: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    layout: object | None = None
    survey: object | None = None


def init_study(study_dir: str | Path, cohort: str | Path | None = None, *, positive_class: str | None = None,
               force: bool = False, jobs: int = 1) -> StudyInit:
    """Scaffold a study folder for ``cohort``: datasets.yaml, a commented recipe.yaml and a README.md.

    The cohort's layout is detected, and every case is surveyed as extraction will read it, so the recipe's
    ``extract:`` section holds the modality's intensity unit, a fixed bin width giving the median ROI 32-64
    grey levels, and a resampling step to the median spacing when spacing varies by more than 10% or the
    voxels are anisotropic beyond 2:1. Without ``cohort``, templates are written whose values to fill in are
    marked ``CHANGE_ME``.

    Parameters
    ----------
    study_dir
        Folder to write into (created when missing).
    cohort
        The cohort folder (images/ + masks/, per-case folders, a DICOM tree or a pyradiomics batch CSV).
    positive_class
        The outcome value counted as positive, written into the dataset entry. radpipe never guesses it: with
        two text classes and no value, the files say where to set it.
    force
        Overwrite existing study files; without it an existing file is a ConfigError and nothing is written.
    jobs
        Cases surveyed in parallel.

    Returns
    -------
    StudyInit

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from radpipe.demo import make_demo_cohort
    >>> work = Path(tempfile.mkdtemp())
    >>> cohort = make_demo_cohort(work / "lesions", n_cases=4)
    >>> study = init_study(work / "study", cohort, positive_class="aggressive")
    >>> [path.name for path in study.files]
    ['datasets.yaml', 'recipe.yaml', 'README.md']
    >>> from radpipe.config import load_recipe
    >>> recipe = load_recipe(work / "study" / "recipe.yaml")
    >>> recipe.dataset, recipe.extract.setting["binWidth"] > 0
    ('lesions', True)
    """
    study_dir = Path(study_dir)
    targets = [study_dir / name for name in STUDY_FILES]
    existing = [str(path) for path in targets if path.exists()]
    if existing and not force:
        raise ConfigError(f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; radpipe init "
                          "does not overwrite study files (use --force to replace them, or choose another folder)")
    if cohort is None:
        texts = _template_texts(study_dir)
        result = StudyInit(study_dir, targets, None, detected=["no --cohort given: wrote templates; fill in every "
                                                                f"{PLACEHOLDER} before running"])
    else:
        result, texts = _cohort_texts(study_dir, Path(cohort), positive_class, jobs)
    study_dir.mkdir(parents=True, exist_ok=True)
    for path, text in zip(targets, texts, strict=True):
        path.write_text(text, encoding="utf-8")
    return result


def _cohort_texts(study_dir: Path, cohort_dir: Path, positive_class: str | None,
                  jobs: int) -> tuple[StudyInit, list[str]]:
    from radpipe.cohort import detect_layout, discover
    from radpipe.extract.survey import survey_cohort

    if not cohort_dir.exists():
        raise ConfigError(f"cohort folder {cohort_dir} does not exist", key="--cohort")
    name = _dataset_name(cohort_dir)
    guess = detect_layout(cohort_dir)
    spec = guess.spec
    detected = [f"cohort {cohort_dir.resolve()}: {guess.summary}"]
    warnings: list[str] = []
    labels = _labels_columns(spec, detected, warnings)
    updates = {"description": guess.summary, **labels}
    if positive_class is not None:
        updates["positive_class"] = positive_class
    spec = spec.model_copy(update=updates)
    cases = discover(name, spec)
    detected.append(repr(cases))
    warnings += [f"case {problem.case_id}: {problem.reason}" for problem in cases.problems[:10]]
    if len(cases.problems) > 10:
        warnings.append(f"... and {len(cases.problems) - 10} more case problems (`radpipe validate` lists them all)")
    classes = sorted({case.label for case in cases.cases if case.label is not None})
    if positive_class is not None and classes and positive_class not in classes:
        raise ConfigError(f"'{positive_class}' is not one of the outcome values ({', '.join(classes)})",
                          key="--positive-class")
    if positive_class is None and len(classes) == 2 and not _boolean_classes(classes):
        warnings.append(f"two outcome classes ({', '.join(classes)}) and no positive class: set positive_class in "
                        f"{study_dir / 'datasets.yaml'} (or rerun with --positive-class); radpipe does not guess")

    survey = survey_cohort(cases, jobs=jobs)
    detected.append(_survey_sentence(survey))
    modalities = survey.ok["modality"].replace("", "unknown").fillna("unknown").value_counts()
    if len(modalities) > 1:
        counts = ", ".join(f"{name}: {n}" for name, n in modalities.items())
        warnings.append(f"the cases have different modalities ({counts}); one recipe gives them all one bin width "
                        "and one intensity unit: give each modality its own cohort folder and study")
    warnings += survey.warnings
    warnings += [f"{case_id} could not be read: {reason}" for case_id, reason in survey.skipped.items()]
    result = StudyInit(study_dir, [study_dir / n for n in STUDY_FILES], name, detected, warnings, guess, survey)
    texts = [_datasets_text(name, spec, classes, positive_class),
             _recipe_text(study_dir.name, name, survey, detected),
             _readme_text(study_dir, name, cohort_dir, detected)]
    return result, texts


def _dataset_name(folder: Path) -> str:
    stem = folder.resolve().name if folder.is_dir() else folder.stem
    name = re.sub(r"[^A-Za-z0-9_]+", "_", stem).strip("_") or "cohort"
    return name if not name[0].isdigit() else f"cohort_{name}"


def _labels_columns(spec, detected: list[str], warnings: list[str]) -> dict:
    """label_column / group_column from the labels file's header, or ``labels: None`` when there is none."""
    if not spec.labels or not (spec.root / spec.labels).is_file():
        detected.append("no labels file: the cohort is unlabelled (fine for extraction; add labels.csv to model)")
        return {"labels": None}
    path = spec.root / spec.labels
    columns = [c.strip() for c in pd.read_csv(path, nrows=0, encoding="utf-8-sig").columns]
    found: dict = {}
    label = next((c for c in _LABEL_COLUMNS if c in columns), None)
    if label is not None:
        found["label_column"] = label
    else:
        warnings.append(f"{path.name} has no outcome column radpipe recognises (columns: {', '.join(columns)}): "
                        "set label_column in datasets.yaml")
    group = next((c for c in _GROUP_COLUMNS if c in columns), None)
    if group is not None:
        found["group_column"] = group
    if spec.case_id_column not in columns:
        warnings.append(f"{path.name} has no '{spec.case_id_column}' column (columns: {', '.join(columns)}): "
                        "set case_id_column in datasets.yaml")
    detected.append(f"labels: {path.name}, outcome column {label or '?'}"
                    + (f", group column {group}" if group else ""))
    return found


def _boolean_classes(classes: list[str]) -> bool:
    return {c.lower() for c in classes} in ({"0", "1"}, {"false", "true"})


def _survey_sentence(survey) -> str:
    spacing = " x ".join(f"{s:.3g}" for s in survey.median_spacing) or "?"
    low, high = survey.ok["roi_min"], survey.ok["roi_max"]
    ranges = (f"ROI intensities from {low.median():.3g} to {high.median():.3g} on the median case"
              if len(survey.ok) else "no readable ROI")
    width = "none (every ROI is flat)" if survey.suggested_bin_width is None else f"{survey.suggested_bin_width:g}"
    levels = "" if survey.median_levels is None else f" ({survey.median_levels:g} grey levels on the median ROI)"
    return (f"modality {survey.modality or 'unknown'}, intensity unit {survey.intensity_unit}, {ranges}; "
            f"median spacing {spacing} mm"
            + (" (varies > 10%)" if survey.spacing_varies else "")
            + (" (anisotropic > 2:1)" if survey.anisotropic else "")
            + f"; bin width {width}{levels}")


def _datasets_text(name: str, spec, classes: list[str], positive_class: str | None) -> str:
    entry = {"description": spec.description, "root": str(spec.root.resolve()), "layout": spec.layout}
    if spec.labels:  # written out even when they are the defaults: the columns are what people check first
        entry.update(labels=spec.labels, case_id_column=spec.case_id_column, label_column=spec.label_column)
    entry.update({key: value for key, value in spec.model_dump(mode="json", exclude_defaults=True).items()
                  if key not in entry})
    if spec.labels is None:
        entry["labels"] = None
    body = yaml.safe_dump({"datasets": {name: entry}}, sort_keys=False, allow_unicode=True)
    lines = [f"# Dataset registry written by `radpipe init` on {date.today().isoformat()}.",
             "# radpipe finds this file when a command runs in this folder (or below it), or with",
             "# `radpipe --datasets this/file.yaml ...`. Keys are checked: a misspelt key is an error.",
             body.rstrip("\n")]
    if positive_class is None and classes:
        shown = ", ".join(classes[:10]) + (" ..." if len(classes) > 10 else "")
        lines.append(f"    # positive_class: {PLACEHOLDER}   # the outcome counted as positive, one of: {shown}")
    return "\n".join(lines) + "\n"


def _recipe_text(study: str, dataset: str, survey, detected: list[str]) -> str:
    extract = survey.recipe_extract()
    lines = [f"# Recipe written by `radpipe init` on {date.today().isoformat()} from a survey of the cohort:",
             *(f"#   {sentence}" for sentence in detected),
             "# Check it with `radpipe validate recipe.yaml`; every key is checked, and the commented keys show",
             "# radpipe's defaults (remove the # to change one).",
             f"name: {_yaml_scalar(study)}",
             f"dataset: {dataset}            # an entry of datasets.yaml beside this recipe",
             "extract:"]
    if "intensity_unit" in extract:
        lines += ["  # unit of the image intensities, recorded in the codebook",
                  f"  intensity_unit: {_yaml_scalar(extract['intensity_unit'])}"]
    width = (extract.get("setting") or {}).get("binWidth")
    if width is not None:
        levels = f": the median ROI gets {survey.median_levels:g} grey levels" if survey.median_levels else ""
        lines += ["  setting:", f"    # one fixed bin width for the whole cohort{levels}", f"    binWidth: {width:g}"]
    else:
        lines.append("  # no bin width could be derived (no readable ROI with more than one intensity)")
    if extract.get("preprocessing"):
        reasons = [text for flag, text in ((survey.spacing_varies, "varies by more than 10% across the cohort"),
                                           (survey.anisotropic, "is anisotropic beyond 2:1")) if flag]
        target = "x".join(f"{value:g}" for value in extract["preprocessing"][0]["spacing"])
        lines += [f"  # voxel spacing {' and '.join(reasons)}: resample every case to {target} mm "
                  "(the median spacing" + (", made isotropic with the same voxel volume)" if survey.anisotropic
                                           else ")"),
                  "  preprocessing:"]
        lines += ["    " + line for line in _dump(extract["preprocessing"]).splitlines()]
    lines += ["  # imageType: {Original: {}}            # add LoG / Wavelet filters here",
              "  # label: 1                             # mask label of the ROI (default: the only one)"]
    lines += _commented_section("model", "radpipe.model.settings", "ModelSettings", _MODEL_KEYS)
    lines += _commented_section("explain", "radpipe.explain.settings", "ExplainSettings", _EXPLAIN_KEYS)
    return "\n".join(lines) + "\n"


def _commented_section(section: str, module: str, class_name: str, keys: tuple[str, ...]) -> list[str]:
    """A section with ``seed`` set (so the section is a mapping) and the other keys as commented defaults,
    written from the settings model itself so the comments cannot drift from the code."""
    import importlib

    model = getattr(importlib.import_module(module), class_name)
    defaults = model().model_dump(mode="json")
    lines = [f"{section}:", f"  seed: {defaults['seed']}"]
    for key in keys:
        if key not in model.model_fields:
            continue
        description = (model.model_fields[key].description or "").split(". ")[0].rstrip(".")
        value = _yaml_scalar(defaults[key]) if not isinstance(defaults[key], list) else _dump_flow(defaults[key])
        lines.append(f"  # {key}: {value}" + (f"   # {description}" if description else ""))
    return lines


def _dump(value) -> str:
    return yaml.safe_dump(value, sort_keys=False, default_flow_style=None).rstrip("\n")


def _dump_flow(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip()


def _yaml_scalar(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").removesuffix("...").strip()


def _readme_text(study_dir: Path, dataset: str, cohort_dir: Path, detected: list[str]) -> str:
    bullet = "\n".join(f"- {sentence}" for sentence in detected)
    return f"""# Study: {study_dir.name}

Written by `radpipe init` on {date.today().isoformat()} for the cohort in `{cohort_dir.resolve()}`
(dataset `{dataset}` in `datasets.yaml`). What radpipe found:

{bullet}

Next, from this folder:

```bash
radpipe datasets                            # shows that datasets.yaml here is the registry in use
radpipe validate recipe.yaml                # checks the recipe and the cohort, computes nothing
radpipe run recipe.yaml --out out --jobs 2  # extract -> train -> explain
```

`out/features/` then holds the feature table, codebook and QC ledger; `out/models/` the metrics with
confidence intervals; `out/explain/cohort.html` the report. Edit `recipe.yaml` to change the settings.
"""


def _template_texts(study_dir: Path) -> list[str]:
    datasets = f"""# Dataset registry template written by `radpipe init`. Replace every {PLACEHOLDER}, or rerun
# `radpipe init {study_dir} --cohort path/to/cohort --force` to have it filled in from your data.
datasets:
  my_cohort:
    description: "{PLACEHOLDER}: what the cohort is"
    root: "{PLACEHOLDER}: the absolute path of your cohort folder"
    layout: auto                     # folders (images/, masks/), per_case, dicom or pyradiomics_csv
    labels: labels.csv               # case_id,label[,group_id,...]; null for an unlabelled cohort
    label_column: label
    # group_column: group_id         # cases that must stay in one fold (lesions of one patient)
    # positive_class: {PLACEHOLDER}  # the outcome counted as positive
"""
    recipe_lines = [
        "# Recipe template written by `radpipe init`. Replace every CHANGE_ME; `radpipe init --cohort` fills",
        "# the extraction settings in from a survey of your data.",
        f"name: {_yaml_scalar(study_dir.name)}",
        "dataset: my_cohort                 # an entry of datasets.yaml beside this recipe",
        "extract:",
        f"  # intensity_unit: {PLACEHOLDER}      # HU (CT), SUV (PET) or a.u.",
        "  setting:",
        f"    # binWidth: {PLACEHOLDER}          # fixed bin width; without one radpipe chooses it from the data",
        "    label: 1",
        "  # preprocessing: [{step: resample, spacing: [1.0, 1.0, 1.0], interpolator: linear,"
        " mask_interpolator: partial_volume}]",
    ]
    recipe_lines += _commented_section("model", "radpipe.model.settings", "ModelSettings", _MODEL_KEYS)
    recipe_lines += _commented_section("explain", "radpipe.explain.settings", "ExplainSettings", _EXPLAIN_KEYS)
    readme = f"""# Study: {study_dir.name}

Written by `radpipe init` without a cohort: `datasets.yaml` and `recipe.yaml` are templates. Replace every
`{PLACEHOLDER}`, or let radpipe fill them in from your data:

```bash
radpipe init {study_dir} --cohort path/to/cohort --force
```

Then, from this folder: `radpipe validate recipe.yaml` and `radpipe run recipe.yaml --out out --jobs 2`.
"""
    return [datasets, "\n".join(recipe_lines) + "\n", readme]
