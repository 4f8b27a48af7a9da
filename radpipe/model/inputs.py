"""Model inputs: a feature table and an outcome table become checked ``X``, ``y``, groups and batches.

This module is the one place where the model stage checks what a user gives it, so ``train``,
``run``, ``predict``, ``evaluate``, ``explain`` and ``validate`` accept and refuse the same things.
Every refusal is a :class:`~radpipe.errors.ConfigError` (exit 2) raised before any model is fitted;
it names the file or key, what was found and what to change.

- :func:`read_features` / :func:`read_outcomes` read the two tables from disk.
- :func:`training_inputs` checks them for training: one numeric row per labelled case, the outcome
  classes with a positive class that is never guessed, the group and batch columns, and a
  :class:`FoldPlan` whose fold counts fit the smallest class at every cross-validation level.
- :func:`external_inputs` checks an external test cohort against the training inputs.
- :func:`features_for_model` / :func:`labels_for_model` check a table for a saved model.
- :func:`check_recipe_inputs` runs the checks of ``radpipe run`` on a cohort before extraction
  (``radpipe validate`` calls it too).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from radpipe.errors import ConfigError
from radpipe.model.settings import ModelSettings

if TYPE_CHECKING:  # pragma: no cover
    from radpipe.cohort import Cohort
    from radpipe.model.persist import LoadedModel

LABEL_COLUMN = "label"
CASE_ID = "case_id"
#: imbalanced-learn's SMOTE default: each synthetic case interpolates towards one of 5 neighbours
SMOTE_NEIGHBOURS = 5
#: families whose probabilities come from CalibratedClassifierCV (its own inner CV, see zoo.py)
CALIBRATED_MODELS = ("svm", "svm_linear")
#: outcome pairs whose positive class is plain (compared in lower case): 1 / True are positive
_PLAIN_BINARY = ({"0", "1"}, {"0.0", "1.0"}, {"false", "true"})
POSITIVE_CLASS_HELP = ("set it with `--positive-class VALUE` (radpipe train), `model.positive_class: VALUE` "
                       "(the recipe) or `positive_class: VALUE` (the dataset's entry in datasets.yaml)")


# ---------------------------------------------------------------- reading tables


def read_features(path: str | Path, *, key: str | None = None) -> pd.DataFrame:
    """Read a feature table (CSV or Parquet) indexed by ``case_id``.

    A missing file, an unreadable table or a table without a ``case_id`` column is a ConfigError
    naming the path.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "features.csv"
    >>> _ = path.write_text("case_id,original_firstorder_Mean\\nc1,1.5\\nc2,2.5\\n")
    >>> read_features(path)["original_firstorder_Mean"].tolist()
    [1.5, 2.5]
    """
    path = Path(path)
    table = _read_table(path, "feature table", key=key)
    if CASE_ID not in table.columns:
        raise ConfigError(f"a feature table needs a '{CASE_ID}' column, one row per case (columns found: "
                          f"{_shown(table.columns)})", file=str(path), key=key)
    table[CASE_ID] = table[CASE_ID].astype(str).str.strip()
    return table.set_index(CASE_ID)


def read_outcomes(path: str | Path, *, label_column: str | None = LABEL_COLUMN,
                  columns: Iterable[str] = (), key: str | None = None) -> pd.DataFrame:
    """Read a labels table (``case_id`` plus outcome, group, batch, clinical columns) as text.

    ``label_column`` (None: no outcome needed, e.g. for ``predict``) and every name in ``columns``
    must be columns of the table. Cells are stripped; empty cells are missing values.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "labels.csv"
    >>> _ = path.write_text("case_id,label\\nc1,yes\\nc2,no\\n")
    >>> read_outcomes(path)["label"].to_dict()
    {'c1': 'yes', 'c2': 'no'}
    """
    path = Path(path)
    if path.suffix == ".parquet":
        table = _read_table(path, "labels table", key=key).astype("string").astype(object)
    else:
        table = _read_table(path, "labels table", key=key, dtype=str)
    table.columns = [str(column).strip() for column in table.columns]
    needed = [CASE_ID, *([label_column] if label_column else []), *columns]
    missing = [column for column in dict.fromkeys(needed) if column not in table.columns]
    if missing:
        raise ConfigError(f"the labels table has no column {_names(missing)} (columns found: "
                          f"{_shown(table.columns)}); expected '{CASE_ID}'"
                          + (f", the outcome column '{label_column}'" if label_column else "")
                          + (" (choose another with --label-column)" if label_column and key == "--labels" else ""),
                          file=str(path), key=key)
    table = table.apply(lambda column: column.str.strip()).replace("", np.nan)
    table = table.dropna(subset=[CASE_ID])
    duplicated = table[CASE_ID][table[CASE_ID].duplicated()].unique()
    if len(duplicated):
        raise ConfigError(f"case ids appear on several rows: {list(duplicated[:5])}", file=str(path), key=key)
    return table.set_index(CASE_ID)


def _read_table(path: Path, what: str, *, key: str | None, dtype=None) -> pd.DataFrame:
    if not path.exists():
        raise ConfigError(f"{what} not found", file=str(path), key=key)
    if path.is_dir():
        raise ConfigError(f"expected a {what} file (CSV or Parquet), found a folder", file=str(path), key=key)
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype=dtype if dtype is not None else {CASE_ID: str}, encoding="utf-8-sig")
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise ConfigError(f"cannot read the {what} ({type(exc).__name__}: {exc}); expected a CSV or Parquet "
                          "file", file=str(path), key=key) from None


def modelling_table(features: pd.DataFrame, aggregate: str = "largest") -> pd.DataFrame:
    """One row per patient: lesion rows (a ``roi`` column) aggregated as the recipe's ``extract.aggregate`` says."""
    from radpipe.extract.tables import aggregate_rois

    if CASE_ID in features.columns:
        features = features.set_index(CASE_ID)
    if "roi" not in features.columns:
        return features
    try:
        return aggregate_rois(features, aggregate)
    except ValueError as exc:
        raise ConfigError(str(exc), key="extract.aggregate") from None


# ---------------------------------------------------------------- outcome classes


def plain_positive(classes: Iterable[str]) -> str | None:
    """The positive class of a 0/1 or False/True outcome (1 / True, any case); None for other labels."""
    classes = [str(c) for c in classes]
    lower = {c.strip().lower(): c for c in classes}
    if len(classes) == 2 and set(lower) in _PLAIN_BINARY:
        return lower.get("1", lower.get("1.0", lower.get("true")))
    return None


def resolve_classes(labels: Iterable[str], settings: ModelSettings, *, declared: str | None = None,
                    dataset: str | None = None) -> tuple[list[str], ModelSettings]:
    """The outcome classes in index order and the settings with the positive class filled in.

    Binary: ``[negative, positive]``; the positive class is ``settings.positive_class``, else the
    dataset's ``declared`` one, else 1 / True of a 0/1 or False/True outcome. Two other labels and no
    positive class are refused: radpipe never guesses which outcome a probability is of.
    Three or more classes: sorted, multi-class (a positive class is refused).
    """
    classes = sorted({str(label) for label in labels})
    where = f"dataset '{dataset}'" if dataset else "the outcome"
    if len(classes) < 2:
        found = f"a single class {classes}" if classes else "no labelled case"
        raise ConfigError(f"{where} has {found}: training needs at least two outcome classes", key="label")
    if declared is not None and declared not in classes:
        raise ConfigError(
            f"{where} sets positive_class '{declared}', which is not one of its labels {classes[:10]}: fix the value "
            "in datasets.yaml, or remove positive_class (with more than two classes the model is then multi-class)",
            key="positive_class")
    chosen = settings.positive_class
    if chosen is not None:
        if len(classes) > 2:
            raise ConfigError(
                f"model.positive_class '{chosen}' applies only to a binary outcome, but {where} has {len(classes)} "
                f"classes {classes[:10]}: remove it to train a multi-class model (every class is scored "
                "one-vs-rest), or merge classes into two", key="model.positive_class")
        if chosen not in classes:
            raise ConfigError(f"model.positive_class '{chosen}' is not one of the labels of {where} {classes}",
                              key="model.positive_class")
    if len(classes) > 2:
        return classes, settings
    positive = chosen or declared or plain_positive(classes)
    if positive is None:
        raise ConfigError(
            f"{where} has two classes, '{classes[0]}' and '{classes[1]}', and no positive class: radpipe does not "
            f"guess which one the model's probability is of; {POSITIVE_CLASS_HELP}", key="model.positive_class")
    negative = next(c for c in classes if c != positive)
    if positive != chosen:
        settings = settings.model_copy(update={"positive_class": positive})
    return [negative, positive], settings


def encode_labels(y: pd.Series, classes: list[str]) -> np.ndarray:
    """Class index of each label (its position in ``classes``): 0/1 (1 = positive) when binary."""
    return pd.Categorical(y, categories=classes).codes.astype(int)


# ---------------------------------------------------------------- folds


@dataclass(frozen=True)
class FoldPlan:
    """The fold counts used at every cross-validation level, fitted to the smallest class.

    ``outer``/``inner``/``calibration`` are the folds used; ``requested`` those the settings asked
    for. Each is at most the number of cases of the smallest class in the data that level splits
    (a stratified fold needs one case of every class), estimated for the worst fold.
    """

    outer: int
    inner: int
    calibration: int | None
    requested: tuple[int, int, int | None]
    smallest_class: str
    counts: dict[str, int]

    @property
    def reduced(self) -> bool:
        return (self.outer, self.inner, self.calibration) != self.requested

    def describe(self) -> str:
        levels = [("outer", self.outer, self.requested[0]), ("inner", self.inner, self.requested[1])]
        if self.calibration is not None:
            levels.append(("SVM calibration", self.calibration, self.requested[2]))
        changed = [f"{name} folds {asked} -> {used}" for name, used, asked in levels if used != asked]
        return (f"the smallest class ('{self.smallest_class}') has {self.counts[self.smallest_class]} cases: "
                + ", ".join(changed) + " (each fold needs a case of every class)") if changed else ""

    def settings(self, settings: ModelSettings) -> ModelSettings:
        """``settings`` with the fold counts of this plan."""
        update: dict[str, Any] = {"outer_folds": self.outer, "inner_folds": self.inner}
        if self.calibration is not None:
            update["calibration_folds"] = self.calibration
        return settings.model_copy(update=update)

    def record(self) -> dict:
        """What splits.json and the model card record when folds were reduced."""
        return {"requested": dict(zip(("outer_folds", "inner_folds", "calibration_folds"), self.requested,
                                      strict=True)),
                "used": {"outer_folds": self.outer, "inner_folds": self.inner, "calibration_folds": self.calibration},
                "reason": self.describe()}


def _worst_training_count(n: int, folds: int) -> int:
    """Cases of a class left in the smallest training part of a stratified ``folds``-fold split."""
    return n - math.ceil(n / folds)


def plan_folds(counts: Mapping[str, int], settings: ModelSettings) -> FoldPlan:
    """Fold counts that fit the class counts at every level, or a ConfigError saying what to change.

    The outer folds are at most the smallest class's count; the inner folds at most what the smallest
    class keeps in an outer training fold; the SVM's calibration folds at most what it keeps in an
    inner training fold. A level that would get fewer than 2 folds refuses the run.

    Examples
    --------
    >>> plan = plan_folds({"no": 6, "yes": 6}, ModelSettings())
    >>> plan.outer, plan.inner, plan.calibration
    (5, 3, 2)
    """
    counts = {str(k): int(v) for k, v in sorted(counts.items())}
    smallest = min(counts, key=lambda c: (counts[c], c))
    n = counts[smallest]
    which = "smaller class" if len(counts) == 2 else "smallest class"
    # the joint search's SVM candidates calibrate too
    searched = settings.search_families if "search" in settings.base_models() else []
    calibrated = any(name in CALIBRATED_MODELS for name in [*settings.base_models(), *searched])
    requested = (settings.outer_folds, settings.inner_folds, settings.calibration_folds if calibrated else None)
    outer = min(settings.outer_folds, n)
    if outer < 2:
        raise ConfigError(
            f"the {which} ('{smallest}') has {n} case(s) {counts}: cross-validation needs at least 2 cases of every "
            "class (one per outer fold); add cases of that class", key="model.outer_folds")
    n_outer_train = _worst_training_count(n, outer)
    inner = min(settings.inner_folds, n_outer_train)
    if inner < 2:
        raise ConfigError(
            f"the {which} ('{smallest}') has {n} cases {counts}: with {outer} outer folds an outer training fold "
            f"keeps {n_outer_train} of them, but the inner cross-validation needs at least 2; add cases of that "
            "class (at least 4 are needed)", key="model.inner_folds")
    calibration = None
    if calibrated:
        n_inner_train = _worst_training_count(n_outer_train, inner)
        calibration = min(settings.calibration_folds, n_inner_train)
        if calibration < 2:
            families = [m for m in settings.base_models() if m in CALIBRATED_MODELS]
            if not families:  # only the joint search's SVM families calibrate
                families = [m for m in searched if m in CALIBRATED_MODELS]
                raise ConfigError(
                    f"the {which} ('{smallest}') has {n} cases {counts}: an inner training fold keeps "
                    f"{n_inner_train} of them ({outer} outer x {inner} inner folds), but the search's "
                    f"{_names(families)} calibrate their probabilities with a further cross-validation that needs "
                    f"at least 2; leave {_names(families)} out of model.search_families or add cases of that class",
                    key="model.search_families")
            raise ConfigError(
                f"the {which} ('{smallest}') has {n} cases {counts}: an inner training fold keeps {n_inner_train} "
                f"of them ({outer} outer x {inner} inner folds), but {_names(families)} calibrate their "
                "probabilities with a further cross-validation that needs at least 2; leave "
                f"{_names(families)} out of model.models (e.g. models: [logreg, rf]) or add cases of that class",
                key="model.models")
    return FoldPlan(outer, inner, calibration, requested, smallest, counts)


def _check_smote(plan: FoldPlan, settings: ModelSettings) -> None:
    """SMOTE runs on inner training folds; refuse up front when the smallest class cannot have 6 cases there
    (imbalanced-learn would fail mid-run with "Expected n_neighbors <= n_samples_fit")."""
    n = plan.counts[plan.smallest_class]
    inner_train = _worst_training_count(_worst_training_count(n, plan.outer), plan.inner)
    if inner_train <= SMOTE_NEIGHBOURS:
        raise ConfigError(
            f"rebalance: smote needs at least {SMOTE_NEIGHBOURS + 1} cases of every class in each inner training "
            f"fold, but the smallest class has {n} case(s), about {inner_train} per inner training fold with "
            f"{plan.outer} outer x {plan.inner} inner folds; use rebalance: random_over, "
            "or class_weight: balanced without rebalance", key="model.rebalance")


# ---------------------------------------------------------------- batches (ComBat)


def batch_label(value) -> str | None:
    """A batch (or outcome) label as text, None when missing; 2.0 and 2 name the same scanner (a numeric column
    with gaps)."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float | np.floating):
        if not np.isfinite(value):
            return None
        if float(value).is_integer():
            return str(int(value))
    return str(value).strip() or None


def _inner_batch_floor(batches: pd.Series, y: pd.Series, plan: FoldPlan) -> dict[str, int] | None:
    """The fewest cases of each batch an inner training fold can hold when both CV levels stratify on
    outcome x batch (every stratum at least as large as the folds); None when they fall back to the outcome."""
    table = pd.crosstab(batches, y.reindex(batches.index))
    counts = table.to_numpy(dtype=float)
    if counts[counts > 0].min() < plan.outer:
        return None
    outer_train = counts - np.ceil(counts / plan.outer)
    if outer_train[counts > 0].min() < plan.inner:
        return None
    inner_train = outer_train - np.ceil(outer_train / plan.inner)
    return {str(batch): int(n) for batch, n in zip(table.index, inner_train.sum(axis=1), strict=True)}


def check_batches(values: pd.Series, settings: ModelSettings, *, plan: FoldPlan | None = None,
                  y: pd.Series | None = None, name: str = "the training cohort", file: str | None = None,
                  key: str = "model.batch_column") -> pd.Series:
    """Each case's batch as text, checked for ComBat.

    Every case needs a batch; with a ``plan`` and the outcomes ``y`` (training) there must be two batches,
    each large enough to appear at least twice in every inner training fold of the nested CV.
    """
    column = settings.batch_column
    text = values.map(batch_label)
    absent = text.index[text.isna()]
    if len(absent):
        raise ConfigError(f"{len(absent)} case(s) of {name} have no '{column}' value, e.g. {absent[:5].tolist()}: "
                          "ComBat needs every case's batch (scanner, centre)", file=file, key=key)
    if plan is None:
        return text
    counts = text.value_counts()
    if len(counts) < 2:
        raise ConfigError(f"every labelled case has '{column}' = '{counts.index[0]}': with a single batch there "
                          "is nothing to harmonise (remove harmonise)", file=file, key=key)
    floor = _inner_batch_floor(text, y, plan) if y is not None else None
    if floor is not None:  # stratified on outcome x batch at both levels: the worst fold is known exactly
        short = {batch: n for batch, n in floor.items() if n < 2}
        if short:
            raise ConfigError(
                f"batch(es) {short} of column '{column}' would have fewer than 2 cases in an inner training fold of "
                f"the nested CV ({plan.outer} outer x {plan.inner} inner folds; batch sizes {counts.to_dict()}), "
                "and ComBat needs 2 of every batch there. Merge small batches (e.g. rare scanners into one 'other' "
                "value) in the labels file", file=file, key=key)
        return text
    # an inner training fold holds about (1 - 1/outer)(1 - 1/inner) of the cases, and ComBat needs 2 of each
    # batch there; folds are stratified on outcome x batch, but on the outcome alone when a combined stratum is
    # smaller than the folds (small batches), so ask for about 4 to leave a margin
    share = (1 - 1 / plan.outer) * (1 - 1 / plan.inner)
    needed = math.ceil(4 / share)
    small = counts[counts < needed]
    if len(small):
        raise ConfigError(
            f"batch(es) {small.to_dict()} of column '{column}' have fewer than {needed} labelled cases: an inner "
            f"training fold of the nested CV ({plan.outer} outer x {plan.inner} inner folds) holds about "
            f"{share:.0%} of the cases, and ComBat needs at least 2 of every batch in each (about 4 expected leaves "
            "a margin for unlucky splits). Merge small batches (e.g. rare scanners into one 'other' value) in the "
            "labels file", file=file, key=key)
    return text


# ---------------------------------------------------------------- training inputs


class _CheckedInputs:
    """What :class:`ModelInputs` and :class:`SurvivalInputs` share: the feature columns, groups, batches and
    the notes a user is told before training starts."""

    _no_outcome = "no label"  # how a case left out for want of an outcome is described

    @property
    def group_array(self) -> np.ndarray | None:
        return None if self.groups is None else self.groups.to_numpy()

    @property
    def feature_names(self) -> list[str]:
        return [str(c) for c in self.X.columns if c != self.batch_column]

    @property
    def batch_column(self) -> str | None:
        return self.settings.batch_column if self.batches is not None else None

    def notes(self, *, folds: bool = True) -> list[str]:
        """What a user should be told before training starts (``folds=False``: all but the fold counts)."""
        notes = []
        if folds and self.folds.reduced:
            notes.append(self.folds.describe())
        if self.n_unlabelled:
            notes.append(f"{self.n_unlabelled} case(s) of the feature table have {self._no_outcome} and are left out")
        if self.dropped:
            shown = ", ".join(f"{name} ({why})" for name, why in list(self.dropped.items())[:5])
            more = f" and {len(self.dropped) - 5} more" if len(self.dropped) > 5 else ""
            notes.append(f"{len(self.dropped)} feature(s) left out before modelling: {shown}{more}")
        return notes


@dataclass
class ModelInputs(_CheckedInputs):
    """Checked training inputs: what :func:`radpipe.model.train.train_models` fits.

    Attributes
    ----------
    X : DataFrame indexed by case_id: numeric features as float (inf read as missing), plus the batch
        column (text) when the settings harmonise.
    y : Series of outcome labels (text), aligned to X.
    classes : ``[negative, positive]`` (binary) or the sorted classes (multi-class).
    groups : Series of group ids aligned to X (grouped CV), or None.
    batches : Series of batch labels aligned to X (ComBat), or None.
    settings : the settings as used: positive class and fold counts filled in.
    folds : the :class:`FoldPlan`.
    dropped : feature -> why it was left out before modelling.
    n_unlabelled : cases of the feature table without a label (left out).
    clinical : the covariates of ``settings.clinical`` aligned to X (numeric as float, categorical as text), or None.
    clinical_types : ``numeric`` / ``categorical`` per covariate.
    """

    X: pd.DataFrame
    y: pd.Series
    classes: list[str]
    settings: ModelSettings
    folds: FoldPlan
    groups: pd.Series | None = None
    batches: pd.Series | None = None
    dropped: dict[str, str] = field(default_factory=dict)
    n_unlabelled: int = 0
    clinical: pd.DataFrame | None = None
    clinical_types: dict[str, str] = field(default_factory=dict)

    @property
    def y_codes(self) -> np.ndarray:
        return encode_labels(self.y, self.classes)

    def candidate_predictors(self) -> int:
        """Candidate predictor parameters before selection: every feature offered to the in-fold selection plus the
        clinical ones (see :func:`radpipe.model.clinical.candidate_parameters`)."""
        from radpipe.model.clinical import candidate_parameters

        return candidate_parameters(len(self.feature_names), self.clinical, self.clinical_types)

    def sample_size(self) -> dict | None:
        """Riley et al.'s minimum sample size against this cohort (binary outcomes; None otherwise), see
        :mod:`radpipe.model.sample_size`."""
        from radpipe.model.sample_size import sample_size_record

        if len(self.classes) != 2:
            return None
        events = int((self.y == self.classes[1]).sum())
        return sample_size_record(len(self.y), events, self.candidate_predictors())

    def notes(self, *, folds: bool = True) -> list[str]:
        notes = super().notes(folds=folds)
        record = self.sample_size()
        if record and record["warning"]:
            notes.append(record["warning"])
        return notes


    def __repr__(self) -> str:
        counts = ", ".join(f"{c}: {n}" for c, n in self.y.value_counts().reindex(self.classes).items())
        positive = f", positive '{self.classes[1]}'" if len(self.classes) == 2 else ""
        extra = "".join([
            f", groups from '{self.settings.group_column}'" if self.groups is not None else "",
            f", batches from '{self.batch_column}'" if self.batches is not None else "",
            f", {len(self.dropped)} features dropped" if self.dropped else "",
            f", {self.n_unlabelled} unlabelled left out" if self.n_unlabelled else "",
        ])
        return (f"ModelInputs({len(self.X)} cases x {len(self.feature_names)} features, classes {{{counts}}}"
                f"{positive}, folds {self.folds.outer} outer x {self.folds.inner} inner{extra})")


def training_inputs(
    features: pd.DataFrame,
    outcomes: pd.DataFrame | pd.Series,
    settings: ModelSettings,
    *,
    label_column: str = LABEL_COLUMN,
    groups: pd.Series | None = None,
    declared_positive: str | None = None,
    dataset: str | None = None,
    source: str | None = None,
) -> ModelInputs:
    """Check a feature table and its outcomes for training; everything a user can get wrong is refused here.

    Parameters
    ----------
    features : feature table indexed by case_id (or with a ``case_id`` column), one row per case.
    outcomes : the outcome per case (a Series indexed by case_id), or a labels table indexed by case_id
        holding ``label_column`` and, as the settings need them, ``settings.group_column`` and
        ``settings.batch_column``.
    settings : the model settings; the returned ``inputs.settings`` has the positive class and the fold
        counts actually used.
    label_column : the outcome column of a labels table.
    groups : group ids by case_id (overrides ``settings.group_column`` of the labels table).
    declared_positive, dataset : a dataset's ``positive_class`` and name (from datasets.yaml).
    source : the labels file, named in errors.

    Returns
    -------
    ModelInputs

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> X = pd.DataFrame({"f1": np.arange(12.0), "f2": np.arange(12.0) % 5},
    ...                  index=pd.Index([f"c{i:02d}" for i in range(12)], name="case_id"))
    >>> y = pd.Series(["no", "yes"] * 6, index=X.index)
    >>> inputs = training_inputs(X, y, ModelSettings(positive_class="yes"))
    >>> inputs.classes, inputs.folds.outer, inputs.folds.calibration
    (['no', 'yes'], 5, 2)
    """
    X = _case_indexed(features, "the feature table")
    table = outcomes.to_frame(label_column) if isinstance(outcomes, pd.Series) else outcomes
    if label_column not in table.columns:
        raise ConfigError(f"the labels table has no outcome column '{label_column}' (columns found: "
                          f"{_shown(table.columns)})", file=source, key="label_column")
    table = table.copy()
    table.index = table.index.map(str)
    y = table[label_column].map(batch_label).dropna()  # text, stripped; empty cells are no label

    batches = None
    if settings.harmonise:
        column = settings.batch_column
        if column in table.columns and column != label_column:
            if column in X.columns:
                raise ConfigError(f"the batch column '{column}' of the labels table has the name of a feature column; "
                                  "rename it in the labels file", file=source, key="model.batch_column")
            batches = table[column].reindex(X.index)
        elif column in X.columns:
            batches = X.pop(column)
        else:
            raise ConfigError(f"no batch column '{column}' for harmonise: {settings.harmonise}: neither the labels "
                              f"table (columns: {_shown(table.columns)}) nor the feature table has it",
                              file=source, key="model.batch_column")

    labelled = [case for case in X.index if case in y.index]
    if not labelled:
        raise ConfigError(
            f"no case of the feature table has a label: its case ids (e.g. {X.index[:3].tolist()}) and the labels' "
            f"(e.g. {y.index[:3].tolist()}) do not match", file=source, key=CASE_ID)
    n_unlabelled = len(X) - len(labelled)
    X, y = X.loc[labelled], y.loc[labelled]
    X, dropped = _numeric_features(X)
    X, dropped = _without_degenerate(X, dropped)
    X, dropped, settings = robust_only(X, dropped, settings)

    groups, settings = _case_groups(X.index, table, groups, settings, source=source, what="labels table")

    classes, settings = resolve_classes(y, settings, declared=declared_positive, dataset=dataset)
    plan = plan_folds(y.value_counts().to_dict(), settings)
    settings = plan.settings(settings)
    if settings.rebalance == "smote":
        _check_smote(plan, settings)
    if batches is not None:
        batches = check_batches(batches.reindex(X.index), settings, plan=plan, y=y, file=source)
        X[settings.batch_column] = batches.to_numpy()
    clinical, types = None, {}
    if settings.clinical:
        from radpipe.model.clinical import clinical_values

        if len(classes) > 2:
            raise ConfigError(f"model.clinical compares clinical, radiomics and combined models of a binary outcome; "
                              f"this outcome has {len(classes)} classes: remove clinical", key="model.clinical")
        types = check_clinical(table, settings, label_column=label_column, features=X.columns, source=source)
        clinical = clinical_values(table.reindex(X.index), types)
    return ModelInputs(X=X, y=y.astype(str), classes=classes, settings=settings, folds=plan, groups=groups,
                       batches=batches, dropped=dropped, n_unlabelled=n_unlabelled, clinical=clinical,
                       clinical_types=types)


def check_clinical(table: pd.DataFrame, settings: ModelSettings, *, label_column: str = LABEL_COLUMN,
                   features: Iterable[str] = (), source: str | None = None) -> dict[str, str]:
    """The type (numeric / categorical) of each covariate of ``settings.clinical``, checked against the labels table.

    Refused: a covariate the table lacks (the columns it has are named), and one that is the outcome, the group
    or batch column, a survival outcome's time or event column, or the name of a feature column.

    Examples
    --------
    >>> table = pd.DataFrame({"label": ["a", "b"], "age": ["50", "61"], "grade": ["High", "Low"]})
    >>> check_clinical(table, ModelSettings(clinical=["age", "grade"]))
    {'age': 'numeric', 'grade': 'categorical'}
    """
    from radpipe.model.clinical import infer_types

    columns = list(settings.clinical or [])
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ConfigError(f"model.clinical names {_names(missing)}, which the labels table lacks (columns found: "
                          f"{_shown(table.columns)})", file=source, key="model.clinical")
    roles = {label_column: "the outcome being predicted", settings.group_column: "the group column of the folds",
             settings.batch_column: "the batch column (ComBat)"}
    if settings.outcome is not None:
        roles.update({settings.outcome.time: "the survival outcome's time", settings.outcome.event:
                      "the survival outcome's event"})
    for column in columns:
        if column in roles and column is not None:
            raise ConfigError(f"covariate '{column}' is {roles[column]}: an outcome (or a column that decides the "
                              "folds) can never be a predictor; remove it from model.clinical", file=source,
                              key="model.clinical")
    clash = [c for c in columns if c in set(map(str, features))]
    if clash:
        raise ConfigError(f"covariate(s) {clash} have the name of a feature column: rename them in the labels file",
                          file=source, key="model.clinical")
    return infer_types(table, columns, settings.clinical_types, source=source)


def _case_groups(index: pd.Index, table: pd.DataFrame, groups: pd.Series | None, settings: ModelSettings, *,
                 source: str | None, what: str) -> tuple[pd.Series | None, ModelSettings]:
    """Each case's group for grouped CV: ``groups`` when given, else the table's ``settings.group_column``.

    Every case needs a group; the settings name the column used, so the model card says what grouped the folds.
    """
    if groups is None and settings.group_column:
        if settings.group_column not in table.columns:
            raise ConfigError(f"no group column '{settings.group_column}' in the {what} (columns found: "
                              f"{_shown(table.columns)})", file=source, key="group_column")
        groups = table[settings.group_column]
    if groups is None:
        return None, settings
    groups = groups.copy()
    groups.index = groups.index.map(str)
    groups = groups.reindex(index).map(batch_label)
    absent = groups.index[groups.isna()]
    if len(absent):
        raise ConfigError(f"{len(absent)} case(s) have no group, e.g. {absent[:5].tolist()}", file=source,
                          key="group_column")
    if not settings.group_column:
        settings = settings.model_copy(update={"group_column": str(groups.name or "group")})
    return groups, settings


def _case_indexed(features: pd.DataFrame, what: str) -> pd.DataFrame:
    if not isinstance(features, pd.DataFrame):
        raise ConfigError(f"{what} must be a pandas DataFrame indexed by case_id, not {type(features).__name__}")
    X = features.set_index(CASE_ID) if CASE_ID in features.columns else features.copy()
    X.index = X.index.map(str)
    X.index.name = CASE_ID
    if X.index.has_duplicates:
        raise ConfigError(f"case ids repeat in {what}: {X.index[X.index.duplicated()].unique()[:5].tolist()} (one "
                          "row per case; several lesions per case need extract.aggregate)", key=CASE_ID)
    return X


def _numeric_features(X: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """Float features; text columns (ids, notes) are left out and named, mixed number/text columns refused."""
    dropped: dict[str, str] = {}
    mixed = {}
    for column in [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]:
        values = X[column].dropna()
        numbers = pd.to_numeric(values, errors="coerce")
        if numbers.notna().all():  # numbers stored as text
            X[column] = pd.to_numeric(X[column], errors="coerce")
        elif numbers.notna().any():
            mixed[column] = values[numbers.isna()].iloc[0]
        else:
            dropped[str(column)] = "text, not a feature"
    if mixed:
        shown = ", ".join(f"'{c}' holds {v!r}" for c, v in list(mixed.items())[:5])
        raise ConfigError(f"feature columns must hold numbers: {shown}")
    X = X.drop(columns=list(dropped))
    awkward = [c for c in X.columns if any(ch in str(c) for ch in "[]<")]
    if awkward:
        raise ConfigError(f"feature names may not contain '[', ']' or '<' (XGBoost refuses them): {awkward[:5]}")
    if X.shape[1] == 0:
        raise ConfigError("the feature table has no numeric feature column")
    return X.replace([np.inf, -np.inf], np.nan).astype(float), dropped


def _without_degenerate(X: pd.DataFrame, dropped: dict[str, str]) -> tuple[pd.DataFrame, dict[str, str]]:
    """X without the columns that carry no information or hold pyradiomics' stand-in values (flat ROIs)."""
    from radpipe.extract.feature_qc import degenerate_features

    degenerate = degenerate_features(X)
    if len(degenerate) == X.shape[1]:
        example = next(iter(degenerate.items()))
        raise ConfigError(f"every feature column is degenerate in the labelled cases (e.g. {example[0]}: "
                          f"{example[1]}): there is nothing to model")
    return X.drop(columns=list(degenerate)), {**dropped, **degenerate}


def robust_only(X: pd.DataFrame, dropped: dict[str, str], settings: ModelSettings,
                ) -> tuple[pd.DataFrame, dict[str, str], ModelSettings]:
    """X without the features ``settings.robust_features`` (a robustness.csv) flags as not robust.

    Label-free, so filtering before cross-validation does not leak. Features the table does not assess are kept;
    a table that assesses none of X's features is refused (it belongs to another extraction). The returned
    settings record what was done (file, ICC, threshold, features assessed and dropped) for the model card.

    Examples
    --------
    >>> import pandas as pd, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "robustness.csv"
    >>> pd.DataFrame({"feature": ["a", "b"], "icc_type": "ICC(1,1)", "icc": [0.9, 0.5], "ci_low": [0.8, 0.3],
    ...               "robust": [True, False], "threshold": 0.75}).to_csv(path, index=False)
    >>> X = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 1.0], "c": [0.0, 1.0]})
    >>> X2, dropped, used = robust_only(X, {}, ModelSettings(robust_features=str(path)))
    >>> list(X2.columns), dropped
    (['a', 'c'], {'b': 'not robust: ICC(1,1) lower 95% bound 0.300 < 0.75'})
    """
    source = settings.robust_features
    if not source:
        return X, dropped, settings
    if source == "auto":
        raise ConfigError("robust_features: auto is computed by `radpipe run` on the training cohort; for `radpipe "
                          "train` give the robustness.csv that `radpipe robustness` wrote", key="model.robust_features")
    from radpipe.robustness.table import read_robustness

    table = read_robustness(source).drop_duplicates("feature").set_index("feature")
    assessed = [c for c in X.columns if c in table.index]
    if not assessed:
        raise ConfigError(f"{source} assesses none of the {X.shape[1]} feature columns (e.g. {_shown(X.columns, 3)}; "
                          f"it has {_shown(table.index, 3)}): was it computed with the same extraction settings?",
                          key="model.robust_features")
    rows = table.loc[assessed]
    threshold = settings.robust_threshold
    if threshold is None:
        robust = rows["robust"].astype(bool)
        threshold = float(table["threshold"].iloc[0]) if "threshold" in table.columns else None
    else:
        robust = pd.to_numeric(rows["ci_low"], errors="coerce") >= threshold
    shown_threshold = "the table's threshold" if threshold is None else f"{threshold:g}"
    reasons = {name: f"not robust: {rows.loc[name, 'icc_type']} lower 95% bound {float(rows.loc[name, 'ci_low']):.3f} "
               f"< {shown_threshold}" for name in robust.index[~robust.to_numpy()]}
    if len(reasons) == X.shape[1]:
        raise ConfigError(f"every feature is flagged as not robust in {source}: there is nothing to model (lower "
                          "model.robust_threshold or leave robust_features out)", key="model.robust_features")
    settings = settings.model_copy()
    settings._robust_record = {"file": str(source), "icc": str(rows["icc_type"].iloc[0]), "threshold": threshold,
                               "assessed": len(assessed), "dropped": len(reasons),
                               "kept": X.shape[1] - len(reasons)}
    return X.drop(columns=list(reasons)), {**dropped, **reasons}, settings


def external_inputs(name: str, features: pd.DataFrame, outcomes: pd.DataFrame | pd.Series, inputs: ModelInputs, *,
                    label_column: str = LABEL_COLUMN) -> tuple[pd.DataFrame, pd.Series]:
    """An external test cohort's (X, y) in the training columns' order, checked against ``inputs``.

    Its labels must be training classes and, when harmonising, its batches training batches
    (ComBat has no estimates for others); cases without a label are left out.
    """
    table = outcomes.to_frame(label_column) if isinstance(outcomes, pd.Series) else outcomes.copy()
    table.index = table.index.map(str)
    Xe = _case_indexed(features, f"external cohort '{name}'")
    column = inputs.batch_column
    if column is not None and column not in Xe.columns:
        if column not in table.columns:
            raise ConfigError(f"external cohort '{name}' has no batch column '{column}': the models harmonise with "
                              "ComBat and need each case's batch (scanner, centre)", key="model.batch_column")
        Xe[column] = table[column].reindex(Xe.index)
    missing = [c for c in inputs.feature_names if c not in Xe.columns]
    if missing:
        raise ConfigError(f"external cohort '{name}' lacks {len(missing)} feature column(s) the models were "
                          f"trained on, e.g. {missing[:10]}: extract it with the training cohort's settings")
    if label_column not in table.columns:
        raise ConfigError(f"external cohort '{name}' has no outcome column '{label_column}'", key="label_column")
    ye = table[label_column].map(batch_label).dropna()
    Xe = Xe.loc[[case for case in Xe.index if case in ye.index]]
    if Xe.empty:
        raise ConfigError(f"no case of external cohort '{name}' has both features and a label")
    ye = ye.loc[Xe.index]
    unknown = sorted(set(ye) - set(inputs.classes))
    if unknown:
        raise ConfigError(f"external cohort '{name}' has labels {unknown} not seen in training "
                          f"({', '.join(inputs.classes)})")
    out = _as_float(Xe, inputs.feature_names, f"external cohort '{name}'")
    if column is not None:
        values = check_batches(Xe[column], inputs.settings, name=f"external cohort '{name}'")
        _check_known_batches(values, sorted(set(inputs.batches)), column, f"external cohort '{name}'")
        out[column] = values.to_numpy()
    return out[list(inputs.X.columns)], ye


def _check_known_batches(values: pd.Series, known: list[str], column: str, name: str) -> None:
    unseen = sorted(set(values) - set(known))
    if unseen:
        raise ConfigError(
            f"{name} has batch value(s) {unseen} in column '{column}' that the training data lacks (its batches: "
            f"{known}): ComBat is fitted on the training cohort and cannot harmonise a scanner/centre it has not "
            "seen", key="model.batch_column")


def _as_float(X: pd.DataFrame, names: list[str], what: str) -> pd.DataFrame:
    features = X[names]
    text = [c for c in names if not pd.api.types.is_numeric_dtype(features[c])
            and pd.to_numeric(features[c].dropna(), errors="coerce").isna().any()]
    if text:
        raise ConfigError(f"feature columns of {what} must hold numbers; not numeric: {text[:10]}")
    return features.apply(pd.to_numeric, errors="coerce").replace([np.inf, -np.inf], np.nan).astype(float)


# ---------------------------------------------------------------- time-to-event outcomes

_EVENT_VALUES = {"0": False, "1": True, "0.0": False, "1.0": True, "false": False, "true": True}


def survival_outcome(table: pd.DataFrame, time_column: str, event_column: str, *, source: str | None = None,
                     what: str = "the outcome table") -> tuple[pd.Series, pd.Series]:
    """The follow-up time (float) and event indicator (bool) of every row of ``table``, checked.

    Refused, naming the cases: a missing time or event column, missing or non-numeric or negative times,
    event values other than 0/1/True/False. Rows without a case id are ignored.

    Examples
    --------
    >>> table = pd.DataFrame({"os_days": ["120", "300"], "os_event": ["1", "False"]}, index=["c1", "c2"])
    >>> time, event = survival_outcome(table, "os_days", "os_event")
    >>> time.tolist(), event.tolist()
    ([120.0, 300.0], [True, False])
    """
    missing = [c for c in (time_column, event_column) if c not in table.columns]
    if missing:
        raise ConfigError(f"{what} has no column {_names(missing)} for the survival outcome (columns found: "
                          f"{_shown(table.columns)}); set model.outcome.time / model.outcome.event (or --time / "
                          "--event) to its time and event columns", file=source, key="model.outcome")
    index = table.index.map(str)
    raw_time = pd.Series(table[time_column].to_numpy(), index=index)
    time = pd.to_numeric(raw_time, errors="coerce").astype(float)
    problems = []
    absent = time.index[raw_time.isna()]
    if len(absent):
        problems.append(f"{len(absent)} case(s) have no '{time_column}': {absent[:5].tolist()}")
    text = time.index[raw_time.notna() & time.isna()]
    if len(text):
        problems.append(f"'{time_column}' is not a number for case(s) {text[:5].tolist()} "
                        f"(e.g. {raw_time.loc[text[0]]!r})")
    negative = time.index[time < 0]
    if len(negative):
        problems.append(f"'{time_column}' is negative for case(s) {negative[:5].tolist()} (e.g. "
                        f"{time.loc[negative[0]]:g}): a follow-up time counts from the time origin")
    infinite = time.index[np.isinf(time)]
    if len(infinite):
        problems.append(f"'{time_column}' is infinite for case(s) {infinite[:5].tolist()}")
    raw_event = pd.Series(table[event_column].to_numpy(), index=index).map(
        lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip().lower())
    event = raw_event.map(_EVENT_VALUES)
    no_event = event.index[raw_event.isna()]
    if len(no_event):
        problems.append(f"{len(no_event)} case(s) have no '{event_column}': {no_event[:5].tolist()}")
    bad = event.index[raw_event.notna() & event.isna()]
    if len(bad):
        problems.append(f"'{event_column}' must be 0/1 or False/True (1/True: the event happened, 0/False: "
                        f"censored), but case(s) {bad[:5].tolist()} have {sorted(set(raw_event.loc[bad]))[:5]}")
    if problems:
        raise ConfigError(f"{what} cannot be a survival outcome: " + "; ".join(problems), file=source,
                          key="model.outcome")
    return time, event.astype(bool)


def _check_events(event: pd.Series, settings: ModelSettings, *, source: str | None = None) -> FoldPlan:
    """Fold counts that fit the events and censored cases (the outer folds are stratified on the event)."""
    n_events = int(event.sum())
    if n_events == 0:
        raise ConfigError(f"no case had the event ('{settings.outcome.event}' is 0/False for all {len(event)} "
                          "cases): a survival model needs events to learn from", file=source, key="model.outcome")
    counts = {"events": n_events, "censored": int(len(event) - n_events)}
    if counts["censored"] == 0:
        counts.pop("censored")  # nothing censored: stratification has one stratum, folds need only the events
    return plan_folds(counts, settings)


@dataclass
class SurvivalInputs(_CheckedInputs):
    """Checked inputs of a survival model: features, follow-up times and event indicators per case.

    Attributes are those of :class:`ModelInputs` with ``time`` (float) and ``event`` (bool) in place of
    ``y`` and ``classes``; ``horizons`` are the recipe's or the default quartiles of the event times.
    """

    X: pd.DataFrame
    time: pd.Series
    event: pd.Series
    settings: ModelSettings
    folds: FoldPlan
    horizons: list[float]
    groups: pd.Series | None = None
    batches: pd.Series | None = None
    dropped: dict[str, str] = field(default_factory=dict)
    n_unlabelled: int = 0

    classes = ()  # a survival outcome has no classes
    _no_outcome = "no survival outcome"


    @property
    def y(self) -> pd.Series:
        """The event indicator as 0/1 text, for code that shows an outcome per case."""
        return self.event.astype(int).astype(str)

    def __repr__(self) -> str:
        n_events = int(self.event.sum())
        return (f"SurvivalInputs({len(self.X)} cases x {len(self.feature_names)} features, {n_events} events "
                f"({1 - n_events / len(self.X):.0%} censored), horizons {[round(h, 1) for h in self.horizons]}, "
                f"folds {self.folds.outer} outer x {self.folds.inner} inner)")


def survival_training_inputs(features: pd.DataFrame, outcomes: pd.DataFrame, settings: ModelSettings, *,
                             groups: pd.Series | None = None, source: str | None = None) -> SurvivalInputs:
    """Check a feature table and a survival outcome table (``settings.outcome`` names its columns) for training.

    Refused before any model is fitted: the outcome's time/event columns inside the feature table (they
    would become covariates), bad times or events (see :func:`survival_outcome`), no events, and fewer
    events than the folds need (fold counts are reduced to fit the events, as for the smallest class).

    Examples
    --------
    >>> X = pd.DataFrame({"f1": np.arange(12.0)}, index=pd.Index([f"c{i:02d}" for i in range(12)], name="case_id"))
    >>> table = pd.DataFrame({"t": np.arange(1.0, 13.0), "e": [1, 0] * 6}, index=X.index)
    >>> settings = ModelSettings(outcome={"type": "survival", "time": "t", "event": "e"})
    >>> survival_training_inputs(X, table, settings).folds.outer
    5
    """
    outcome = settings.outcome
    if outcome is None:
        raise ConfigError("survival_training_inputs needs settings.outcome (type: survival)", key="model.outcome")
    X = _case_indexed(features, "the feature table")
    leaked = [c for c in (outcome.time, outcome.event) if c in X.columns]
    if leaked:
        raise ConfigError(f"the feature table holds the survival outcome column(s) {leaked}: the outcome must never "
                          "be a covariate; keep it in the outcome table only", key="model.outcome")
    table = outcomes.copy()
    table.index = table.index.map(str)
    time, event = survival_outcome(table, outcome.time, outcome.event, source=source)
    batches = None
    if settings.harmonise:
        column = settings.batch_column
        if column in table.columns:
            batches = table[column].reindex(X.index)
        elif column in X.columns:
            batches = X.pop(column)
        else:
            raise ConfigError(f"no batch column '{column}' for harmonise: {settings.harmonise} in the outcome or "
                              "feature table", file=source, key="model.batch_column")
    labelled = [case for case in X.index if case in time.index]
    if not labelled:
        raise ConfigError(f"no case of the feature table has a survival outcome: its case ids (e.g. "
                          f"{X.index[:3].tolist()}) and the outcome table's (e.g. {time.index[:3].tolist()}) do not "
                          "match", file=source, key=CASE_ID)
    n_unlabelled = len(X) - len(labelled)
    X, time, event = X.loc[labelled], time.loc[labelled], event.loc[labelled]
    X, dropped = _numeric_features(X)
    X, dropped = _without_degenerate(X, dropped)
    X, dropped, settings = robust_only(X, dropped, settings)
    groups, settings = _case_groups(X.index, table, groups, settings, source=source, what="outcome table")
    plan = _check_events(event, settings, source=source)
    settings = plan.settings(settings)
    if batches is not None:
        batches = check_batches(batches.reindex(X.index), settings, plan=plan, y=event.astype(int).astype(str),
                                file=source)
        X[settings.batch_column] = batches.to_numpy()
    horizons = _horizons(outcome, time, event, source)
    return SurvivalInputs(X=X, time=time, event=event, settings=settings, folds=plan, horizons=horizons,
                          groups=groups, batches=batches, dropped=dropped, n_unlabelled=n_unlabelled)


def _horizons(outcome, time: pd.Series, event: pd.Series, source: str | None) -> list[float]:
    from radpipe.model.survival import default_horizons

    if outcome.horizons is None:
        return default_horizons(event.to_numpy(), time.to_numpy())
    late = [h for h in outcome.horizons if not time.min() <= h < time.max()]
    if late:
        raise ConfigError(f"model.outcome.horizons {late} lie outside the follow-up of the training cases "
                          f"({time.min():g} to {time.max():g} {outcome.time_unit}, last excluded): survival there "
                          "cannot be estimated", file=source, key="model.outcome.horizons")
    return [float(h) for h in outcome.horizons]


def survival_external_inputs(name: str, features: pd.DataFrame, outcomes: pd.DataFrame,
                             inputs: SurvivalInputs) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """An external cohort's (X, time, event) in the training columns' order, checked against ``inputs``."""
    outcome = inputs.settings.outcome
    table = outcomes.copy()
    table.index = table.index.map(str)
    time, event = survival_outcome(table, outcome.time, outcome.event, what=f"external cohort '{name}'")
    Xe = _case_indexed(features, f"external cohort '{name}'")
    column = inputs.batch_column
    if column is not None and column not in Xe.columns and column in table.columns:
        Xe[column] = table[column].reindex(Xe.index)
    missing = [c for c in inputs.feature_names if c not in Xe.columns]
    if missing:
        raise ConfigError(f"external cohort '{name}' lacks {len(missing)} feature column(s) the models were "
                          f"trained on, e.g. {missing[:10]}: extract it with the training cohort's settings")
    Xe = Xe.loc[[case for case in Xe.index if case in time.index]]
    if Xe.empty:
        raise ConfigError(f"no case of external cohort '{name}' has both features and a survival outcome")
    out = _as_float(Xe, inputs.feature_names, f"external cohort '{name}'")
    if column is not None:
        values = check_batches(Xe[column], inputs.settings, name=f"external cohort '{name}'")
        _check_known_batches(values, sorted(set(inputs.batches)), column, f"external cohort '{name}'")
        out[column] = values.to_numpy()
    return out[list(inputs.X.columns)], time.loc[Xe.index], event.loc[Xe.index]


def with_dataset_outcome(settings: ModelSettings, cohort: Cohort) -> ModelSettings:
    """The model settings with the dataset's declared outcome, when the recipe declares none.

    A dataset entry may say ``outcome: {type: survival, time: os_days, event: os_event}`` so every recipe on
    it trains survival models; a recipe's own ``model.outcome`` wins. The settings are validated again, so the
    survival defaults (the survival models) and refusals (a classifier named in ``models``) apply.
    """
    from pydantic import ValidationError

    declared = getattr(cohort.spec, "outcome", None)
    if settings.outcome is not None or declared is None:
        return settings
    values = {**settings.model_dump(exclude_unset=True), "outcome": declared.model_dump()}
    try:
        return type(settings).model_validate(values)
    except ValidationError as exc:
        reasons = "; ".join(error["msg"] for error in exc.errors())
        raise ConfigError(f"dataset '{cohort.name}' declares a survival outcome ({declared.time}, {declared.event}) "
                          f"that the recipe's model section does not fit: {reasons}", key="model") from None


def check_survival_recipe_inputs(cohort: Cohort, settings: ModelSettings, *,
                                 external: Mapping[str, Cohort] | None = None) -> RecipeInputs:
    """:func:`check_recipe_inputs` for a survival outcome: the outcome table (the dataset's ``labels`` file) and
    its time and event columns, events enough for the folds, group and batch columns, external cohorts."""
    from radpipe.model.survival import require_survival

    require_survival()
    file = _labels_file(cohort)
    if cohort.clinical.empty:
        raise ConfigError(f"dataset '{cohort.name}' has no outcome table ({file or 'labels: none'}): a survival "
                          "outcome needs a table with case_id and the time and event columns (labels: survival.csv)",
                          file=file, key="labels")
    table = cohort.clinical.copy()
    table.index = table.index.map(str)
    table.index.name = CASE_ID
    time, event = survival_outcome(table, settings.outcome.time, settings.outcome.event, source=file)
    cases = {case.case_id for case in cohort.cases}
    event = event.loc[[c for c in event.index if c in cases]] if cases else event
    if settings.group_column is None and cohort.spec.group_column:
        settings = settings.model_copy(update={"group_column": cohort.spec.group_column})
    if settings.group_column and settings.group_column not in table.columns:
        raise ConfigError(f"no group column '{settings.group_column}' in the outcome table of dataset "
                          f"'{cohort.name}' (columns found: {_shown(table.columns)})", file=file, key="group_column")
    requested = settings
    plan = _check_events(event, settings, source=file)
    settings = plan.settings(settings)
    outside = {}
    for name, ext in (external or {}).items():
        ext_table = ext.clinical.copy()
        ext_table.index = ext_table.index.map(str)
        ext_table.index.name = CASE_ID
        survival_outcome(ext_table, settings.outcome.time, settings.outcome.event, source=_labels_file(ext),
                         what=f"the outcome table of dataset '{name}'")
        outside[name] = ext_table
    return RecipeInputs(settings, requested, [], plan, table, settings.outcome.time, outside)


# ---------------------------------------------------------------- a saved model's inputs


def features_for_model(loaded: LoadedModel, table: pd.DataFrame,
                       batches: pd.DataFrame | pd.Series | None = None) -> pd.DataFrame:
    """The model's input columns of ``table`` in training order: features as float, plus the batch column.

    A model trained with ComBat harmonisation also reads each case's batch (``loaded.batch_column``):
    from ``table`` when it has that column, else from ``batches`` (a labels table holding the column,
    or the values by case_id). Every case needs a batch the model was fitted on.

    Examples
    --------
    >>> from radpipe.model import load_model
    >>> X = features_for_model(load_model("out/models"), read_features("out/features/features.csv"))  # doctest: +SKIP
    """
    X = _case_indexed(table, "the feature table")
    model = loaded.card.get("model_name", "model")
    column = loaded.batch_column
    if column is not None and column not in X.columns and batches is not None:
        if isinstance(batches, pd.DataFrame):
            if column not in batches.columns:
                raise ConfigError(
                    f"the model harmonises with ComBat and needs each case's batch in a column '{column}', but "
                    f"neither the feature table nor the labels table has one (labels columns: "
                    f"{_shown(batches.columns)})", key="batch_column")
            batches = batches[column]
        values = batches.copy()
        values.index = values.index.map(str)
        X[column] = values.reindex(X.index)
    if column is not None and column not in X.columns:
        raise ConfigError(
            f"the model '{model}' harmonises features with ComBat and needs each case's batch in a column '{column}' "
            "(the scanner/centre column of the training labels), which the table lacks: add it to the feature "
            f"table, or give a labels CSV with case_id and '{column}' (`radpipe predict/evaluate --labels FILE`)",
            key="batch_column")
    names = loaded.feature_names
    missing = [name for name in names if name not in X.columns and name != column]
    if missing:
        shown = ", ".join(missing[:20]) + (f", … ({len(missing) - 20} more)" if len(missing) > 20 else "")
        raise ConfigError(
            f"the feature table lacks {len(missing)} of the {len(names)} columns the model '{model}' was trained "
            f"on: {shown}. Extract features with the same settings as the training cohort.")
    out = _as_float(X, [n for n in names if n != column], "the feature table")
    if column is not None:
        values = check_batches(X[column], ModelSettings(harmonise="combat", batch_column=column),
                               name="the table", key="batch_column")
        known = loaded.card.get("training_batches")
        if known:
            unseen = sorted(set(values) - set(known))
            if unseen:
                raise ConfigError(
                    f"batch value(s) {unseen} in column '{column}' were not in the model's training data (its "
                    f"batches: {sorted(known)}): ComBat cannot harmonise a scanner/centre it was not fitted on",
                    key="batch_column")
        out[column] = X[column]
        out = out[names]
    out.index.name = CASE_ID
    return out


def check_extraction(loaded: LoadedModel, features_path: str | Path) -> str | None:
    """Refuse a feature table discretised differently from the model's training cohort.

    Texture features depend on the bin width, so a model trained on features at ``binWidth`` 0.25 gives
    meaningless probabilities on features extracted at 25. The training cohort's record is in the model
    card (``discretisation``); the new table's is in the ``manifest.json`` beside it. A mismatch is a
    :class:`ConfigError`; a table or model without a record returns a sentence saying it was not checked.

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> from radpipe.model.persist import LoadedModel
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "manifest.json").write_text(json.dumps({"discretisation": {"binWidth": 0.25}}))
    >>> model = LoadedModel(pipeline=None, card={"discretisation": {"binWidth": 0.25}}, path=folder)
    >>> check_extraction(model, folder / "features.csv") is None
    True
    """
    from radpipe.extract.discretisation import describe_discretisation, read_discretisation

    trained = loaded.card.get("discretisation")
    used = read_discretisation(features_path)
    if not trained or not used:
        missing = "the model card" if not trained else f"a manifest.json beside {features_path}"
        return (f"the discretisation of {features_path} could not be compared with the model's ({missing} has no "
                "record): make sure both were extracted with the same bin width")
    keys = ("binWidth", "binCount")
    if any(trained.get(key) != used.get(key) for key in keys):
        raise ConfigError(
            f"{features_path} was extracted with {describe_discretisation(used)}, but the model was trained on "
            f"features with {describe_discretisation(trained)}: texture features are not comparable. Extract the "
            f"new cohort with the training cohort's bin width: `radpipe extract COHORT --reference {loaded.path}`",
            file=str(features_path), key="discretisation")
    return None


def labels_for_model(loaded: LoadedModel, index: pd.Index, labels: pd.Series) -> pd.Series:
    """The labels of the cases in ``index`` as text, each one a class of the model."""
    labels = labels.map(batch_label)
    labels.index = labels.index.map(str)
    missing = pd.Index(index).difference(labels.dropna().index)
    if len(missing):
        raise ConfigError(f"{len(missing)} case(s) have no label, e.g. {missing[:5].tolist()}", key="label")
    labels = labels.loc[index].map(batch_label)  # as training read them: text, stripped, 1.0 == 1
    classes = loaded.classes
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise ConfigError(f"labels {unknown} are not classes of the model ({classes})", key="label")
    return labels


# ---------------------------------------------------------------- a recipe's cohort, before extraction


@dataclass
class RecipeInputs:
    """What :func:`check_recipe_inputs` found: the settings to train with and each cohort's outcome table.

    ``settings`` has the positive class, the group column and the fold counts of ``folds``;
    ``requested`` the same before the fold counts were fitted (what :func:`training_inputs` takes, so
    the model card records what was asked for and what was used).
    """

    settings: ModelSettings
    requested: ModelSettings
    classes: list[str]
    folds: FoldPlan
    outcomes: pd.DataFrame
    label_column: str
    external: dict[str, pd.DataFrame] = field(default_factory=dict)

    def notes(self) -> list[str]:
        return [self.folds.describe()] if self.folds.reduced else []


def cohort_outcomes(cohort: Cohort) -> pd.DataFrame:
    """A cohort's labels table indexed by case id, its outcome column holding the usable labels only
    (discovery leaves out missing-value markers and unknown classes, see ``radpipe.cohort``)."""
    column = cohort.spec.label_column
    table = cohort.clinical.copy() if not cohort.clinical.empty else pd.DataFrame(index=cohort.labels.index)
    table.index = table.index.map(str)
    table.index.name = CASE_ID
    table[column] = cohort.labels.reindex(table.index)
    return table


def _labels_file(cohort: Cohort) -> str | None:
    return str(cohort.spec.root / cohort.spec.labels) if cohort.spec.labels else None


def check_recipe_inputs(cohort: Cohort, settings: ModelSettings, *,
                        external: Mapping[str, Cohort] | None = None) -> RecipeInputs:
    """Everything ``radpipe run`` checks about a cohort's outcomes before it extracts a single case.

    The labels file and its outcome column, two or more classes with a positive class that is set or
    plain (0/1, False/True), fold counts that fit the smallest class, the group column (the recipe's
    ``model.group_column`` or the dataset's ``group_column``) and, when harmonising, the batch column of
    the training and every external cohort. ``radpipe validate`` runs exactly this.
    """
    file = _labels_file(cohort)
    column = cohort.spec.label_column
    if cohort.clinical.empty:
        raise ConfigError(
            f"dataset '{cohort.name}' has no labels file ({file or 'labels: none'}): `radpipe run` trains a model and "
            "needs a labels table with case_id and the outcome (use `radpipe extract` for feature tables alone)",
            file=file, key="labels")
    if column not in cohort.clinical.columns:
        raise ConfigError(
            f"the labels table of dataset '{cohort.name}' has no outcome column '{column}' (columns found: "
            f"{_shown(cohort.clinical.columns)}): rename the column, or set label_column in the dataset's entry",
            file=file, key="label_column")
    if settings.group_column is None and cohort.spec.group_column:
        settings = settings.model_copy(update={"group_column": cohort.spec.group_column})
    if settings.group_column and settings.group_column not in cohort.clinical.columns:
        raise ConfigError(f"no group column '{settings.group_column}' in the labels table of dataset "
                          f"'{cohort.name}' (columns found: {_shown(cohort.clinical.columns)})", file=file,
                          key="group_column")
    labels = cohort.labels
    if labels.nunique() < 2:
        found = f"only {sorted(labels.unique())}" if len(labels) else "no usable label"
        raise ConfigError(
            f"dataset '{cohort.name}' has {found} in its '{column}' column: `radpipe run` trains a model and needs at "
            "least two outcome classes (use `radpipe extract` for feature tables alone)", file=file, key="dataset")
    classes, requested = resolve_classes(labels, settings, declared=cohort.spec.positive_class, dataset=cohort.name)
    plan = plan_folds(labels.value_counts().to_dict(), requested)
    settings = plan.settings(requested)
    if settings.rebalance == "smote":
        _check_smote(plan, settings)
    if settings.clinical:
        if len(classes) > 2:
            raise ConfigError(f"model.clinical compares models of a binary outcome; dataset '{cohort.name}' has "
                              f"{len(classes)} classes: remove clinical", key="model.clinical")
        check_clinical(cohort.clinical, settings, label_column=column, source=file)
    outcomes = cohort_outcomes(cohort)
    outside: dict[str, pd.DataFrame] = {}
    batches = None
    if settings.harmonise:
        batches = check_batches(_batch_column(cohort, settings), settings, plan=plan, y=labels,
                                name=f"the labels table of dataset '{cohort.name}'", file=file)
    for name, ext in (external or {}).items():
        outside[name] = cohort_outcomes(ext)
        if batches is not None:
            values = check_batches(_batch_column(ext, settings), settings,
                                   name=f"the labels table of dataset '{name}'", file=_labels_file(ext))
            _check_known_batches(values, sorted(set(batches)), settings.batch_column, f"external cohort '{name}'")
    return RecipeInputs(settings, requested, classes, plan, outcomes, column, outside)


def _batch_column(cohort: Cohort, settings: ModelSettings) -> pd.Series:
    column = settings.batch_column
    if column not in cohort.clinical.columns:
        raise ConfigError(f"the labels table of dataset '{cohort.name}' has no batch column '{column}' for "
                          f"harmonise: {settings.harmonise} (columns: {_shown(cohort.clinical.columns)})",
                          file=_labels_file(cohort), key="model.batch_column")
    return cohort.clinical[column].reindex(cohort.labels.index)


# ---------------------------------------------------------------- message helpers


def _shown(columns, limit: int = 15) -> str:
    names = [str(c) for c in columns]
    return str(names[:limit])[:-1] + (f", … {len(names) - limit} more]" if len(names) > limit else "]")


def _names(names: Iterable[str]) -> str:
    return " and ".join(f"'{n}'" for n in names)
