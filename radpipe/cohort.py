"""Cases and cohorts: find each case's image, mask, label and group from a dataset spec or a folder.

Problems with individual cases (an image with no mask, a label row with no image, two files with
the same case id) do not stop discovery: they become ``Cohort.problems``, which the run writes to
the QC ledger, so one messy file never hides the other 499 cases.
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from radpipe.config import DatasetSpec, resolve_dataset
from radpipe.errors import ConfigError

_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm")


def case_id_from_path(path: Path) -> str:
    """``images/STS_001.nii.gz`` → ``STS_001``: the file name without its (double) extension."""
    name = path.name
    for suffix in _IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


@dataclass(frozen=True)
class Case:
    """One image with its mask(s) and outcome."""

    case_id: str
    image: Path
    mask: Path
    label: str | None = None
    group: str | None = None
    extra_masks: tuple[Path, ...] = ()


@dataclass(frozen=True)
class CaseProblem:
    """A problem found by discovery; it goes to the QC ledger as it stands.

    Files that cannot be paired are ``failed`` (``not_paired``). A label that cannot be used (no row in the
    labels file, a missing-value marker, a class no other case has) leaves the case ``fixed``: its features are
    extracted, but it has no label, so modelling leaves it out (``no_label``, ``unknown_label``).
    """

    case_id: str
    reason: str
    status: str = "failed"
    action: str = "not_paired"


@dataclass
class Cohort:
    """The cases of one dataset plus the table of labels and clinical columns."""

    name: str
    spec: DatasetSpec
    cases: list[Case]
    clinical: pd.DataFrame = field(default_factory=pd.DataFrame)
    problems: list[CaseProblem] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.cases)

    def __repr__(self) -> str:
        labels = pd.Series([case.label for case in self.cases if case.label is not None])
        classes = ", ".join(f"{name}: {count}" for name, count in labels.value_counts().sort_index().items())
        return (
            f"Cohort({self.name!r}, {len(self.cases)} cases"
            + (f", classes {{{classes}}}" if classes else ", unlabelled")
            + (f", {len(self.problems)} problem(s)" if self.problems else "")
            + ")"
        )

    @property
    def labels(self) -> pd.Series:
        """Outcome per case id (cases without a label are left out)."""
        data = {case.case_id: case.label for case in self.cases if case.label is not None}
        return pd.Series(data, name="label", dtype="object").rename_axis("case_id")

    @property
    def groups(self) -> pd.Series | None:
        if not self.spec.group_column:
            return None
        data = {case.case_id: case.group for case in self.cases}
        return pd.Series(data, name=self.spec.group_column, dtype="object").rename_axis("case_id")

    def subset(self, case_ids: list[str]) -> Cohort:
        wanted = set(case_ids)
        return Cohort(self.name, self.spec, [c for c in self.cases if c.case_id in wanted], self.clinical, [])


def load_cohort(name_or_path: str | Path, *, datasets_file: str | Path | None = None,
                relative_to: Path | None = None) -> Cohort:
    """Load a cohort by datasets.yaml name, cohort folder, or pyradiomics batch CSV.

    Examples
    --------
    >>> cohort = load_cohort("sts_pet")  # a name from datasets.yaml (real data under RADPIPE_DATA)
    >>> cohort
    Cohort('sts_pet', 39 cases, classes {metastasis: 16, no_metastasis: 23})
    >>> cohort.cases[0].image.name, cohort.labels["STS_001"]
    ('STS_001.nii.gz', 'no_metastasis')
    """
    name, spec = resolve_dataset(str(name_or_path), datasets_file=datasets_file, relative_to=relative_to)
    return discover(name, spec)


def discover(name: str, spec: DatasetSpec) -> Cohort:
    """Pair images with masks and join the labels table, collecting per-case problems."""
    if not spec.root.is_dir():
        raise ConfigError(f"cohort folder {spec.root} does not exist", key="root")
    problems: list[CaseProblem] = []
    if spec.layout == "pyradiomics_csv":
        pairs = _pairs_from_batch_csv(spec, problems)
    elif spec.layout == "per_case":
        pairs = _pairs_from_case_folders(spec, problems)
    else:
        images = _index_files(spec.root, spec.images, spec.case_pattern, "image", problems)
        masks = _index_files(spec.root, spec.masks, spec.case_pattern, "mask", problems)
        if not images and not masks:
            raise ConfigError(
                f"no images found under {spec.root} with pattern '{spec.images}' "
                "(expected a folder with images/, masks/ and labels.csv)",
                key="images",
            )
        pairs = {}
        for case_id in sorted(set(images) | set(masks)):
            if case_id not in masks:
                problems.append(CaseProblem(case_id, f"image {images[case_id].name} has no mask (looked for {spec.masks})"))
            elif case_id not in images:
                problems.append(CaseProblem(case_id, f"mask {masks[case_id].name} has no image (looked for {spec.images})"))
            else:
                pairs[case_id] = (images[case_id], masks[case_id])

    clinical = _read_labels(spec, problems)
    has_labels = not clinical.empty and spec.label_column in clinical.columns
    unusable = _unusable_labels(clinical, spec) if has_labels else {}
    duplicated = {problem.case_id for problem in problems}
    cases = []
    for case_id, (image, mask) in sorted(pairs.items()):
        label = group = None
        if not clinical.empty and case_id in clinical.index:
            row = clinical.loc[case_id]
            label = _clean(row.get(spec.label_column))
            group = _clean(row.get(spec.group_column)) if spec.group_column else None
        if has_labels and case_id not in duplicated:
            problem = _label_problem(case_id, label, case_id in clinical.index, unusable, spec)
            if problem:
                problems.append(problem)
                label = None
        cases.append(Case(case_id, image, mask, label, group))

    if not clinical.empty:
        known = set(pairs) | {problem.case_id for problem in problems}
        for case_id in clinical.index:
            if case_id not in known:
                problems.append(CaseProblem(case_id, f"labels file names case '{case_id}' but no image or mask was found for it"))
    return Cohort(name, spec, cases, clinical, problems)


#: Cell values that mean "not known" in spreadsheets; they are read as a missing label, never as a class.
MISSING_LABELS = frozenset({"na", "n/a", "nan", "null", "none", "?", "-", "unknown", "missing", "#n/a"})


def _unusable_labels(clinical: pd.DataFrame, spec: DatasetSpec) -> dict[str, str]:
    """Label values that are not a class of this cohort, each with why.

    A value held by one case only, while the other classes have several cases each, is taken for a typo: a
    one-case class cannot be cross-validated. With ``positive_class`` set the outcome is binary, so any value
    beyond the positive class and the most common other value is unknown too.
    """
    values = clinical[spec.label_column].map(_clean).dropna()
    values = values[~values.str.lower().isin(MISSING_LABELS)]
    counts = values.value_counts()
    unusable: dict[str, str] = {}
    for value, count in counts.items():
        others = counts.drop(value)
        if count == 1 and len(others) >= 2 and (others >= 2).all():
            unusable[value] = "no other case has this label"
    if spec.positive_class and spec.positive_class in counts.index:
        negatives = counts.drop(spec.positive_class)
        for value in negatives.index[1:]:
            unusable.setdefault(value, f"the outcome is binary (positive class '{spec.positive_class}')")
    if unusable:
        classes = ", ".join(sorted(v for v in counts.index if v not in unusable))
        unusable = {value: f"{why}; the cohort's classes are {classes}" for value, why in unusable.items()}
    return unusable


def _label_problem(case_id: str, label: str | None, listed: bool, unusable: dict[str, str],
                   spec: DatasetSpec) -> CaseProblem | None:
    file = spec.labels or "labels file"
    left_out = "its features are extracted, but modelling leaves it out"
    if not listed:
        return CaseProblem(case_id, f"no row in {file} for case '{case_id}': {left_out}", "fixed", "no_label")
    if label is None:
        return CaseProblem(case_id, f"{file} has an empty '{spec.label_column}' for case '{case_id}': "
                           f"{left_out}", "fixed", "no_label")
    if label.lower() in MISSING_LABELS:
        return CaseProblem(case_id, f"{file} gives '{label}' as the {spec.label_column} of case '{case_id}', "
                           f"read as a missing label: {left_out}", "fixed", "no_label")
    if label in unusable:
        return CaseProblem(case_id, f"{file} gives the unknown {spec.label_column} '{label}' for case "
                           f"'{case_id}' ({unusable[label]}); is it a typo? {left_out}", "fixed", "unknown_label")
    return None


def _clean(value) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA:
        return None
    text = str(value).strip()
    return text or None


def _index_files(root: Path, pattern: str, case_pattern: str | None, kind: str,
                 problems: list[CaseProblem]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    regex = re.compile(case_pattern) if case_pattern else None
    for path in sorted(Path(p) for p in glob.glob(str(root / pattern))):
        if path.name.startswith(".") or path.name.endswith(".md"):
            continue
        if regex:
            match = regex.fullmatch(path.name) or regex.match(path.name)
            if not match:
                continue
            case_id = match.group("case_id")
        else:
            case_id = case_id_from_path(path)
        if case_id in found:
            problems.append(CaseProblem(
                case_id, f"two {kind} files share case id '{case_id}': {found[case_id].name} and {path.name}"))
            found[case_id] = None  # type: ignore[assignment]  # poisoned: neither file is guessed
            continue
        found[case_id] = path
    return {case_id: path for case_id, path in found.items() if path is not None}


def _pairs_from_case_folders(spec: DatasetSpec, problems: list[CaseProblem]) -> dict[str, tuple[Path, Path]]:
    pairs = {}
    for folder in sorted(p for p in spec.root.iterdir() if p.is_dir()):
        images = sorted(folder.glob("image*"))
        masks = sorted(folder.glob("mask*"))
        if len(images) == 1 and len(masks) == 1:
            pairs[folder.name] = (images[0], masks[0])
        elif folder.name not in {"images", "masks"}:
            problems.append(CaseProblem(
                folder.name, f"case folder {folder.name}/ should hold one image.* and one mask.* "
                f"(found {len(images)} image and {len(masks)} mask files)"))
    return pairs


def _pairs_from_batch_csv(spec: DatasetSpec, problems: list[CaseProblem]) -> dict[str, tuple[Path, Path]]:
    table = pd.read_csv(spec.root / spec.batch_csv, dtype=str, encoding="utf-8-sig")
    columns = {column.lower(): column for column in table.columns}
    if "image" not in columns or "mask" not in columns:
        raise ConfigError(f"batch CSV needs Image and Mask columns, found {list(table.columns)}",
                          file=str(spec.root / spec.batch_csv))
    id_column = columns.get(spec.case_id_column.lower()) or columns.get("id")
    pairs = {}
    for index, row in table.iterrows():
        image = Path(row[columns["image"]])
        mask = Path(row[columns["mask"]])
        image = image if image.is_absolute() else spec.root / image
        mask = mask if mask.is_absolute() else spec.root / mask
        case_id = str(row[id_column]) if id_column else case_id_from_path(image)
        if case_id in pairs:
            problems.append(CaseProblem(case_id, f"batch CSV row {index + 2} repeats case id '{case_id}'"))
            continue
        pairs[case_id] = (image, mask)
    return pairs


def _read_labels(spec: DatasetSpec, problems: list[CaseProblem]) -> pd.DataFrame:
    if not spec.labels:
        return pd.DataFrame()
    path = spec.root / spec.labels
    if not path.exists():
        if spec.labels == "labels.csv":
            return pd.DataFrame()  # an unlabelled cohort is fine for extraction
        raise ConfigError(f"labels file {path} does not exist", key="labels")
    # utf-8-sig drops a BOM; pandas copes with Windows line endings.
    table = pd.read_csv(path, dtype=str, encoding="utf-8-sig", keep_default_na=False, na_values=[""])
    table.columns = [column.strip() for column in table.columns]
    if spec.case_id_column not in table.columns:
        raise ConfigError(f"labels file has no '{spec.case_id_column}' column (columns: {list(table.columns)})",
                          file=str(path), key="case_id_column")
    table[spec.case_id_column] = table[spec.case_id_column].str.strip()
    duplicated = table[spec.case_id_column].duplicated(keep=False)
    for case_id in sorted(set(table.loc[duplicated, spec.case_id_column])):
        problems.append(CaseProblem(case_id, f"labels file has several rows for case '{case_id}'; none is used"))
    table = table.loc[~duplicated]
    return table.set_index(spec.case_id_column)
