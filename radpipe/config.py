"""Configuration files: ``datasets.yaml`` (named cohorts) and recipes (``pipelines/*.yaml``).

Both are pydantic models that reject unknown keys. Every problem is raised as a
:class:`~radpipe.errors.ConfigError` naming the file, the key and what was expected, before any work
starts. Each stage owns its own section model (``ExtractSettings``, ``ModelSettings``,
``ExplainSettings``); this module only composes them and resolves paths.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from radpipe.errors import ConfigError
from radpipe.explain.settings import ExplainSettings
from radpipe.extract.settings import ExtractSettings
from radpipe.model.settings import ModelSettings, SurvivalOutcome
from radpipe.register.settings import RegistrationSettings
from radpipe.robustness.settings import RobustnessSettings

REPO_ROOT = Path(__file__).resolve().parents[1]
# radpipe runs from a source checkout when setup.cfg sits one level above the package; an installed
# package (site-packages) has no such file, and then nothing is looked up beside it.
CHECKOUT_ROOT: Path | None = REPO_ROOT if (REPO_ROOT / "setup.cfg").is_file() else None
DATASETS_FILE_NAME = "datasets.yaml"
DATASETS_ENV = "RADPIPE_DATASETS"
_ENV_PATTERN = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")
# set by the command line's --datasets option for the rest of the process (see use_datasets_file)
_explicit_datasets_file: Path | None = None


def data_root() -> Path:
    """Where the shared real data lives: ``$RADPIPE_DATA``, else ``../shared/data`` beside a source checkout.

    An installed radpipe has no default: a registry that uses ``${RADPIPE_DATA}`` then needs the variable.
    """
    value = os.environ.get("RADPIPE_DATA")
    if value:
        return Path(value).resolve()
    if CHECKOUT_ROOT is None:
        raise KeyError("RADPIPE_DATA")
    return (CHECKOUT_ROOT.parent / "shared" / "data").resolve()


def expand_env(text: str) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}``; ``RADPIPE_DATA`` defaults to ``../shared/data`` in a checkout.

    An unset variable without a default raises ``KeyError`` with its name.
    """

    def replace(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if name == "RADPIPE_DATA" and default is None:
            return str(data_root())
        value = os.environ.get(name, default)
        if value is None:
            raise KeyError(name)
        return value

    return _ENV_PATTERN.sub(replace, text)


def use_datasets_file(path: str | Path | None) -> None:
    """Make ``path`` the explicit dataset registry for this process (what ``radpipe --datasets FILE`` does).

    ``None`` goes back to searching (see :func:`find_datasets_file`).
    """
    global _explicit_datasets_file
    _explicit_datasets_file = Path(path).expanduser().resolve() if path else None


def find_datasets_file(explicit: str | Path | None = None, *, start: Path | None = None) -> Path | None:
    """The dataset registry to use, or ``None`` when there is none.

    Searched in this order, the first that exists wins:

    1. ``explicit`` (or the command line's ``--datasets FILE``); a missing file is an error;
    2. ``$RADPIPE_DATASETS``; a missing file is an error;
    3. ``datasets.yaml`` in ``start`` (a recipe's folder) or one of its parents, then in the working
       folder or one of its parents;
    4. the source checkout's ``datasets.yaml``, only when radpipe runs from a checkout.

    Examples
    --------
    >>> import os, tempfile
    >>> from pathlib import Path
    >>> study = Path(tempfile.mkdtemp())
    >>> _ = (study / "datasets.yaml").write_text("datasets: {}\\n")
    >>> (study / "recipes").mkdir()
    >>> find_datasets_file(start=study / "recipes") == study / "datasets.yaml"
    True
    """
    chosen = explicit if explicit is not None else _explicit_datasets_file
    if chosen is not None:
        path = Path(chosen).expanduser()
        if not path.is_file():
            raise ConfigError("dataset registry not found (given with --datasets)", file=str(path))
        return path.resolve()
    from_env = os.environ.get(DATASETS_ENV)
    if from_env:
        path = Path(from_env).expanduser()
        if not path.is_file():
            raise ConfigError(f"dataset registry not found (named by ${DATASETS_ENV})", file=str(path))
        return path.resolve()
    for folder in _search_folders(start):
        candidate = folder / DATASETS_FILE_NAME
        if candidate.is_file():
            return candidate
    if CHECKOUT_ROOT is not None and (CHECKOUT_ROOT / DATASETS_FILE_NAME).is_file():
        return CHECKOUT_ROOT / DATASETS_FILE_NAME
    return None


def datasets_search_description(start: Path | None = None) -> str:
    """Where :func:`find_datasets_file` looks, in words, for messages that say none was found."""
    places = ["--datasets FILE", f"${DATASETS_ENV}"]
    starts = [Path(start).resolve()] if start is not None else []
    if Path.cwd().resolve() not in starts:
        starts.append(Path.cwd().resolve())
    places += [f"{DATASETS_FILE_NAME} in {folder} or its parents" for folder in starts]
    if CHECKOUT_ROOT is not None:
        places.append(f"the source checkout's {CHECKOUT_ROOT / DATASETS_FILE_NAME}")
    return ", ".join(places)


def _search_folders(start: Path | None) -> list[Path]:
    folders: list[Path] = []
    for origin in ([Path(start)] if start is not None else []) + [Path.cwd()]:
        origin = origin.resolve()
        for folder in (origin, *origin.parents):
            if folder not in folders:
                folders.append(folder)
    return folders


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: Cohort layouts datasets.yaml accepts; 'auto' is resolved by radpipe.cohort.detect_layout.
LAYOUTS = ("folders", "per_case", "dicom", "pyradiomics_csv", "auto")


class ModalitySpec(_Strict):
    """One imaging modality of a multimodal cohort (``datasets.<name>.modalities.<modality>``)."""

    images: str = Field(description="Glob for this modality's image files (relative to the dataset root).")
    masks: str | None = Field(None, description="Glob for its mask files; leave out when mask_from names another modality.")
    mask_from: str | None = Field(None, description="Use the mask of this other modality (mapped onto this modality's "
                                  "grid by registration).")
    register_to: str | None = Field(None, description="Register this modality (and its mask) onto that modality's "
                                    "grid before extraction.")
    registration: RegistrationSettings | None = Field(
        None, description="How register_to / mask_from register (radpipe.register.RegistrationSettings: transform, "
        "metric, ...); default: rigid with Mattes mutual information.")
    extract: ExtractSettings | None = Field(
        None, description="Extraction settings for this modality only (params_file, setting, intensity_unit, ...): "
        "the keys given here replace the recipe's extract keys of the same name.")

    @model_validator(mode="after")
    def _one_mask_source(self) -> ModalitySpec:
        if (self.masks is None) == (self.mask_from is None):
            raise ValueError("give either masks (a glob) or mask_from (another modality), not both or neither")
        if self.mask_from and self.register_to and self.mask_from != self.register_to:
            raise ValueError(f"mask_from ({self.mask_from}) and register_to ({self.register_to}) must name the same "
                             "modality: the mask comes with the grid the image is mapped onto")
        if self.registration is not None and not (self.register_to or self.mask_from):
            raise ValueError("registration settings need register_to or mask_from")
        return self


class TimepointSpec(_Strict):
    """One time point of a longitudinal cohort (``datasets.<name>.timepoints.<time point>``)."""

    images: str = Field(description="Glob for the images of this time point (relative to the dataset root).")
    masks: str = Field(description="Glob for the masks of this time point.")


class DatasetSpec(_Strict):
    """One cohort: where its images, masks and labels are and which columns mean what."""

    root: Path = Field(description="Folder the other paths are relative to; ${RADPIPE_DATA} is expanded.")
    description: str = ""
    layout: str = Field(
        "folders",
        description="'folders' (images/, masks/, labels.csv), 'per_case' (<case_id>/image.*, <case_id>/mask.*), "
        "'dicom' (a DICOM tree in any nesting: image series paired with their RTSTRUCT or SEG), "
        "'pyradiomics_csv' (a batch CSV with Image,Mask[,Label] columns) or 'auto' (radpipe looks and decides).",
    )
    images: str = Field("images/*", description="Glob for image files (relative to root); case id = file name without extensions.")
    masks: str = Field("masks/*", description="Glob for mask files; matched to images by case id.")
    case_pattern: str | None = Field(
        None,
        description="Regex with a (?P<case_id>...) group applied to file names, for files named like "
        "'brain1_image.nrrd' / 'brain1_label.nrrd'.",
    )
    batch_csv: str | None = Field(None, description="For layout 'pyradiomics_csv': the batch CSV file.")
    labels: str | None = Field("labels.csv", description="CSV with one row per case (case_id, label, ...); optional.")
    case_id_column: str = "case_id"
    label_column: str = "label"
    group_column: str | None = Field(None, description="Column that groups cases (patient, lesion) for grouped CV.")
    positive_class: str | None = Field(None, description="Outcome value counted as positive.")
    outcome: SurvivalOutcome | None = Field(
        None, description="A time-to-event outcome of the labels table ({type: survival, time: COLUMN, event: "
        "COLUMN}); used when a recipe's model section declares no outcome of its own.")
    spacing_2d: tuple[float, float] | None = Field(None, description="Pixel spacing (mm) for 2D files that carry none.")
    mask_label: int | None = Field(None, description="Label value of the ROI in the masks (default: the only non-zero label).")
    citation: str = ""
    modalities: dict[str, ModalitySpec] | None = Field(
        None, description="Several images per case, one per modality ({pet: {images: ..., masks: ...}, mr_t1: ...}); "
        "the first is the reference. Features are prefixed with the modality name.")
    require_all_modalities: bool = Field(
        True, description="Drop a case that lacks one modality (true, the default: no feature block is imputed "
        "wholesale) or keep it with empty features for that modality, imputed within each training fold (false).")
    timepoints: dict[str, TimepointSpec] | None = Field(
        None, description="Two time points per case ({baseline: {images, masks}, follow_up: {images, masks}}): "
        "features per time point plus delta_ (follow-up - baseline) and reldelta_ ((follow-up - baseline)/|baseline|).")

    @model_validator(mode="after")
    def _layout_known(self) -> DatasetSpec:
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(repr(name) for name in LAYOUTS)}, not {self.layout!r}")
        if self.layout == "pyradiomics_csv" and not self.batch_csv:
            raise ValueError("layout 'pyradiomics_csv' needs batch_csv: the CSV with Image,Mask columns")
        return self

    @model_validator(mode="after")
    def _parts_known(self) -> DatasetSpec:
        if self.modalities is not None and self.timepoints is not None:
            raise ValueError("a dataset declares modalities or timepoints, not both")
        if self.modalities is not None:
            if not self.modalities:
                raise ValueError("modalities is empty: name at least one")
            for name, modality in self.modalities.items():
                if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*(_[A-Za-z0-9]+)*", name):
                    raise ValueError(f"modality name '{name}' must be letters, digits and single underscores "
                                     "(it prefixes feature columns)")
                for key in ("mask_from", "register_to"):
                    other = getattr(modality, key)
                    if other is not None and (other not in self.modalities or other == name):
                        raise ValueError(f"modalities.{name}.{key} names '{other}', which is not another modality of "
                                         f"this dataset (modalities: {', '.join(self.modalities)})")
                    if other is not None and (self.modalities[other].register_to or self.modalities[other].mask_from):
                        raise ValueError(f"modalities.{name}.{key} names '{other}', which is itself mapped onto "
                                         "another modality: map onto a modality that has its own images and masks")
        if self.timepoints is not None and len(self.timepoints) != 2:
            raise ValueError(f"timepoints needs exactly two entries (baseline first, then follow-up), got "
                             f"{len(self.timepoints)}: {', '.join(self.timepoints) or 'none'}")
        return self


class DatasetsFile(_Strict):
    datasets: dict[str, DatasetSpec]


class Recipe(_Strict):
    """A full pipeline recipe: which cohort, how to extract, which models, how to explain."""

    name: str = Field(description="Short name used in output folders and reports.")
    description: str = ""
    dataset: str = Field(description="A name from datasets.yaml, or a cohort folder path (relative to the recipe).")
    external: list[str] = Field(default_factory=list, description="Further datasets used only as external test cohorts.")
    extract: ExtractSettings = Field(default_factory=ExtractSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    explain: ExplainSettings = Field(default_factory=ExplainSettings)
    robustness: RobustnessSettings = Field(
        default_factory=RobustnessSettings, description="Perturbations for `radpipe robustness` and "
        "model.robust_features: auto (rotation, translation, noise, volume, contour; ICC threshold).")
    negative_controls: bool = Field(
        False, description="After the real model, train the same pipeline on three negative controls (ROI voxels "
        "shuffled, ROI moved elsewhere in the body, noise image) and report their AUCs beside the real one "
        "(models/negative_controls.csv, cohort page). Binary outcomes, one ROI per case.")


def read_yaml(path: Path) -> Any:
    """Read a YAML file with the safe loader; a missing or malformed file is a ConfigError."""
    if not path.exists():
        raise ConfigError("file not found", file=str(path))
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8-sig")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"not valid YAML{where}: {getattr(exc, 'problem', exc)}", file=str(path)) from None


def validation_error_to_config_error(exc: ValidationError, file: Path) -> ConfigError:
    """Turn pydantic's report into one readable message naming every bad key."""
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            lines.append(f"unknown key '{key}' (is it misspelt?)")
        elif error["type"] == "missing":
            lines.append(f"missing required key '{key}'")
        else:
            lines.append(f"key '{key}': {error['msg']} (got {error.get('input')!r})")
    return ConfigError("; ".join(lines), file=str(file))


def load_datasets(path: str | Path | None = None) -> dict[str, DatasetSpec]:
    """Read and validate a dataset registry; roots are expanded and resolved relative to the file.

    Without ``path`` the registry is found by :func:`find_datasets_file`; none found is a ConfigError
    listing where radpipe looked.
    """
    if path is None:
        path = find_datasets_file()
        if path is None:
            raise ConfigError(f"no {DATASETS_FILE_NAME} found (looked at: {datasets_search_description()})")
    path = Path(path)
    raw = read_yaml(path)
    try:
        raw = _expand_in(raw)
    except KeyError as exc:
        raise ConfigError(f"environment variable {exc.args[0]} is not set; set it to the folder it stands for",
                          file=str(path)) from None
    try:
        parsed = DatasetsFile.model_validate(raw)
    except ValidationError as exc:
        raise validation_error_to_config_error(exc, path) from None
    for spec in parsed.datasets.values():
        if not spec.root.is_absolute():
            spec.root = (path.parent / spec.root).resolve()
        for part in (spec.modalities or {}).values():
            if part.extract is not None:  # params files are relative to the registry; checked now, not mid-run
                part.extract.resolve_paths(path.parent, recipe_file=path)
    return parsed.datasets


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe, including its pyradiomics settings, before any work starts."""
    path = Path(path)
    raw = read_yaml(path)
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        raise validation_error_to_config_error(exc, path) from None
    recipe.extract.resolve_paths(path.parent, recipe_file=path)
    robust = recipe.model.robust_features
    if robust and robust != "auto" and not Path(robust).is_absolute():  # relative to the recipe, as params_file
        recipe.model.robust_features = str((path.parent / robust).resolve())
    return recipe


def resolve_dataset(name_or_path: str, *, datasets_file: str | Path | None = None,
                    relative_to: Path | None = None) -> tuple[str, DatasetSpec]:
    """A dataset name from the registry, a cohort folder (images/, masks/, labels.csv) or a batch CSV.

    The registry is ``datasets_file`` or the one :func:`find_datasets_file` finds, searching from
    ``relative_to`` (a recipe's folder) first. A bare name that the registry knows is that dataset,
    even when a folder of that name happens to be in the working directory (write ``./busi`` for the
    folder). A path that names nothing is a ConfigError naming that path.
    """
    registry = find_datasets_file(datasets_file, start=relative_to)
    is_bare_name = "/" not in name_or_path and "\\" not in name_or_path and Path(name_or_path).suffix == ""
    # a path never needs the registry, so a registry with problems only matters for names
    known = load_datasets(registry) if registry is not None and is_bare_name else {}
    candidate = Path(name_or_path).expanduser()
    if name_or_path not in known:
        if relative_to is not None and not candidate.is_absolute() and not candidate.exists():
            candidate = relative_to / candidate
        if candidate.is_dir():
            return candidate.name, DatasetSpec(root=candidate.resolve(), layout="auto")
        if candidate.suffix.lower() == ".csv" and candidate.is_file():
            return candidate.stem, DatasetSpec(root=candidate.parent.resolve(), layout="pyradiomics_csv",
                                               batch_csv=candidate.name, labels=None)
    if name_or_path not in known:
        if registry is None:
            where = f", and no {DATASETS_FILE_NAME} was found (looked at: {datasets_search_description(relative_to)})"
        elif is_bare_name:
            where = f", and {registry} has no dataset of that name (known: {', '.join(sorted(known)) or 'none'})"
        else:  # a path is never a dataset name, so the registry's contents are beside the point
            where = f" (dataset names are looked up in {registry})"
        raise ConfigError(
            f"'{name_or_path}' is neither a folder nor a dataset: there is no folder or file "
            f"{candidate.absolute()}{where}",
            key="dataset",
        )
    spec = known[name_or_path]
    if not spec.root.exists():
        uses_data = "${RADPIPE_DATA}" in registry.read_text(encoding="utf-8-sig")
        raise ConfigError(
            f"dataset root {spec.root} does not exist"
            + (" (roots written as ${RADPIPE_DATA}/... need RADPIPE_DATA set to the data folder)" if uses_data else ""),
            file=str(registry), key=f"datasets.{name_or_path}.root",
        )
    return name_or_path, spec


def _expand_in(value: Any) -> Any:
    if isinstance(value, str):
        return expand_env(value)
    if isinstance(value, dict):
        return {key: _expand_in(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_expand_in(item) for item in value]
    return value
