"""Cases and cohorts: find each case's image, mask, label and group from a dataset spec or a folder.

Problems with individual cases (an image with no mask, a label row with no image, two files with
the same case id) do not stop discovery: they become ``Cohort.problems``, which the run writes to
the QC ledger, so one messy file never hides the other 499 cases.
"""

from __future__ import annotations

import glob
import os
import re
from collections import Counter
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
    """One image with its mask(s) and outcome.

    ``image`` is a file, a folder holding one DICOM series, or (for a DICOM tree) the tuple of files of one
    series, which may lie in several folders. ``mask`` is a file (label image, RTSTRUCT or DICOM-SEG) or a
    folder.
    """

    case_id: str
    image: Path | tuple[Path, ...]
    mask: Path
    label: str | None = None
    group: str | None = None
    extra_masks: tuple[Path, ...] = ()
    # a multimodal (or longitudinal) case: (modality or time point, image, mask) for each part it has
    parts: tuple[tuple[str, Path, Path], ...] = ()

    @property
    def lesion_images(self) -> LesionImages:
        """``(image, mask)`` for pictures of the lesion, with every modality's files when there are several."""
        return LesionImages(self.image, self.mask, self.parts)


class LesionImages(tuple):
    """A case's ``(image, mask)`` for pictures, which unpacks like the pair; ``parts`` holds every modality's
    ``(name, image, mask)`` for a multimodal case (empty otherwise), so a page can show one slice per modality."""

    parts: tuple[tuple[str, Path, Path], ...]

    def __new__(cls, image, mask, parts=()):
        made = super().__new__(cls, (image, mask))
        made.parts = tuple(parts)
        return made

    def __reduce__(self):  # pickled for page-rendering workers with its parts
        return (LesionImages, (self[0], self[1], self.parts))


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
    modality: str = ""  # in a multimodal cohort: the modality (or time point) the problem is about


@dataclass
class Cohort:
    """The cases of one dataset plus the table of labels and clinical columns."""

    name: str
    spec: DatasetSpec
    cases: list[Case]
    clinical: pd.DataFrame = field(default_factory=pd.DataFrame)
    problems: list[CaseProblem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what discovery saw that is not a problem (layout, skipped series)
    # a multimodal or longitudinal cohort: one single-image cohort per modality (or time point), in declared order
    parts: dict[str, Cohort] = field(default_factory=dict)
    part_kind: str = ""  # "modality" or "timepoint" when there are parts

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
        return Cohort(self.name, self.spec, [c for c in self.cases if c.case_id in wanted], self.clinical, [],
                      list(self.notes), {name: part.subset(case_ids) for name, part in self.parts.items()},
                      self.part_kind)


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
    """Pair images with masks and join the labels table, collecting per-case problems.

    ``layout: auto`` (a folder given on the command line) is first resolved by :func:`detect_layout`.
    """
    if not spec.root.is_dir():
        raise ConfigError(f"cohort folder {spec.root} does not exist", key="root")
    problems: list[CaseProblem] = []
    notes: list[str] = []
    if spec.layout == "auto":
        guess = detect_layout(spec.root, base=spec)
        spec = guess.spec
        if guess.layout != "dicom":  # the DICOM index writes its own, fuller summary
            notes.append(f"layout detected: {guess.summary}")
    parts: dict[str, Cohort] = {}
    if spec.modalities or spec.timepoints:
        pairs, parts = _pairs_from_parts(name, spec, problems)
    elif spec.layout == "dicom":
        pairs = _pairs_from_dicom_tree(spec, problems, notes)
    elif spec.layout == "pyradiomics_csv":
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
        files = tuple((part, *part_cohort.paths[case_id]) for part, part_cohort in parts.items()
                      if case_id in part_cohort.paths)
        cases.append(Case(case_id, image, mask, label, group, parts=files))

    if not clinical.empty:
        known = set(pairs) | {problem.case_id for problem in problems}
        for case_id in clinical.index:
            if case_id not in known:
                problems.append(CaseProblem(case_id, f"labels file names case '{case_id}' but no image or mask was found for it"))
    kind = "modality" if spec.modalities else "timepoint" if spec.timepoints else ""
    return Cohort(name, spec, cases, clinical, problems, notes,
                  {part: part_cohort.cohort for part, part_cohort in parts.items()}, kind)


@dataclass
class _Part:
    cohort: Cohort
    paths: dict[str, tuple[Path, Path]]


def _pairs_from_parts(name: str, spec: DatasetSpec, problems: list[CaseProblem]
                      ) -> tuple[dict[str, tuple[Path, Path]], dict[str, _Part]]:
    """A multimodal (or longitudinal) dataset: one single-image cohort per modality, cases matched by case id.

    A case lacking a modality is a problem row naming it; it is kept (its first available modality's files stand
    for it) only when ``require_all_modalities`` is false. Time points are always all required: a delta needs both.
    """
    declared = spec.modalities or spec.timepoints
    kind = "modality" if spec.modalities else "time point"
    require_all = spec.require_all_modalities if spec.modalities else True
    found: dict[str, Cohort] = {}
    for part, entry in declared.items():
        # mask_from: the case's mask is the other modality's file; extraction maps it onto this modality's grid
        masks = declared[entry.mask_from].masks if getattr(entry, "mask_from", None) else entry.masks
        part_spec = spec.model_copy(update={"images": entry.images, "masks": masks, "labels": None,
                                            "layout": "folders", "modalities": None, "timepoints": None})
        try:
            found[part] = discover(f"{name}/{part}", part_spec)
        except ConfigError as exc:
            raise ConfigError(f"{kind} '{part}': {exc}", key=f"datasets.{name}.{'modalities' if spec.modalities else 'timepoints'}.{part}") from None
    ids = {part: {case.case_id for case in cohort.cases} for part, cohort in found.items()}
    every = sorted(set().union(*ids.values(), *({p.case_id for p in c.problems} for c in found.values())))
    kept = []
    for case_id in every:
        missing = [part for part in declared if case_id not in ids[part]]
        if not missing:
            kept.append(case_id)
            continue
        has = [part for part in declared if case_id in ids[part]]
        for part in missing:
            if require_all or not has:
                why = ("the dataset requires every modality (require_all_modalities: true)" if spec.modalities
                       else "a delta needs both time points")
                problems.append(CaseProblem(case_id, f"no usable {part} image and mask for case '{case_id}': the case "
                                            f"is left out ({why})", "failed", f"missing_{kind.replace(' ', '_')}", part))
            else:
                problems.append(CaseProblem(case_id, f"no usable {part} image and mask for case '{case_id}': the case "
                                            f"is kept, its {part} features are empty and imputed within each "
                                            f"training fold", "fixed", "missing_modality", part))
        if has and not require_all:
            kept.append(case_id)
    wanted = set(kept)
    parts = {}
    for part, cohort in found.items():
        cohort.cases = [case for case in cohort.cases if case.case_id in wanted]
        parts[part] = _Part(cohort, {case.case_id: (case.image, case.mask) for case in cohort.cases})
    pairs = {}
    for case_id in kept:
        first = next(part for part in declared if case_id in parts[part].paths)
        pairs[case_id] = parts[first].paths[case_id]
    return pairs, parts


# ------------------------------------------------------------------------------------------- layout detection

#: How many files detect_layout opens at most to look for the DICOM preamble; a PACS export of thousands of
#: slices is recognised from its first few files, and an unrelated folder is not read through.
_DICOM_SAMPLE = 200
_LAYOUT_HELP = (
    "radpipe recognises: images/ + masks/ folders (files named by case id); one sub-folder per case holding "
    "image* and mask* (files or DICOM folders); files side by side named <case>_image.* and <case>_mask.* "
    "(or _label, _seg); a DICOM tree in any nesting (image series with an RTSTRUCT or "
    "DICOM-SEG); or a pyradiomics batch CSV with Image and Mask columns. Other arrangements can be described in "
    "a datasets.yaml entry (images/masks globs, case_pattern)"
)


@dataclass(frozen=True)
class LayoutGuess:
    """What :func:`detect_layout` found: the layout name, a filled :class:`~radpipe.config.DatasetSpec` and a
    one-line description for people (``radpipe init`` prints it and writes it into datasets.yaml)."""

    layout: str
    spec: DatasetSpec
    summary: str


def detect_layout(folder: str | Path, *, base: DatasetSpec | None = None) -> LayoutGuess:
    """Inspect a cohort folder and say which layout it is in.

    Rules, in order: ``images/`` and ``masks/`` sub-folders → ``folders``; sub-folders holding ``image*`` and
    ``mask*`` entries (files or folders) → ``per_case``; files side by side named ``<case>_image.<ext>`` and
    ``<case>_label.<ext>`` (or ``_mask``, ``_seg``) → ``folders`` with globs and a ``case_pattern`` for
    them; a CSV with ``Image`` and ``Mask`` columns →
    ``pyradiomics_csv``; DICOM files anywhere below (the ``DICM`` preamble of at most 200 files is checked, so
    a large export is not read through) → ``dicom``.

    Parameters
    ----------
    folder
        The cohort folder.
    base
        A dataset spec whose other fields (labels, columns, positive class) the result keeps; by default
        a spec with only ``root``.

    Raises
    ------
    ConfigError
        When the folder does not exist or nothing fits; the message lists what was found (files by suffix,
        sub-folders) and the layouts radpipe accepts.

    Examples
    --------
    >>> import tempfile
    >>> from radpipe.demo import make_demo_cohort  # a small synthetic images/ + masks/ cohort
    >>> guess = detect_layout(make_demo_cohort(Path(tempfile.mkdtemp()) / "study", n_cases=3))
    >>> guess.layout, guess.summary
    ('folders', 'images/ + masks/ folders: 3 images, 3 masks, labels.csv')
    """
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"cohort folder {root} does not exist" if not root.exists()
                          else f"{root} is a file, not a cohort folder", key="root")
    base = base or DatasetSpec(root=root.resolve())
    labels = base.labels if base.labels and (root / base.labels).is_file() else None
    with_labels = f", {labels}" if labels else ""

    def spec(layout: str, **fields) -> DatasetSpec:
        return base.model_copy(update={"root": root.resolve(), "layout": layout, **fields})

    children = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    folders = [p for p in children if p.is_dir()]
    if (root / "images").is_dir() and (root / "masks").is_dir():
        n_images = sum(1 for p in (root / "images").iterdir() if not p.name.startswith("."))
        n_masks = sum(1 for p in (root / "masks").iterdir() if not p.name.startswith("."))
        return LayoutGuess("folders", spec("folders"),
                           f"images/ + masks/ folders: {n_images} images, {n_masks} masks{with_labels}")

    case_folders = [p for p in folders if any(p.glob("image*")) and any(p.glob("mask*"))]
    if case_folders:
        kinds = Counter(f"{_entry_name(p, 'image')} + {_entry_name(p, 'mask')}" for p in case_folders)
        kind = kinds.most_common(1)[0][0] + (" and other names" if len(kinds) > 1 else "")
        others = len(folders) - len(case_folders)
        rest = f"; {others} other sub-folder(s) without image*/mask*" if others else ""
        return LayoutGuess("per_case", spec("per_case"),
                           f"per-case folders: {len(case_folders)} cases ({kind}){rest}{with_labels}")

    flat = _flat_pairs([p for p in children if p.is_file()])
    if flat:
        image_end, mask_end, n_pairs, example = flat
        pattern = f"(?P<case_id>.+)(?:{re.escape(image_end)}|{re.escape(mask_end)})"
        return LayoutGuess("folders", spec("folders", images=f"*{image_end}", masks=f"*{mask_end}", case_pattern=pattern),
                           f"image/mask file pairs: {n_pairs} cases ({example}{image_end} + {example}{mask_end})"
                           f"{with_labels}")

    for csv_file in (p for p in children if p.is_file() and p.suffix.lower() == ".csv"):
        header = pd.read_csv(csv_file, nrows=0, encoding="utf-8-sig").columns.str.lower()
        if {"image", "mask"} <= set(header):
            rows = sum(1 for _ in open(csv_file, encoding="utf-8-sig")) - 1
            return LayoutGuess("pyradiomics_csv", spec("pyradiomics_csv", batch_csv=csv_file.name, labels=None),
                               f"pyradiomics batch CSV {csv_file.name}: {rows} rows")

    found = _first_dicom_file(root)
    if found is not None:
        n_files, n_folders = _count_files(root)
        # no file or folder name in the summary: exports name folders after patients, and init writes it down
        return LayoutGuess("dicom", spec("dicom"), f"DICOM tree: {n_files} files in {n_folders} folder(s){with_labels}")

    raise ConfigError(f"cannot tell how the cohort in {root} is laid out: it holds {_describe_contents(root)}. "
                      + _LAYOUT_HELP, key="layout")


_FLAT_NAME = re.compile(r"(?P<case_id>.+?)(?P<end>[_-](?P<kind>image|img|mask|label|labels|seg|segmentation)\.[a-z0-9.]+)",
                        re.IGNORECASE)


def _flat_pairs(files: list[Path]) -> tuple[str, str, int, str] | None:
    """Files side by side named ``<case>_image.<ext>`` and ``<case>_label.<ext>`` (or mask, seg): the most common
    image and mask name endings, the number of cases having both, and one case id; None when there are none."""
    images: dict[str, str] = {}
    masks: dict[str, str] = {}
    for path in files:
        match = _FLAT_NAME.fullmatch(path.name)
        if match:
            side = images if match["kind"].lower() in {"image", "img"} else masks
            side[match["case_id"]] = match["end"]
    paired = sorted(set(images) & set(masks))
    if not paired:
        return None
    image_end = Counter(images[c] for c in paired).most_common(1)[0][0]
    mask_end = Counter(masks[c] for c in paired).most_common(1)[0][0]
    both = [c for c in paired if images[c] == image_end and masks[c] == mask_end]
    return image_end, mask_end, len(both), both[0]


def _entry_name(folder: Path, prefix: str) -> str:
    entry = sorted(folder.glob(f"{prefix}*"))[0]
    return entry.name + ("/" if entry.is_dir() else "")


def _first_dicom_file(root: Path) -> Path | None:
    """The first file with a DICOM preamble below ``root``, opening at most ``_DICOM_SAMPLE`` files (a few per
    folder, so one folder of notes does not use the whole sample)."""
    from radpipe.extract.dicom_index import has_dicom_preamble

    opened = 0
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(f for f in files if not f.startswith("."))[:5]:
            path = Path(folder) / name
            if has_dicom_preamble(path):
                return path
            opened += 1
            if opened >= _DICOM_SAMPLE:
                return None
    return None


def _count_files(root: Path) -> tuple[int, int]:
    n_files = n_folders = 0
    for _, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        visible = [f for f in files if not f.startswith(".")]
        n_files += len(visible)
        n_folders += bool(visible)
    return n_files, n_folders


def _describe_contents(root: Path) -> str:
    suffixes: Counter[str] = Counter()
    n_folders = 0
    for _folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        n_folders += len(dirs)
        for name in files:
            if not name.startswith("."):
                lower = name.lower()
                suffix = next((s for s in _IMAGE_SUFFIXES if lower.endswith(s)), Path(lower).suffix or "(no suffix)")
                suffixes[suffix] += 1
    if not suffixes and not n_folders:
        return "nothing (the folder is empty)"
    files = ", ".join(f"{count} {suffix}" for suffix, count in suffixes.most_common(8)) or "no files"
    return f"{files} file(s) and {n_folders} sub-folder(s), none in a known arrangement"


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


def _pairs_from_dicom_tree(spec: DatasetSpec, problems: list[CaseProblem],
                           notes: list[str]) -> dict[str, tuple[tuple[Path, ...], Path]]:
    from radpipe.extract.dicom_index import index_dicom_tree

    index = index_dicom_tree(spec.root)
    problems += [CaseProblem(case_id, reason) for case_id, reason in index.problems]
    notes.append(index.summary())
    return {case.case_id: (case.image_files, case.segmentation) for case in index.cases}


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
