"""Nomograms of logistic models: a points scale per predictor, total points and a probability axis.

A logistic model's log-odds is a sum of one contribution per predictor (see
:mod:`radpipe.model.radscore`). The predictor whose contribution varies most over its training range
gets 0 to 100 points; every other predictor is scaled by the same factor, so points add up. The total
points map back to the log-odds (``offset + total * lp_per_point``) and so to a probability.

No maintained Python nomogram package fits (simpleNomo pins pandas 1.2; PyNomo draws engineering
nomographs), so the drawing is matplotlib's. The figure is drawn from the table :func:`write_nomogram`
writes beside it (``nomogram.csv``: the points of every tick).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from radpipe.model.folder import MODELS_DIR, RADSCORE_FILE, ModelFolder
from radpipe.model.radscore import LinearFormula, _is_level, linear_formula

#: models whose score is the log-odds of the positive class, in the order a nomogram prefers them
LOGISTIC_MODELS = ("combined", "logreg", "clinical")
NOMOGRAM_FILE = "nomogram.png"
NOMOGRAM_TABLE = "nomogram.csv"


@dataclass
class PredictorScale:
    """One predictor's axis: ``low``/``high`` its range (numeric) or ``levels`` (categorical), and the points
    of a value: ``points = (contribution - floor) * points_per_lp``."""

    feature: str
    terms: pd.DataFrame
    floor: float
    span: float
    low: float = np.nan
    high: float = np.nan

    @property
    def categorical(self) -> bool:
        return _is_level(self.terms["level"].iloc[0])

    @property
    def levels(self) -> list[str]:
        return [str(v) for v in self.terms["level"]] if self.categorical else []


@dataclass
class NomogramScales:
    """Per-predictor points scales of a logistic formula (see the module docstring).

    ``points_per_lp`` converts log-odds to points (100 / the widest predictor's span); ``offset`` is the
    log-odds at 0 total points.
    """

    formula: LinearFormula
    predictors: list[PredictorScale]
    points_per_lp: float
    offset: float

    def contribution(self, scale: PredictorScale, values: pd.Series) -> pd.Series:
        frame = pd.DataFrame({scale.feature: values})
        sub = LinearFormula(0.0, scale.terms.reset_index(drop=True), logistic=True)
        return sub.contributions(frame).sum(axis=1)

    def points(self, X: pd.DataFrame) -> pd.DataFrame:
        """Points of each predictor for each case of ``X`` (original units)."""
        return pd.DataFrame({s.feature: (self.contribution(s, X[s.feature]) - s.floor) * self.points_per_lp
                             for s in self.predictors}, index=X.index)

    def total_points(self, X: pd.DataFrame) -> pd.Series:
        return self.points(X).sum(axis=1)

    def probability(self, total_points) -> np.ndarray:
        """The probability a total of points reads on the probability axis."""
        lp = self.offset + np.asarray(total_points, dtype=float) / self.points_per_lp
        return 1.0 / (1.0 + np.exp(-lp))

    @property
    def max_points(self) -> float:
        return float(sum(s.span for s in self.predictors) * self.points_per_lp)

    def table(self, ticks: int = 6) -> pd.DataFrame:
        """Every tick of the drawing: ``axis``, ``value`` (original units or level) and ``points``."""
        rows = []
        for s in self.predictors:
            values = s.levels if s.categorical else _ticks(s.low, s.high, ticks)
            pts = (self.contribution(s, pd.Series(values, dtype=object if s.categorical else float)) - s.floor) \
                * self.points_per_lp
            rows += [{"axis": s.feature, "value": v, "points": float(p)} for v, p in zip(values, pts, strict=True)]
        for p in _probability_ticks(self):
            total = (np.log(p / (1 - p)) - self.offset) * self.points_per_lp
            rows.append({"axis": "probability", "value": p, "points": float(total)})
        return pd.DataFrame(rows, columns=["axis", "value", "points"])


def _ticks(low: float, high: float, n: int) -> list[float]:
    from matplotlib.ticker import MaxNLocator

    if not np.isfinite(low) or not np.isfinite(high) or high <= low:
        return [low] if np.isfinite(low) else []
    values = MaxNLocator(n).tick_values(low, high)
    return [float(v) for v in values if low - 1e-12 <= v <= high + 1e-12] or [low, high]


def _probability_ticks(scales: NomogramScales) -> list[float]:
    lo, hi = scales.probability([0.0, scales.max_points])
    candidates = [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99]
    return [p for p in candidates if min(lo, hi) <= p <= max(lo, hi)]


def nomogram_scales(pipeline_or_formula, ranges: dict[str, tuple[float, float]] | None = None) -> NomogramScales:
    """The points scales of a fitted logistic pipeline or a :class:`LinearFormula`.

    ``ranges`` gives each numeric predictor's (min, max) in original units (default: the formula's
    training range, else mean +- 2 SD). Predictors with a zero coefficient get no axis.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from radpipe.model import ModelSettings, build_pipeline
    >>> rng = np.random.default_rng(0)
    >>> y = np.tile([0, 1], 20)
    >>> X = pd.DataFrame({"f1": rng.normal(size=40) + y, "f2": rng.normal(size=40) - y})
    >>> pipe = build_pipeline("logreg", ModelSettings()).fit(X, y)
    >>> scales = nomogram_scales(pipe, ranges={c: (X[c].min(), X[c].max()) for c in X})
    >>> p = scales.probability(scales.total_points(X))
    >>> bool(np.abs(p - pipe.predict_proba(X)[:, 1]).max() < 1e-9)
    True
    """
    formula = pipeline_or_formula if isinstance(pipeline_or_formula, LinearFormula) else linear_formula(
        pipeline_or_formula)
    if not formula.logistic:
        raise ValueError("a nomogram reads probabilities off a logistic model; this formula is not one")
    ranges = ranges or {}
    predictors, floor_sum = [], 0.0
    for feature in formula.features:
        terms = formula.terms[formula.terms["feature"] == feature]
        if np.allclose(terms["coefficient"], 0.0):
            continue
        if _is_level(terms["level"].iloc[0]):
            contributions = terms["coefficient"].to_numpy(dtype=float)
            low = high = np.nan
        else:
            row = terms.iloc[0]
            low, high = ranges.get(feature, (row["min"], row["max"]))
            if not (np.isfinite(low) and np.isfinite(high)) or high <= low:
                low, high = row["mean"] - 2 * row["sd"], row["mean"] + 2 * row["sd"]
            contributions = row["coefficient"] * (np.array([low, high]) - row["mean"]) / row["sd"]
        floor = float(contributions.min())
        predictors.append(PredictorScale(feature, terms, floor, float(contributions.max() - floor), low, high))
        floor_sum += floor
    widest = max((s.span for s in predictors), default=0.0)
    points_per_lp = 100.0 / widest if widest > 0 else 1.0
    return NomogramScales(formula, predictors, points_per_lp, formula.intercept + floor_sum)


def draw_nomogram(scales: NomogramScales, title: str = ""):
    """A matplotlib figure of the scales: points, one axis per predictor, total points, probability."""
    import matplotlib.pyplot as plt

    table = scales.table()
    rows = ["Points", *[s.feature for s in scales.predictors], "Total points", "Probability"]
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(rows) + 1.0))
    total_max = scales.max_points
    width = 100.0

    def line(y, xs, labels, x_of=lambda x: x):
        xs = [x_of(x) for x in xs]
        if xs:
            ax.plot([min(xs), max(xs)], [y, y], color="black", lw=0.8)
        # a label that would overlap its neighbour goes to the next free row: above, below, higher above
        rows = [(y + 0.18, "bottom"), (y - 0.12, "top"), (y + 0.42, "bottom")]
        ends = [-np.inf] * len(rows)
        for x, label in sorted(zip(xs, labels, strict=True)):
            ax.plot([x, x], [y, y + 0.12], color="black", lw=0.8)
            half = 0.45 * len(label) + 0.5  # about half the label's width in points units at font size 7
            row = next((i for i, end in enumerate(ends) if x - half > end), 0)
            ends[row] = x + half
            ax.text(x, rows[row][0], label, ha="center", va=rows[row][1], fontsize=7)

    y = len(rows) - 1
    line(y, list(range(0, 101, 10)), [str(v) for v in range(0, 101, 10)])
    for s in scales.predictors:
        y -= 1
        ticks = table[table["axis"] == s.feature]
        labels = [str(v) if s.categorical else f"{float(v):.4g}" for v in ticks["value"]]
        line(y, ticks["points"].tolist(), labels)
    y -= 1
    total_ticks = _ticks(0.0, total_max, 8)
    to_width = (lambda t: t * width / total_max) if total_max > 0 else (lambda t: t)
    line(y, total_ticks, [f"{t:.0f}" for t in total_ticks], to_width)
    y -= 1
    prob = table[table["axis"] == "probability"]
    line(y, prob["points"].tolist(), [f"{float(v):g}" for v in prob["value"]], to_width)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(list(reversed(rows)), fontsize=8)
    ax.set_ylim(-0.6, len(rows) - 0.2)
    ax.set_xlim(-5, width + 5)
    ax.set_xticks([])
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def _logistic_formula_dir(folder: ModelFolder) -> tuple[str, Path] | None:
    """The model folder (and its name) the nomogram is drawn for: the first logistic model of
    :data:`LOGISTIC_MODELS` with a ``radscore.csv``; the folder's own model when it is one of them."""
    card = folder.card()
    candidates: list[tuple[str, Path]] = []
    for name in LOGISTIC_MODELS:
        if card.get("model_name") == name:
            candidates.append((name, folder.path))
        candidates.append((name, folder.path / MODELS_DIR / name))
    for name, path in candidates:
        if (path / RADSCORE_FILE).exists():
            return name, path
    return None


def write_nomogram(model_dir: Path, out_dir: Path) -> Path | None:
    """Draw the nomogram of the folder's logistic model to ``out_dir/nomogram.png`` (and its ticks to
    ``nomogram.csv``); None when the folder has no logistic model with a formula.

    The model is the first of ``combined``, ``logreg``, ``clinical`` the folder holds (see
    :data:`LOGISTIC_MODELS`), read from its ``radscore.csv``; numeric axes span the training range.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> write_nomogram(pathlib.Path(tempfile.mkdtemp()), pathlib.Path(tempfile.mkdtemp())) is None
    True
    """
    import matplotlib.pyplot as plt

    chosen = _logistic_formula_dir(ModelFolder(Path(model_dir)))
    if chosen is None:
        return None
    name, path = chosen
    formula = LinearFormula.read_csv(path / RADSCORE_FILE)
    scales = nomogram_scales(formula)
    if not scales.predictors:
        return None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scales.table().to_csv(out_dir / NOMOGRAM_TABLE, index=False)
    fig = draw_nomogram(scales, title=f"Nomogram of the '{name}' logistic model (final fit on all cases)")
    target = out_dir / NOMOGRAM_FILE
    fig.savefig(target, dpi=120)
    plt.close(fig)
    return target
