"""The rad-score: a fitted linear model written as a formula a statistician can recompute elsewhere.

A linear pipeline (``logreg``, ``svm_linear``, and the ``clinical`` / ``combined`` logistic models of
:mod:`radpipe.model.clinical`) scores a case by

    score = intercept + sum_j coefficient_j * (x_j - mean_j) / sd_j  +  sum_l coefficient_l * [x = level_l]

over its named predictors: ``x_j`` is a numeric input in its original units (a missing value is
replaced by ``impute``, the training median), ``mean_j``/``sd_j`` the training fold's standardisation,
and each level of a categorical covariate has its own indicator term. Column selection steps (variance,
correlation filter, selection) only decide which features appear. For a logistic model the score is
the log-odds of the positive class (``decision_function``); for ``svm_linear`` it is the mean of the
calibration-fold SVMs' decision values (their Platt-scaled probabilities are averaged, so the
probability is not a logistic function of this score). Harmonised (ComBat) pipelines are not linear in
the original features and have no formula.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.feature_selection import SelectorMixin
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVC

from radpipe._io import atomic_write_text

RADSCORE_COLUMNS = ["term", "feature", "coefficient", "mean", "sd", "level", "impute", "min", "max"]


@dataclass
class LinearFormula:
    """A linear score over named predictors (see the module docstring).

    ``terms`` has one row per term: ``term`` (the name in the formula), ``feature`` (the input column),
    ``coefficient``, ``mean`` and ``sd`` (standardisation; 0 and 1 for a category indicator), ``level``
    (the category of an indicator term, empty for a numeric one), ``impute`` (the value a missing input
    takes) and ``min``/``max`` (the training range, when known). ``logistic`` says whether the score is
    the log-odds of the positive class.
    """

    intercept: float
    terms: pd.DataFrame
    logistic: bool = True

    @property
    def features(self) -> list[str]:
        """Input columns the score reads, in term order."""
        return list(dict.fromkeys(self.terms["feature"]))

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Each term's contribution (coefficient x standardised value, or x indicator) per case."""
        out = {}
        for row in self.terms.itertuples(index=False):
            values = X[row.feature]
            if _is_level(row.level):
                filled = values.astype(object).where(values.notna(), row.impute)
                out[row.term] = row.coefficient * (filled.astype(str) == str(row.level)).astype(float)
            else:
                filled = pd.to_numeric(values, errors="coerce").fillna(float(row.impute))
                out[row.term] = row.coefficient * (filled - row.mean) / row.sd
        return pd.DataFrame(out, index=X.index)

    def score(self, X: pd.DataFrame) -> pd.Series:
        """The score of each case of ``X`` (original units; only the formula's columns are read)."""
        return self.intercept + self.contributions(X).sum(axis=1)

    def table(self) -> pd.DataFrame:
        """The terms with an ``(intercept)`` row first: what ``radscore.csv`` holds."""
        head = pd.DataFrame([{"term": "(intercept)", "feature": "", "coefficient": self.intercept, "mean": np.nan,
                              "sd": np.nan, "level": "", "impute": np.nan, "min": np.nan, "max": np.nan}])
        return pd.concat([head, self.terms[RADSCORE_COLUMNS]], ignore_index=True)

    def r_expression(self, name: str = "rad_score", data: str = "d") -> str:
        """The formula as R code over a data frame ``data`` with the original columns (missing values filled)."""
        lines = [f"# {'log-odds of the positive class' if self.logistic else 'linear score'}; recompute with R",
                 f"{name} <- {self.intercept:.17g}"]
        for row in self.terms.itertuples(index=False):
            column = f"{data}[[\"{row.feature}\"]]"
            if _is_level(row.level):
                filled = f"ifelse(is.na({column}), \"{row.impute}\", as.character({column}))"
                lines.append(f"  + ({row.coefficient:.17g}) * ({filled} == \"{row.level}\")")
            else:
                filled = f"ifelse(is.na({column}), {float(row.impute):.17g}, {column})"
                lines.append(f"  + ({row.coefficient:.17g}) * ({filled} - ({row.mean:.17g})) / {row.sd:.17g}")
        if self.logistic:
            lines.append(f"probability <- plogis({name})")
        return "\n".join(lines) + "\n"

    @classmethod
    def read_csv(cls, path: str | Path, *, logistic: bool = True) -> LinearFormula:
        """A formula from a ``radscore.csv``."""
        table = pd.read_csv(path, dtype={"term": str, "feature": str, "level": str}, keep_default_na=False,
                            na_values=[""])
        intercept = float(table.loc[table["term"] == "(intercept)", "coefficient"].iloc[0])
        terms = table[table["term"] != "(intercept)"].reset_index(drop=True)
        for column in ("term", "feature", "level"):
            terms[column] = terms[column].fillna("").astype(str)
        impute = [row.impute if _is_level(row.level) else float(row.impute) for row in terms.itertuples()]
        terms["impute"] = pd.Series(impute, dtype=object)
        return cls(intercept, terms, logistic=logistic)


def _is_level(level) -> bool:
    return isinstance(level, str) and level != ""


# ---------------------------------------------------------------- reading a fitted pipeline


def _numeric_branch(steps: list, coefficients: dict[str, float], ranges: dict | None) -> list[dict]:
    """Terms of a chain of imputer -> column selectors -> scaler -> column selectors (radiomics or numeric)."""
    imputer = scaler = None
    for step in steps:
        if isinstance(step, SimpleImputer):
            imputer = step
        elif isinstance(step, StandardScaler):
            scaler = step
        elif not (step in (None, "passthrough") or isinstance(step, SelectorMixin) or hasattr(step, "fit_resample")):
            raise ValueError(f"step {type(step).__name__} is not linear in the original features: no formula")
    if scaler is None:
        raise ValueError("no StandardScaler step: no formula")
    scale_names = [str(n) for n in scaler.feature_names_in_]
    fills = dict(zip((str(n) for n in imputer.feature_names_in_), imputer.statistics_, strict=True)) if imputer \
        else {}
    position = {name: i for i, name in enumerate(scale_names)}
    rows = []
    for name, coef in coefficients.items():
        i = position[name]
        low, high = (ranges or {}).get(name, (np.nan, np.nan))
        rows.append({"term": name, "feature": name, "coefficient": float(coef), "mean": float(scaler.mean_[i]),
                     "sd": float(scaler.scale_[i]), "level": "", "impute": float(fills.get(name, np.nan)),
                     "min": low, "max": high})
    return rows


def _categorical_branch(steps: list, coefficients: dict[str, float]) -> list[dict]:
    imputer = next((s for s in steps if isinstance(s, SimpleImputer)), None)
    encoder = next(s for s in steps if isinstance(s, OneHotEncoder))
    fills = dict(zip(imputer.feature_names_in_, imputer.statistics_, strict=True)) if imputer else {}
    names = encoder.get_feature_names_out()
    rows, k = [], 0
    for feature, levels in zip(encoder.feature_names_in_, encoder.categories_, strict=True):
        for level in levels:
            rows.append({"term": f"{feature}={level}", "feature": str(feature),
                         "coefficient": float(coefficients.get(str(names[k]), 0.0)), "mean": 0.0, "sd": 1.0,
                         "level": str(level), "impute": fills.get(feature, ""), "min": np.nan, "max": np.nan})
            k += 1
    return rows


def _steps(transformer) -> list:
    return [step for _, step in transformer.steps] if hasattr(transformer, "steps") else [transformer]


def _final_linear(clf: BaseEstimator) -> tuple[np.ndarray, float, bool]:
    """(coefficients, intercept, logistic) of a fitted final estimator, or ValueError when not linear."""
    if isinstance(clf, LogisticRegression):
        if clf.coef_.shape[0] != 1:
            raise ValueError("a multi-class logistic model has one formula per class: not supported")
        return clf.coef_[0], float(clf.intercept_[0]), True
    if isinstance(clf, CalibratedClassifierCV):
        svms = [c.estimator for c in clf.calibrated_classifiers_]
        if all(isinstance(s, SVC) and s.kernel == "linear" for s in svms) and svms[0].coef_.shape[0] == 1:
            # the decision values are linear in the inputs, so their mean is the mean coefficients' score
            return (np.mean([s.coef_[0] for s in svms], axis=0),
                    float(np.mean([s.intercept_[0] for s in svms])), False)
    raise ValueError(f"{type(clf).__name__} is not a linear model: no formula")


def linear_formula(pipeline, ranges: dict[str, tuple[float, float]] | None = None) -> LinearFormula:
    """The fitted linear ``pipeline`` as a :class:`LinearFormula` (ValueError when it is not linear).

    ``ranges`` maps input columns to their training (min, max), kept in the table for a nomogram.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from radpipe.model import ModelSettings, build_pipeline
    >>> rng = np.random.default_rng(0)
    >>> y = np.tile([0, 1], 20)
    >>> X = pd.DataFrame({"f1": rng.normal(size=40) + y, "f2": rng.normal(size=40)})
    >>> pipe = build_pipeline("logreg", ModelSettings(select_k=1)).fit(X, y)
    >>> formula = linear_formula(pipe)
    >>> formula.features
    ['f1']
    >>> bool(np.allclose(formula.score(X), pipe.decision_function(X)))
    True
    """
    coef, intercept, logistic = _final_linear(pipeline.steps[-1][1])
    front = pipeline[:-1]
    names = [str(n) for n in front.get_feature_names_out()]
    coefficients = dict(zip(names, coef, strict=True))
    design = next((s for _, s in front.steps if isinstance(s, ColumnTransformer)), None)
    if design is None:
        rows = _numeric_branch(_steps(front), coefficients, ranges)
    else:
        if len(front.steps) != 1:
            raise ValueError("a column transformer must be the only step before the estimator: no formula")
        rows = []
        for name, transformer, _columns in design.transformers_:
            if transformer == "drop" or name == "remainder":
                continue
            out = [str(n) for n in transformer.get_feature_names_out()]
            mine = {n: coefficients[n] for n in out}
            steps = _steps(transformer)
            if any(isinstance(s, OneHotEncoder) for s in steps):
                rows += _categorical_branch(steps, mine)
            else:
                rows += _numeric_branch(steps, mine, ranges)
    terms = pd.DataFrame(rows, columns=RADSCORE_COLUMNS)
    terms["impute"] = terms["impute"].astype(object)
    return LinearFormula(intercept, terms, logistic=logistic)


def is_linear(pipeline) -> bool:
    """Whether :func:`linear_formula` can write ``pipeline`` as a formula."""
    try:
        linear_formula(pipeline)
    except (ValueError, AttributeError, KeyError, StopIteration):
        return False
    return True


def linear_score(pipeline, X: pd.DataFrame) -> np.ndarray | None:
    """The out-of-sample linear score (the rad-score) of ``X`` under ``pipeline``; None when not linear."""
    try:
        formula = linear_formula(pipeline)
    except (ValueError, AttributeError, KeyError, StopIteration):
        return None
    return formula.score(X).to_numpy(dtype=float)


def training_ranges(X: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """Each numeric column's training (min, max), for the nomogram's axes."""
    numeric = X.apply(pd.to_numeric, errors="coerce")
    return {str(c): (float(numeric[c].min()), float(numeric[c].max())) for c in numeric.columns
            if numeric[c].notna().any()}


def write_radscore(pipeline, out_dir: Path, *, ranges: dict | None = None) -> Path | None:
    """Write ``radscore.csv`` and ``radscore.txt`` (R code) for a linear ``pipeline``; None when not linear."""
    from radpipe.model.folder import ModelFolder

    try:
        formula = linear_formula(pipeline, ranges)
    except (ValueError, AttributeError, KeyError, StopIteration):
        return None
    folder = ModelFolder(out_dir)
    folder.path.mkdir(parents=True, exist_ok=True)
    formula.table().to_csv(folder.radscore_path, index=False, float_format="%.17g")
    atomic_write_text(folder.radscore_txt_path, formula.r_expression())
    return folder.radscore_path
