"""The model folder: the one contract between ``radpipe train`` and every later reader.

``train`` writes these files and ``explain``, ``predict`` and ``evaluate`` read them through
:class:`ModelFolder`, so a file name is spelt in one place only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from radpipe.errors import ConfigError

MODEL_FILE = "model.joblib"
NEIGHBOURS_FILE = "neighbours.joblib"  # similar patients + OOD scorer (radpipe.model.neighbours), with a .sha256
CARD_FILE = "model_card.json"
CARD_MD_FILE = "model_card.md"
METRICS_FILE = "metrics.csv"
PREDICTIONS_FILE = "predictions.csv"
SPLITS_FILE = "splits.json"
TIMINGS_FILE = "timings.json"
TRAIN_FEATURES_FILE = "train_features.csv"
TRAIN_LABELS_FILE = "train_labels.csv"  # case_id,label; a survival model's: case_id,time,event
CALIBRATION_SURVIVAL_FILE = "calibration_survival.csv"  # survival models: predicted vs Kaplan–Meier by risk tertile
DECISION_CURVE_FILE = "decision_curve.csv"  # binary: net benefit per cohort, model and threshold (model.decision_curve)
DECISION_CURVE_FIGURE = "decision_curve.png"
CALIBRATION_CURVE_FILE = "calibration_curve.csv"  # binary: binned and smoothed observed vs predicted
CALIBRATION_SUMMARY_FILE = "calibration_summary.csv"  # binary: calibration-in-the-large and slope with CIs
CALIBRATION_CURVE_FIGURE = "calibration_curve.png"
RADSCORE_FILE = "radscore.csv"  # a linear model as a formula: term, feature, coefficient, mean, sd, ...
RADSCORE_TXT_FILE = "radscore.txt"  # the same formula as R code
COMPARISON_FILE = "comparison.csv"  # clinical / radiomics / combined models: AUCs, DeLong p, bootstrap difference
SEARCH_FAMILIES_FILE = "search_families.csv"  # joint search: each family's best inner configuration's outer AUC (information)
SAMPLE_SIZE_FILE = "sample_size.json"  # Riley et al. (BMJ 2020) minimum sample size against the cohort
MODELS_DIR = "models"  # every compared model, models/<name>/
FOLDS_DIR = "folds"  # the best model's outer-fold pipelines, folds/<repeat>_<fold>/


@dataclass(frozen=True)
class ModelFolder:
    """A folder written by ``radpipe train``: paths of its files and readers for its tables.

    Examples
    --------
    >>> folder = ModelFolder("out/models")
    >>> folder.metrics_path.name
    'metrics.csv'
    """

    path: Path

    def __init__(self, path: str | Path):
        path = Path(path)
        object.__setattr__(self, "path", path.parent if path.is_file() else path)

    # paths
    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def neighbours_path(self) -> Path:
        return self.path / NEIGHBOURS_FILE

    @property
    def card_path(self) -> Path:
        return self.path / CARD_FILE

    @property
    def card_md_path(self) -> Path:
        return self.path / CARD_MD_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def predictions_path(self) -> Path:
        return self.path / PREDICTIONS_FILE

    @property
    def splits_path(self) -> Path:
        return self.path / SPLITS_FILE

    @property
    def timings_path(self) -> Path:
        return self.path / TIMINGS_FILE

    @property
    def train_features_path(self) -> Path:
        return self.path / TRAIN_FEATURES_FILE

    @property
    def train_labels_path(self) -> Path:
        return self.path / TRAIN_LABELS_FILE

    @property
    def calibration_survival_path(self) -> Path:
        return self.path / CALIBRATION_SURVIVAL_FILE

    @property
    def decision_curve_path(self) -> Path:
        return self.path / DECISION_CURVE_FILE

    @property
    def calibration_curve_path(self) -> Path:
        return self.path / CALIBRATION_CURVE_FILE

    @property
    def calibration_summary_path(self) -> Path:
        return self.path / CALIBRATION_SUMMARY_FILE

    @property
    def radscore_path(self) -> Path:
        return self.path / RADSCORE_FILE

    @property
    def radscore_txt_path(self) -> Path:
        return self.path / RADSCORE_TXT_FILE

    @property
    def comparison_path(self) -> Path:
        return self.path / COMPARISON_FILE

    @property
    def search_families_path(self) -> Path:
        return self.path / SEARCH_FAMILIES_FILE

    @property
    def sample_size_path(self) -> Path:
        return self.path / SAMPLE_SIZE_FILE

    @property
    def folds_dir(self) -> Path:
        return self.path / FOLDS_DIR

    def model_dir(self, name: str) -> Path:
        """Where model ``name`` of the comparison is saved."""
        return self.path / MODELS_DIR / name

    def fold_dir(self, repeat: int, fold: int) -> Path:
        """Where the best model's pipeline of outer fold (``repeat``, ``fold``) is saved."""
        return self.folds_dir / f"{repeat}_{fold}"

    def fold_dirs(self) -> list[Path]:
        """The saved outer-fold pipelines, in (repeat, fold) order; empty when none were saved."""
        if not self.folds_dir.is_dir():
            return []

        def order(path: Path) -> tuple[int, ...]:
            return tuple(int(part) for part in path.name.split("_") if part.isdigit())

        return sorted((p for p in self.folds_dir.iterdir() if p.is_dir()), key=order)

    # readers
    def exists(self) -> bool:
        return self.model_path.exists()

    def require(self) -> ModelFolder:
        """This folder, or a ConfigError (exit 2) naming what is missing."""
        if not self.path.exists():
            raise ConfigError(f"model folder {self.path} does not exist: give the --out folder of `radpipe train`")
        if not self.model_path.exists():
            raise ConfigError(f"{self.path} has no {MODEL_FILE}: expected a folder written by `radpipe train`")
        return self

    def card(self) -> dict:
        return json.loads(self.card_path.read_text()) if self.card_path.exists() else {}

    def card_md(self) -> str | None:
        return self.card_md_path.read_text() if self.card_md_path.exists() else None

    def metrics(self) -> pd.DataFrame | None:
        return pd.read_csv(self.metrics_path) if self.metrics_path.exists() else None

    def predictions(self) -> pd.DataFrame | None:
        """predictions.csv with case ids as text (out-of-fold rows have cohort 'cv')."""
        if not self.predictions_path.exists():
            return None
        return pd.read_csv(self.predictions_path, dtype={"case_id": str, "label": str})

    def splits(self) -> dict | None:
        return json.loads(self.splits_path.read_text()) if self.splits_path.exists() else None

    def train_features(self) -> pd.DataFrame | None:
        if not self.train_features_path.exists():
            return None
        return pd.read_csv(self.train_features_path, dtype={"case_id": str}).set_index("case_id")

    def train_labels(self) -> pd.Series | None:
        """The training labels by case id; None when absent or for a survival model (see :meth:`train_outcome`)."""
        if not self.train_labels_path.exists():
            return None
        table = pd.read_csv(self.train_labels_path, dtype=str)
        return table.set_index("case_id")["label"] if "label" in table.columns else None

    def train_outcome(self) -> pd.DataFrame | None:
        """A survival model's training outcome: ``time`` (float) and ``event`` (0/1) by case id; None otherwise."""
        if not self.train_labels_path.exists():
            return None
        table = pd.read_csv(self.train_labels_path, dtype={"case_id": str})
        if not {"time", "event"} <= set(table.columns):
            return None
        return table.set_index("case_id")[["time", "event"]]

    def comparison(self) -> pd.DataFrame | None:
        """comparison.csv: one row per model with its kind (clinical, radiomics, combined) and the comparison."""
        return pd.read_csv(self.comparison_path) if self.comparison_path.exists() else None

    def sample_size(self) -> dict | None:
        """sample_size.json (Riley et al.'s minimum sample size), None when absent."""
        return json.loads(self.sample_size_path.read_text()) if self.sample_size_path.exists() else None

    def calibration_survival(self) -> pd.DataFrame | None:
        """calibration_survival.csv of a survival model (one row per model, cohort, horizon and risk tertile)."""
        path = self.calibration_survival_path
        return pd.read_csv(path) if path.exists() else None
