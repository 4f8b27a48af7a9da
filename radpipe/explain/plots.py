"""Matplotlib figures of the explain reports, each returned as PNG bytes.

Figures are drawn on ``matplotlib.figure.Figure`` directly (no pyplot), so they need no backend, keep
no global state and can be drawn in worker processes.

One colour meaning everywhere: :data:`POSITIVE` (dark vermillion) is "towards the positive class" and the
positive class itself, :data:`NEGATIVE` (blue) is "towards the negative class" and that class, in the
waterfall, the LIME bars, the beeswarm's direction labels, the dependence plots and their legends. The pair is
from the Okabe–Ito palette, chosen because it stays distinct under red-green colour blindness (checked in
``tests/test_feature_docs.py`` with a deuteranopia/protanopia simulation).

The feature plots take optional ``display_names`` ({column: readable name}) and ``units`` ({column: unit})
mappings; a column missing from them is shown by its own name and without a unit.
"""

from __future__ import annotations

import io
import re
import textwrap
from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator

# Okabe–Ito vermillion (#D55E00) darkened to #C04F00 so that text in it reaches WCAG AA contrast on white
# (4.8:1; the original is 3.9:1); the blue is Okabe–Ito's own (5.2:1)
POSITIVE = "#C04F00"  # towards the positive class, and that class
NEGATIVE = "#0072B2"  # towards the negative class, and that class
UP, DOWN = POSITIVE, NEGATIVE  # older names, kept for callers
GREY = "#7f7f7f"
THRESHOLD = "#000000"
CURVE = "#2f3e46"  # ROC and calibration curves: they show no direction, so neither direction colour
VALUE_CMAP = "viridis"  # feature value (low → high): no red or blue hue, so it cannot be read as a direction
DPI = 110
# Smallest text in a figure, in points at DPI; figures are sized to be shown at about their natural width,
# so this is also (within ~10%) the size on the page at 100% zoom.
FONT = 10
FONT_SMALL = 9


def _png(fig: Figure, tight: bool = True) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight" if tight else None, facecolor="white")
    return buf.getvalue()


def _short(name: str, width: int = 42) -> str:
    name = str(name)
    return name if len(name) <= width else name[: width - 1] + "…"


def _plain(v: float) -> str:
    """A number as a person writes it: ``455,600``, ``25.9``, ``0.0123``; powers of ten only beyond that."""
    if v == 0:
        return "0"
    if abs(v) >= 1e9 or abs(v) < 1e-3:
        return f"{v:.2e}"
    if abs(v) >= 1000:
        digits = int(np.floor(np.log10(abs(v)))) + 1
        return f"{round(v, 4 - digits):,.0f}"  # four significant digits, thousands separated
    return f"{v:.3g}"


def _fmt(v, unit: str = "") -> str:
    """A value for a label, with its unit when it has one."""
    try:
        v = float(v)
    except (TypeError, ValueError):
        return str(v)
    if np.isnan(v):
        return "missing"
    text = _plain(v)
    return f"{text} {unit}" if unit and unit != "dimensionless" else text


def _plain_ticks(axis) -> None:
    """Tick labels as plain numbers (no offset, no ``1e6`` corner label)."""
    axis.set_major_formatter(FuncFormatter(lambda v, _: _plain(v)))


def _name(column, display_names: Mapping[str, str] | None) -> str:
    return (display_names or {}).get(str(column), str(column))


def _unit(column, units: Mapping[str, str] | None) -> str:
    unit = (units or {}).get(str(column), "")
    return "" if unit == "dimensionless" else unit


def _axis_label(column, display_names: Mapping[str, str] | None, units: Mapping[str, str] | None) -> str:
    unit = _unit(column, units)
    return f"{_name(column, display_names)} ({unit})" if unit else _name(column, display_names)


_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?![\w.])")


def _rule_label(rule: str, display_names: Mapping[str, str] | None, units: Mapping[str, str] | None) -> str:
    """A LIME rule (``original_firstorder_Range > 25.94``) with the readable name and plain numbers with unit.

    Numbers are rewritten only outside the column name, which may itself hold digits (``log-sigma-3-0-mm``).
    """
    rule = str(rule)
    names = sorted(set(display_names or {}) | set(units or {}), key=len, reverse=True)
    column = next((c for c in names if c in rule), None)
    if column is None:
        return rule
    unit = _unit(column, units)
    parts = [_NUMBER.sub(lambda m: _fmt(m.group(), unit), part) for part in rule.split(column)]
    return _name(column, display_names).join(parts)


def _direction_legend(ax, positive: str | None, negative: str | None, **kwargs) -> None:
    """Legend naming the classes the two colours push towards."""
    if positive is None:
        return
    handles = [Patch(color=POSITIVE, label=f"towards {positive}"),
               Patch(color=NEGATIVE, label=f"towards {negative}" if negative else f"away from {positive}")]
    ax.legend(handles=handles, fontsize=FONT_SMALL, frameon=False, **kwargs)


def waterfall(contrib: pd.Series, values: pd.Series, base: float, prob: float, *, top: int = 10,
              threshold: float | None = None, positive: str = "positive", negative: str | None = None,
              display_names: Mapping[str, str] | None = None, units: Mapping[str, str] | None = None) -> bytes:
    """SHAP waterfall: from the base value, the ``top`` largest contributions, the rest, to the probability.

    Bars towards ``positive`` are :data:`POSITIVE`, bars towards ``negative`` (the other class) :data:`NEGATIVE`.
    """
    order = contrib.abs().sort_values(ascending=False, kind="stable").index
    shown = list(order[:top])
    rest = float(contrib.drop(shown).sum()) if len(order) > top else None
    labels, deltas = [], []
    if rest is not None:
        labels.append(f"{len(order) - top} other features")
        deltas.append(rest)
    for name in reversed(shown):
        labels.append(f"{_short(_name(name, display_names), 48)} = "
                      f"{_fmt(values.get(name, np.nan), _unit(name, units))}")
        deltas.append(float(contrib[name]))
    n = len(deltas)
    fig = Figure(figsize=(7.6, 0.42 * n + 1.6))
    ax = fig.add_subplot()
    # bars are drawn bottom (rest) to top (largest), accumulating from the base value
    left = base
    for i, d in enumerate(deltas):
        ax.barh(i, d, left=left, color=POSITIVE if d >= 0 else NEGATIVE, height=0.65)
        ax.text(left + d + (0.004 if d >= 0 else -0.004), i, f"{d:+.3f}", va="center",
                ha="left" if d >= 0 else "right", fontsize=FONT_SMALL)
        left += d
    ax.axvline(base, color=GREY, lw=0.8, ls="--")
    ax.axvline(prob, color="black", lw=1.0)
    if threshold is not None:
        ax.axvline(threshold, color=THRESHOLD, lw=0.9, ls=":")
    ax.set_yticks(range(n), labels, fontsize=FONT_SMALL)
    ax.tick_params(axis="x", labelsize=FONT_SMALL)
    ax.set_xlabel(f"predicted probability of {positive}", fontsize=FONT)
    lo = min(base, prob, *(np.cumsum([base] + deltas)))
    hi = max(base, prob, *(np.cumsum([base] + deltas)))
    pad = max(0.06, 0.15 * (hi - lo))
    ax.set_xlim(max(-0.02, lo - pad), min(1.02, hi + pad))
    title = f"average patient {base:.3f} → this patient {prob:.3f}"
    if threshold is not None:
        title += f"   (threshold {threshold:.3f}, dotted)"
    ax.set_title(title, fontsize=FONT)
    _direction_legend(ax, positive, negative, loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.9 / (n + 3)),
                      ncol=2)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def signed_bars(series: pd.Series, *, xlabel: str, title: str = "", width: float = 7.6,
                display_names: Mapping[str, str] | None = None, units: Mapping[str, str] | None = None,
                positive: str | None = None, negative: str | None = None) -> bytes:
    """Horizontal bars (e.g. LIME weights), largest |value| on top: positive values :data:`POSITIVE`, negative
    :data:`NEGATIVE`.

    The index may be feature columns or LIME rules (``original_firstorder_Range > 25.94``); names found in
    ``display_names``/``units`` are replaced by the readable name and numbers get the unit. With
    ``positive`` set, a legend names the class each colour pushes towards.
    """
    s = series.iloc[::-1]
    fig = Figure(figsize=(width, 0.38 * len(s) + 1.4))
    ax = fig.add_subplot()
    ax.barh(range(len(s)), s.to_numpy(dtype=float), color=[POSITIVE if v >= 0 else NEGATIVE for v in s],
            height=0.65)
    labels = [_short(textwrap.shorten(_rule_label(i, display_names, units), 80), 64) for i in s.index]
    ax.set_yticks(range(len(s)), labels, fontsize=FONT_SMALL)
    ax.tick_params(axis="x", labelsize=FONT_SMALL)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel(xlabel, fontsize=FONT)
    if title:
        ax.set_title(title, fontsize=FONT)
    _direction_legend(ax, positive, negative, loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.9 / (len(s) + 3)),
                      ncol=2)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def grouped_bars(family: pd.Series, image_filter: pd.Series, *, xlabel: str, color: str | None = None) -> bytes:
    """Two panels of bars: contributions summed per feature family and per image filter (signed values in the
    direction colours, or all in ``color``)."""
    fig = Figure(figsize=(8.4, 0.34 * max(len(family), len(image_filter)) + 1.7))
    for k, (series, title) in enumerate(((family, "by feature family"), (image_filter, "by image filter"))):
        ax = fig.add_subplot(1, 2, k + 1)
        s = series.sort_values(key=np.abs, kind="stable")
        ax.barh(range(len(s)), s.to_numpy(dtype=float), height=0.6,
                color=color or [POSITIVE if v >= 0 else NEGATIVE for v in s])
        ax.set_yticks(range(len(s)), list(s.index), fontsize=FONT_SMALL)
        ax.tick_params(axis="x", labelsize=FONT_SMALL)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_title(title, fontsize=FONT)
        ax.set_xlabel(xlabel, fontsize=FONT_SMALL)
        ax.spines[["top", "right"]].set_visible(False)
    fig.subplots_adjust(wspace=0.6)
    return _png(fig)


def magnitude_bars(series: pd.Series, *, xlabel: str, title: str = "", color: str = "#34495e",
                   display_names: Mapping[str, str] | None = None) -> bytes:
    """Horizontal bars of non-negative magnitudes, largest on top."""
    s = series.sort_values(kind="stable")
    fig = Figure(figsize=(7.6, 0.36 * len(s) + 1.2))
    ax = fig.add_subplot()
    ax.barh(range(len(s)), s.to_numpy(dtype=float), color=color, height=0.65)
    ax.set_yticks(range(len(s)), [_short(_name(i, display_names), 60) for i in s.index], fontsize=FONT_SMALL)
    ax.tick_params(axis="x", labelsize=FONT_SMALL)
    ax.set_xlabel(xlabel, fontsize=FONT)
    if title:
        ax.set_title(title, fontsize=FONT)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def lesion_slice(image: np.ndarray, mask: np.ndarray, spacing: tuple[float, float] = (1.0, 1.0),
                 height: int = 380, zoom_only: bool = False) -> bytes:
    """The image slice with the mask outline in yellow: whole on the left, zoomed on the lesion on the right,
    as JPEG bytes (``zoom_only``: the zoomed panel alone, a thumbnail).

    ``image`` and ``mask`` are rows x columns; ``spacing`` is (row, column) spacing, so pixels are shown with
    their physical aspect ratio. Drawn with Pillow (no matplotlib): a slice is large and this runs per patient.
    """
    from PIL import Image

    image = np.asarray(image, dtype=float)
    mask = np.asarray(mask) > 0
    finite = image[np.isfinite(image)]
    lo, hi = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    grey = (np.clip((np.nan_to_num(image, nan=lo) - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    panels = [(slice(None), slice(None))]
    rows, cols = np.nonzero(mask)
    if rows.size:
        m = int(max(np.ptp(rows) + 1, np.ptp(cols) + 1) * 0.35) + 4
        panels.append((slice(max(0, rows.min() - m), min(mask.shape[0], rows.max() + m + 1)),
                       slice(max(0, cols.min() - m), min(mask.shape[1], cols.max() + m + 1))))
    if zoom_only:
        panels = panels[-1:]
    tiles = []
    for rs, cs in panels:
        g, k = grey[rs, cs], mask[rs, cs]
        aspect = (g.shape[1] * spacing[1]) / max(1e-9, g.shape[0] * spacing[0])
        size = (max(1, round(height * aspect)), height)
        g = np.asarray(Image.fromarray(g).resize(size, Image.Resampling.BILINEAR))
        k = np.asarray(Image.fromarray(k.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)) > 0
        tile = np.minimum(g, 253)  # palette indices: 0-253 grey, 254 white, 255 the outline colour
        tile[_outline(k, width=2)] = 255
        tiles.append(tile)
    gap = 14
    width = sum(t.shape[1] for t in tiles) + gap * (len(tiles) - 1)
    canvas = np.full((height, width), 254, dtype=np.uint8)
    x = 0
    for t in tiles:
        canvas[:, x: x + t.shape[1]] = t
        x += t.shape[1] + gap
    palette = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    palette[254] = (255, 255, 255)
    palette[255] = (241, 196, 15)
    buf = io.BytesIO()
    # JPEG, not PNG: speckled ultrasound/PET texture compresses badly without loss (BUSI: 278 KB PNG, 78 KB
    # here, no visible difference); full-resolution colour (subsampling 0) keeps the outline crisp
    Image.fromarray(palette[canvas]).save(buf, format="JPEG", quality=85, subsampling=0, optimize=True)
    return buf.getvalue()


def _outline(mask: np.ndarray, width: int = 2) -> np.ndarray:
    """Pixels of ``mask`` within ``width`` pixels of its border."""
    from scipy.ndimage import binary_erosion

    return mask & ~binary_erosion(mask, iterations=width, border_value=0)


def roc_curve_band(y: np.ndarray, p: np.ndarray, *, n_boot: int = 1000, seed: int = 42,
                   threshold: float | None = None) -> tuple[bytes, dict]:
    """ROC curve with a 95% bootstrap band (cases resampled) and the AUC with its percentile CI."""
    from sklearn.metrics import roc_auc_score, roc_curve

    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    grid = np.linspace(0, 1, 101)
    fpr, tpr, _ = roc_curve(y, p)
    auc = roc_auc_score(y, p)
    rng = np.random.default_rng(seed)
    curves, aucs = [], []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        if y[idx].min() == y[idx].max():
            continue
        f, t, _ = roc_curve(y[idx], p[idx])
        curves.append(np.interp(grid, f, t))
        aucs.append(roc_auc_score(y[idx], p[idx]))
    fig = Figure(figsize=(4.6, 4.4))
    ax = fig.add_subplot()
    stats = {"auc": float(auc), "auc_ci_low": None, "auc_ci_high": None, "n": int(len(y)),
             "n_positive": int(y.sum())}
    if curves:
        lo, hi = np.percentile(curves, [2.5, 97.5], axis=0)
        ax.fill_between(grid, lo, hi, color=CURVE, alpha=0.18, lw=0, label="95% bootstrap band")
        stats["auc_ci_low"], stats["auc_ci_high"] = (float(v) for v in np.percentile(aucs, [2.5, 97.5]))
    ax.plot(fpr, tpr, color=CURVE, lw=1.8, label=f"AUC {auc:.3f}")
    if threshold is not None:
        yhat = p >= threshold
        sens = (yhat & (y == 1)).sum() / max(1, (y == 1).sum())
        spec = (~yhat & (y == 0)).sum() / max(1, (y == 0).sum())
        ax.plot([1 - spec], [sens], "o", color="black", ms=5, label=f"threshold {threshold:.2f}")
    _roc_axes(ax, legend_size=FONT_SMALL)
    return _png(fig), stats


def _roc_axes(ax, *, legend_size: int) -> None:
    """Chance diagonal, labels and a square unit box shared by the binary and one-vs-rest ROC plots."""
    ax.plot([0, 1], [0, 1], color=GREY, lw=0.8, ls="--")
    ax.set_xlabel("1 − specificity")
    ax.set_ylabel("sensitivity")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize=legend_size, frameon=False)


def calibration(y: np.ndarray, p: np.ndarray, *, bins: int = 10) -> bytes:
    """Observed share of positives against mean predicted probability in quantile bins (Wilson 95% CI)."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    bins = max(2, min(bins, len(y) // 10 or 2))
    edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)
    xs, ys, lo, hi, ns = [], [], [], [], []
    for b in range(len(edges) - 1):
        sel = which == b
        n = sel.sum()
        if n == 0:
            continue
        k = y[sel].sum()
        ph = k / n
        z = 1.96
        centre = (ph + z * z / (2 * n)) / (1 + z * z / n)
        half = z * np.sqrt(ph * (1 - ph) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        xs.append(p[sel].mean())
        ys.append(ph)
        lo.append(centre - half)
        hi.append(centre + half)
        ns.append(n)
    fig = Figure(figsize=(4.6, 4.4))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color=GREY, lw=0.8, ls="--", label="perfect calibration")
    xs, ys = np.array(xs), np.array(ys)
    # a bin of all positives (or negatives) puts the Wilson edge ~1e-16 past the observed share
    yerr = np.clip([ys - np.array(lo), np.array(hi) - ys], 0, None)
    ax.errorbar(xs, ys, yerr=yerr, fmt="o-", color=CURVE, ms=4, lw=1.2, capsize=2, label="observed (95% CI)")
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed share of positives")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.legend(loc="upper left", fontsize=FONT_SMALL, frameon=False)
    return _png(fig)


def confusion(y: np.ndarray, p: np.ndarray, threshold: float, classes: tuple[str, str]) -> tuple[bytes, dict]:
    """Confusion matrix at ``threshold``; ``classes`` is (negative, positive)."""
    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    yhat = (p >= threshold).astype(int)
    m = np.array([[((y == t) & (yhat == q)).sum() for q in (0, 1)] for t in (0, 1)])
    fig = Figure(figsize=(4.0, 3.6))
    ax = fig.add_subplot()
    ax.imshow(m, cmap="Blues", vmin=0, vmax=max(1, m.max()) * 1.3)
    for t in (0, 1):
        for q in (0, 1):
            ax.text(q, t, f"{m[t, q]}\n({m[t, q] / max(1, m[t].sum()):.0%} of row)", ha="center", va="center",
                    fontsize=10)
    ax.set_xticks([0, 1], [f"predicted\n{_short(c, 18)}" for c in classes], fontsize=FONT_SMALL)
    ax.set_yticks([0, 1], [f"true\n{_short(c, 18)}" for c in classes], fontsize=FONT_SMALL)
    ax.set_title(f"threshold {threshold:.3f}", fontsize=9)
    return _png(fig), {"tn": int(m[0, 0]), "fp": int(m[0, 1]), "fn": int(m[1, 0]), "tp": int(m[1, 1])}


def _direction_hints(ax, positive: str | None, negative: str | None, *, axis: str = "x") -> None:
    """Coloured words at the ends of the SHAP axis naming the class each side pushes towards."""
    if positive is None:
        return
    away = f"towards {negative}" if negative else f"away from {positive}"
    if axis == "x":
        ax.text(0.0, 1.01, f"← {away}", transform=ax.transAxes, ha="left", va="bottom", color=NEGATIVE,
                fontsize=FONT_SMALL, fontweight="bold")
        ax.text(1.0, 1.01, f"towards {positive} →", transform=ax.transAxes, ha="right", va="bottom",
                color=POSITIVE, fontsize=FONT_SMALL, fontweight="bold")
    else:
        ax.text(0.01, 0.99, f"↑ towards {positive}", transform=ax.transAxes, ha="left", va="top", color=POSITIVE,
                fontsize=FONT_SMALL, fontweight="bold")
        ax.text(0.01, 0.01, f"↓ {away}", transform=ax.transAxes, ha="left", va="bottom", color=NEGATIVE,
                fontsize=FONT_SMALL, fontweight="bold")


def beeswarm(shap: pd.DataFrame, values: pd.DataFrame, *, top: int = 15, seed: int = 42,
             display_names: Mapping[str, str] | None = None, positive: str | None = None,
             negative: str | None = None, xlabel: str | None = None) -> bytes:
    """SHAP value of each case for the ``top`` features; colour = the case's feature value (rank in cohort).

    The feature value uses :data:`VALUE_CMAP` (no red or blue), so colour never competes with the direction
    colours, which label the ends of the SHAP axis when ``positive`` is given.
    """
    order = shap.abs().mean().sort_values(ascending=False, kind="stable").index[:top]
    rng = np.random.default_rng(seed)
    fig = Figure(figsize=(7.8, 0.4 * len(order) + 1.7))
    ax = fig.add_subplot()
    sc = None
    for row, name in enumerate(reversed(list(order))):
        s = shap[name].to_numpy(dtype=float)
        v = values[name].to_numpy(dtype=float) if name in values else np.full(len(s), np.nan)
        colour = pd.Series(v).rank(pct=True).to_numpy()
        # jitter proportional to the local density so dense regions spread out
        hist, edges = np.histogram(s, bins=40)
        dens = hist[np.clip(np.searchsorted(edges, s, side="right") - 1, 0, len(hist) - 1)] / max(1, hist.max())
        y = row + (rng.random(len(s)) - 0.5) * 0.75 * np.sqrt(dens)
        sc = ax.scatter(s, y, c=np.nan_to_num(colour, nan=0.5), cmap=VALUE_CMAP, vmin=0, vmax=1, s=10, lw=0)
    ax.axvline(0, color=GREY, lw=0.8)
    ax.set_yticks(range(len(order)), [_short(_name(n, display_names), 52) for n in reversed(list(order))],
                  fontsize=FONT_SMALL)
    ax.tick_params(axis="x", labelsize=FONT_SMALL)
    target = f" of {positive}" if positive else ""
    ax.set_xlabel(xlabel or f"SHAP value (change in predicted probability{target})", fontsize=FONT)
    ax.spines[["top", "right"]].set_visible(False)
    _direction_hints(ax, positive, negative, axis="x")
    if sc is not None:
        cb = fig.colorbar(sc, ax=ax, fraction=0.03, pad=0.02, ticks=[0, 1])
        cb.ax.set_yticklabels(["low", "high"], fontsize=FONT_SMALL)
        cb.set_label("feature value (rank in cohort)", fontsize=FONT_SMALL)
    return _png(fig)


def _dependence_axes(ax, name: str, display_names: Mapping[str, str] | None = None,
                     units: Mapping[str, str] | None = None) -> None:
    """Zero line, labels, plain-number ticks and light frame shared by the binary and per-class dependence plots."""
    ax.axhline(0, color=GREY, lw=0.8)
    ax.set_xlabel(_short(_axis_label(name, display_names, units), 46), fontsize=FONT)
    ax.set_ylabel("SHAP value", fontsize=FONT)
    # shown in a grid of ~360 px columns, i.e. at ~85% of natural size: one point larger than elsewhere
    ax.tick_params(labelsize=FONT)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=4))  # plain numbers such as 125,000 are wide
    _plain_ticks(ax.xaxis)
    _plain_ticks(ax.yaxis)
    ax.spines[["top", "right"]].set_visible(False)


def class_colours(labels, positive: str | None = None) -> dict[str, str]:
    """{class: colour}: with two classes, ``positive`` is :data:`POSITIVE` and the other :data:`NEGATIVE`.

    Without ``positive`` the second class in sorted order is taken as positive (the model stage's rule for
    two text labels); more classes get :data:`CLASS_COLOURS` in sorted order.
    """
    names = sorted({str(v) for v in labels})
    if len(names) <= 2:
        pos = str(positive) if positive is not None else (names[-1] if len(names) == 2 else None)
        return {n: POSITIVE if n == pos else NEGATIVE for n in names}
    return {n: _class_colour(k) for k, n in enumerate(names)}


def dependence(name: str, x: pd.Series, s: pd.Series, labels: pd.Series | None = None, *,
               display_names: Mapping[str, str] | None = None, units: Mapping[str, str] | None = None,
               positive: str | None = None, negative: str | None = None) -> bytes:
    """SHAP value of one feature against its value; points coloured by true class when known.

    The positive class's cases are :data:`POSITIVE` and the negative class's :data:`NEGATIVE`, the same colours
    that mean "towards" that class in the waterfall and LIME bars.
    """
    fig = Figure(figsize=(3.7, 3.1))
    ax = fig.add_subplot()
    if labels is not None and labels.notna().any():
        colours = class_colours(labels.dropna(), positive)
        # the negative class first, so the positive cases are drawn on top
        for lab in sorted(colours, key=lambda c: colours[c] == POSITIVE):
            idx = labels.index[labels.astype(str) == lab]
            ax.scatter(x[idx], s[idx], s=12, lw=0, color=colours[lab], alpha=0.8, label=_short(lab, 24))
        ax.legend(fontsize=FONT, frameon=False, title="true class", title_fontsize=FONT, markerscale=1.8,
                  loc="lower left", bbox_to_anchor=(0, 1.0), ncol=2, alignment="left")
    else:
        ax.scatter(x, s, s=12, lw=0, color="#34495e", alpha=0.8)
    _dependence_axes(ax, name, display_names, units)
    if positive is not None:
        ax.set_ylabel(f"SHAP value (> 0: towards {_short(positive, 20)})", fontsize=FONT)
    return _png(fig)


def heatmap(matrix: pd.DataFrame, *, title: str, vmin: float = -1, vmax: float = 1, missing: str = "–") -> bytes:
    """Annotated square matrix (fold x fold rank correlations); a missing cell is written ``missing``."""
    n = len(matrix)
    size = min(8.0, 1.8 + 0.5 * n)
    fig = Figure(figsize=(size + 0.8, size))
    ax = fig.add_subplot()
    im = ax.imshow(matrix.to_numpy(dtype=float), cmap="viridis", vmin=vmin, vmax=vmax)
    if n <= 12:
        for i in range(n):
            for j in range(n):
                v = matrix.iat[i, j]
                text = missing if pd.isna(v) else f"{v:.2f}"
                ax.text(j, i, text, ha="center", va="center", fontsize=FONT_SMALL,
                        color="black" if pd.isna(v) or v >= (vmin + vmax) / 2 else "white")
    ax.set_xticks(range(n), list(matrix.columns), rotation=90, fontsize=FONT_SMALL)
    ax.set_yticks(range(n), list(matrix.index), fontsize=FONT_SMALL)
    ax.set_title(title, fontsize=FONT)
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cb.ax.tick_params(labelsize=FONT_SMALL)
    return _png(fig)


# ---------------------------------------------------------------- multi-class figures

# Okabe–Ito, in an order that starts with the binary pair (negative, positive), then black and greys
CLASS_COLOURS = (NEGATIVE, POSITIVE, "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000",
                 "#999999", "#5f4b8b")


def _class_colour(k: int) -> str:
    return CLASS_COLOURS[k % len(CLASS_COLOURS)]


def roc_curves_ovr(y: np.ndarray, prob: np.ndarray, classes: list[str], *, n_boot: int = 1000,
                   seed: int = 42) -> tuple[bytes, dict]:
    """One-vs-rest ROC curve of each class and the macro AUC with a 95% bootstrap CI (cases resampled).

    ``y`` holds class indices into ``classes``, ``prob`` is (cases x classes). Classes absent from ``y``
    get no curve; the macro AUC averages the classes present (as the model stage's metrics do).
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    y, prob = np.asarray(y, dtype=int), np.asarray(prob, dtype=float)

    def per_class(yy, pp):
        return [roc_auc_score(yy == k, pp[:, k]) if 0 < (yy == k).sum() < len(yy) else np.nan
                for k in range(len(classes))]

    aucs = per_class(y, prob)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        values = np.array(per_class(y[idx], prob[idx]))
        if np.isfinite(values).any():
            boot.append(np.nanmean(values))
    fig = Figure(figsize=(4.8, 4.4))
    ax = fig.add_subplot()
    for k, name in enumerate(classes):
        if np.isfinite(aucs[k]):
            fpr, tpr, _ = roc_curve(y == k, prob[:, k])
            ax.plot(fpr, tpr, color=_class_colour(k), lw=1.6, label=f"{_short(name, 24)} vs rest: AUC {aucs[k]:.3f}")
    _roc_axes(ax, legend_size=FONT_SMALL)
    macro = float(np.nanmean(aucs)) if np.isfinite(aucs).any() else float("nan")
    stats = {"auc": macro, "auc_ci_low": None, "auc_ci_high": None, "n": int(len(y)),
             "per_class": {str(c): (float(a) if np.isfinite(a) else None) for c, a in zip(classes, aucs, strict=True)}}
    if boot:
        stats["auc_ci_low"], stats["auc_ci_high"] = (float(v) for v in np.percentile(boot, [2.5, 97.5]))
    ax.set_title(f"one-vs-rest ROC, macro AUC {macro:.3f}", fontsize=9)
    return _png(fig), stats


def confusion_multiclass(y: np.ndarray, pred: np.ndarray, classes: list[str]) -> tuple[bytes, list[list[int]]]:
    """K x K confusion matrix of true class (rows) against predicted, most probable, class (columns)."""
    y, pred = np.asarray(y, dtype=int), np.asarray(pred, dtype=int)
    k = len(classes)
    m = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    size = 2.6 + 0.6 * k
    fig = Figure(figsize=(size + 0.4, size))
    ax = fig.add_subplot()
    ax.imshow(m, cmap="Blues", vmin=0, vmax=max(1, m.max()) * 1.3)
    for t in range(k):
        for q in range(k):
            ax.text(q, t, f"{m[t, q]}\n({m[t, q] / max(1, m[t].sum()):.0%})", ha="center", va="center",
                    fontsize=FONT_SMALL)
    ax.set_xticks(range(k), [f"predicted\n{_short(c, 14)}" for c in classes], fontsize=FONT_SMALL)
    ax.set_yticks(range(k), [f"true\n{_short(c, 14)}" for c in classes], fontsize=FONT_SMALL)
    ax.set_title("most probable class (share of row)", fontsize=9)
    return _png(fig), m.tolist()


def class_magnitude_bars(frame: pd.DataFrame, *, xlabel: str,
                         display_names: Mapping[str, str] | None = None) -> bytes:
    """Stacked horizontal bars: rows are features (largest total on top), columns are classes."""
    f = frame.loc[frame.sum(axis=1).sort_values(kind="stable").index]
    fig = Figure(figsize=(7.6, 0.34 * len(f) + 1.4))
    ax = fig.add_subplot()
    left = np.zeros(len(f))
    for k, name in enumerate(f.columns):
        ax.barh(range(len(f)), f[name].to_numpy(dtype=float), left=left, color=_class_colour(k), height=0.65,
                label=str(name))
        left += f[name].to_numpy(dtype=float)
    ax.set_yticks(range(len(f)), [_short(_name(i, display_names), 60) for i in f.index], fontsize=FONT_SMALL)
    ax.set_xlabel(xlabel)
    ax.legend(fontsize=FONT_SMALL, frameon=False, title="class", title_fontsize=FONT_SMALL, loc="lower right")
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def dependence_by_class(name: str, x: pd.Series, shap_by_class: dict[str, pd.Series], *,
                        display_names: Mapping[str, str] | None = None,
                        units: Mapping[str, str] | None = None) -> bytes:
    """SHAP value of one feature towards each class (one colour per class) against the feature's value."""
    fig = Figure(figsize=(3.7, 3.1))
    ax = fig.add_subplot()
    for k, (label, s) in enumerate(shap_by_class.items()):
        ax.scatter(x, s, s=10, lw=0, color=_class_colour(k), alpha=0.75, label=_short(label, 24))
    ax.legend(fontsize=FONT, frameon=False, title="towards class", title_fontsize=FONT, markerscale=1.8,
              loc="lower left", bbox_to_anchor=(0, 1.0), ncol=2, alignment="left")
    _dependence_axes(ax, name, display_names, units)
    return _png(fig)


# ---------------------------------------------------------------- survival figures
# :data:`POSITIVE` is the high-risk group (towards the event) and :data:`NEGATIVE` the low-risk group; curves
# that show no direction (a patient's predicted survival, the whole cohort's Kaplan–Meier) are :data:`CURVE`/grey.

RISK_COLOURS = {"high": POSITIVE, "low": NEGATIVE}


def _time_ticks(ax, t_max: float) -> np.ndarray:
    """About six round tick positions from 0 to ``t_max`` on the time axis, as plain numbers."""
    ax.set_xlim(0, t_max * 1.02 if t_max > 0 else 1)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True, min_n_ticks=4))
    _plain_ticks(ax.xaxis)
    ticks = [t for t in ax.get_xticks() if 0 <= t <= t_max * 1.02]
    return np.asarray(ticks, dtype=float)


def kaplan_meier(time, event) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Kaplan–Meier estimate (scikit-survival) as step points from time 0: times, survival, 95% log-log band.

    >>> t, s, lo, hi = kaplan_meier([2, 3, 3, 5], [1, 1, 0, 1])
    >>> t.tolist(), s.round(3).tolist()
    ([0.0, 2.0, 3.0, 5.0], [1.0, 0.75, 0.5, 0.0])
    """
    from sksurv.nonparametric import kaplan_meier_estimator

    time, event = np.asarray(time, dtype=float), np.asarray(event, dtype=bool)
    if not event.any():  # no event: the curve stays at 1 and has no band
        return np.array([0.0, time.max()]), np.ones(2), np.ones(2), np.ones(2)
    t, s, ci = kaplan_meier_estimator(event, time, conf_type="log-log")
    ci = np.nan_to_num(ci, nan=0.0)
    return (np.r_[0.0, t], np.r_[1.0, s], np.r_[1.0, ci[0]], np.r_[1.0, ci[1]])


def kaplan_meier_groups(time, event, group, *, time_unit: str = "days", order=("low", "high"),
                        labels: Mapping[str, str] | None = None, horizons=()) -> bytes:
    """Kaplan–Meier curves (95% log-log band) of each risk group with the number at risk below the axis.

    ``group`` holds each case's group (``"low"``/``"high"``); groups are drawn in ``order`` with
    :data:`RISK_COLOURS` and named by ``labels``. The table under the plot counts, at each tick, the cases of each
    group still followed (time ≥ tick), the usual number at risk. Dotted lines mark ``horizons``; ticks on the
    curves are censored cases.
    """
    time, event = np.asarray(time, dtype=float), np.asarray(event, dtype=bool)
    group = np.asarray(group, dtype=object)
    present = [g for g in order if (group == g).any()]
    rows = len(present)
    fig = Figure(figsize=(7.2, 4.4 + 0.28 * rows))
    bottom = (0.55 + 0.28 * rows + 0.3) / (4.4 + 0.28 * rows)
    ax = fig.add_axes((0.14, bottom, 0.82, 0.93 - bottom))
    for g in present:
        sel = group == g
        t, s, lo, hi = kaplan_meier(time[sel], event[sel])
        colour = RISK_COLOURS.get(str(g), CURVE)
        ax.step(t, s, where="post", color=colour, lw=1.8,
                label=f"{(labels or {}).get(g, g)} (n={int(sel.sum())}, {int(event[sel].sum())} events)")
        ax.fill_between(t, lo, hi, step="post", color=colour, alpha=0.15, lw=0)
        censored = time[sel & ~event]
        if censored.size:  # censoring marks at the curve's height
            at = s[np.clip(np.searchsorted(t, censored, side="right") - 1, 0, len(s) - 1)]
            ax.plot(censored, at, "|", color=colour, ms=7, mew=1.2)
    for h in horizons:
        ax.axvline(float(h), color=GREY, lw=0.8, ls=":")
    ticks = _time_ticks(ax, float(time.max()) if len(time) else 1.0)
    ax.set_ylim(0, 1.03)
    ax.set_ylabel("survival probability", fontsize=FONT)
    ax.set_xlabel(f"time ({time_unit})", fontsize=FONT)
    ax.tick_params(labelsize=FONT_SMALL)
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=2, fontsize=FONT_SMALL, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    # number at risk: one row per group under the axis, aligned with the time ticks
    height = 4.4 + 0.28 * rows
    fig.text(0.01, (0.28 * rows + 0.3) / height, "number at risk", fontsize=FONT_SMALL, fontweight="bold")
    to_fig = fig.transFigure.inverted()
    for k, g in enumerate(present):
        y = (0.28 * (rows - k) - 0.05) / height
        sel = group == g
        fig.text(0.01, y, str((labels or {}).get(g, g)), color=RISK_COLOURS.get(str(g), CURVE), fontsize=FONT_SMALL)
        for tick in ticks:
            x = to_fig.transform(ax.transData.transform((tick, 0)))[0]
            fig.text(x, y, str(int((time[sel] >= tick).sum())), ha="center", fontsize=FONT_SMALL)
    return _png(fig)


def survival_curve(times, surv, km_time, km_surv, km_low=None, km_high=None, *, time_unit: str = "days",
                   horizons=(), cv_points: Mapping[float, tuple[float, float, float]] | None = None,
                   curve_label: str = "this patient (final model)", km_label: str = "cohort (Kaplan–Meier)") -> bytes:
    """A patient's predicted survival curve (solid, :data:`CURVE`) over the cohort's Kaplan–Meier curve (grey,
    with its 95% band).

    ``cv_points`` maps a horizon to (mean, low, high) cross-validated survival, drawn as dots with range bars.
    """
    fig = Figure(figsize=(6.4, 3.9))
    ax = fig.add_subplot()
    km_time, km_surv = np.asarray(km_time, dtype=float), np.asarray(km_surv, dtype=float)
    if km_low is not None and km_high is not None:
        ax.fill_between(km_time, km_low, km_high, step="post", color=GREY, alpha=0.18, lw=0)
    ax.step(km_time, km_surv, where="post", color=GREY, lw=1.6, label=km_label)
    ax.step(np.asarray(times, dtype=float), np.asarray(surv, dtype=float), where="post", color=CURVE, lw=2.0,
            label=curve_label)
    for h in horizons:
        ax.axvline(float(h), color=GREY, lw=0.8, ls=":")
    if cv_points:
        hs = np.array(list(cv_points), dtype=float)
        mean, lo, hi = (np.array([cv_points[h][i] for h in cv_points], dtype=float) for i in range(3))
        ax.errorbar(hs, mean, yerr=np.clip([mean - lo, hi - mean], 0, None), fmt="o", color="black", ms=5,
                    capsize=3, lw=1.0, label="cross-validated, at the horizons")
    _time_ticks(ax, float(max(np.max(km_time, initial=0), np.max(np.asarray(times, dtype=float), initial=0))))
    ax.set_ylim(0, 1.03)
    ax.set_xlabel(f"time ({time_unit})", fontsize=FONT)
    ax.set_ylabel("survival probability", fontsize=FONT)
    ax.tick_params(labelsize=FONT_SMALL)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=FONT_SMALL, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def td_auc(horizons, curves: Mapping[str, list[float]], *, highlight: str | None = None,
           time_unit: str = "days") -> bytes:
    """Time-dependent (cumulative/dynamic) AUC of each model at each horizon; ``highlight`` is drawn bold, the
    others thin and grey. The dashed line at 0.5 is chance."""
    fig = Figure(figsize=(5.0, 3.6))
    ax = fig.add_subplot()
    hs = np.asarray(horizons, dtype=float)
    for name, values in sorted(curves.items(), key=lambda kv: kv[0] == highlight):
        values = np.asarray(values, dtype=float)  # a horizon without a value (NaN) leaves a gap
        main = name == highlight or len(curves) == 1
        ax.plot(hs, values, "o-", color=CURVE if main else "#aab7b8", lw=2.0 if main else 1.0, ms=5 if main else 3,
                label=_short(name, 28), zorder=3 if main else 2)
    ax.axhline(0.5, color=GREY, lw=0.8, ls="--")
    ax.set_ylim(0.3, 1.0)
    ax.set_xticks(hs, [_plain(h) for h in hs])
    ax.set_xlabel(f"horizon ({time_unit})", fontsize=FONT)
    ax.set_ylabel("time-dependent AUC", fontsize=FONT)
    ax.tick_params(labelsize=FONT_SMALL)
    ax.legend(fontsize=FONT_SMALL, frameon=False, loc="lower right")
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def survival_calibration(panels: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> bytes:
    """Predicted against observed (Kaplan–Meier) survival per risk group, one panel per horizon.

    ``panels`` holds (title, predicted, observed, observed low, observed high); the dashed diagonal is perfect
    calibration. Points are :data:`CURVE`: a calibration group shows no direction.
    """
    n = max(1, len(panels))
    fig = Figure(figsize=(2.9 * n + 0.6, 3.3))
    for k, (title, pred, obs, lo, hi) in enumerate(panels):
        ax = fig.add_subplot(1, n, k + 1)
        pred, obs = np.asarray(pred, dtype=float), np.asarray(obs, dtype=float)
        lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
        ax.plot([0, 1], [0, 1], color=GREY, lw=0.8, ls="--")
        yerr = np.clip(np.nan_to_num([obs - lo, hi - obs]), 0, None)
        ax.errorbar(pred, obs, yerr=yerr, fmt="o-", color=CURVE, ms=4, lw=1.2, capsize=2)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_title(title, fontsize=FONT)
        ax.set_xlabel("predicted survival", fontsize=FONT_SMALL)
        if k == 0:
            ax.set_ylabel("observed (Kaplan–Meier)", fontsize=FONT_SMALL)
        ax.tick_params(labelsize=FONT_SMALL)
    fig.subplots_adjust(wspace=0.35)
    return _png(fig)
