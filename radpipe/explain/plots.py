"""Matplotlib figures of the explain reports, each returned as PNG bytes.

Figures are drawn on ``matplotlib.figure.Figure`` directly (no pyplot), so they need no backend, keep
no global state and can be drawn in worker processes. Red pushes towards the positive class, blue away.
"""

from __future__ import annotations

import io
import textwrap

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

UP = "#c0392b"      # towards the positive class
DOWN = "#2471a3"    # towards the negative class
GREY = "#7f8c8d"
DPI = 110


def _png(fig: Figure, tight: bool = True) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight" if tight else None, facecolor="white")
    return buf.getvalue()


def _short(name: str, width: int = 42) -> str:
    name = str(name)
    return name if len(name) <= width else name[: width - 1] + "…"


def _fmt(v) -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return str(v)
    if np.isnan(v):
        return "missing"
    if v != 0 and (abs(v) >= 1e4 or abs(v) < 1e-2):
        return f"{v:.2e}"
    return f"{v:.3g}"


def waterfall(contrib: pd.Series, values: pd.Series, base: float, prob: float, *, top: int = 10,
              threshold: float | None = None, positive: str = "positive") -> bytes:
    """SHAP waterfall: from the base value, the ``top`` largest contributions, the rest, to the probability."""
    order = contrib.abs().sort_values(ascending=False, kind="stable").index
    shown = list(order[:top])
    rest = float(contrib.drop(shown).sum()) if len(order) > top else None
    labels, deltas = [], []
    if rest is not None:
        labels.append(f"{len(order) - top} other features")
        deltas.append(rest)
    for name in reversed(shown):
        labels.append(f"{_short(name)} = {_fmt(values.get(name, np.nan))}")
        deltas.append(float(contrib[name]))
    n = len(deltas)
    fig = Figure(figsize=(7.6, 0.42 * n + 1.3))
    ax = fig.add_subplot()
    # bars are drawn bottom (rest) to top (largest), accumulating from the base value
    left = base
    for i, d in enumerate(deltas):
        ax.barh(i, d, left=left, color=UP if d >= 0 else DOWN, height=0.65)
        ax.text(left + d + (0.004 if d >= 0 else -0.004), i, f"{d:+.3f}", va="center",
                ha="left" if d >= 0 else "right", fontsize=8)
        left += d
    ax.axvline(base, color=GREY, lw=0.8, ls="--")
    ax.axvline(prob, color="black", lw=1.0)
    if threshold is not None:
        ax.axvline(threshold, color="#8e44ad", lw=0.8, ls=":")
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set_xlabel(f"predicted probability of {positive}")
    lo = min(base, prob, *(np.cumsum([base] + deltas)))
    hi = max(base, prob, *(np.cumsum([base] + deltas)))
    pad = max(0.06, 0.15 * (hi - lo))
    ax.set_xlim(max(-0.02, lo - pad), min(1.02, hi + pad))
    title = f"base {base:.3f} → patient {prob:.3f}"
    if threshold is not None:
        title += f"   (threshold {threshold:.3f}, dotted)"
    ax.set_title(title, fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def signed_bars(series: pd.Series, *, xlabel: str, title: str = "", width: float = 7.6) -> bytes:
    """Horizontal bars, largest |value| on top, red positive and blue negative."""
    s = series.iloc[::-1]
    fig = Figure(figsize=(width, 0.36 * len(s) + 1.1))
    ax = fig.add_subplot()
    ax.barh(range(len(s)), s.to_numpy(dtype=float), color=[UP if v >= 0 else DOWN for v in s], height=0.65)
    ax.set_yticks(range(len(s)), [_short(textwrap.shorten(str(i), 70), 60) for i in s.index], fontsize=8)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title, fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def grouped_bars(family: pd.Series, image_filter: pd.Series, *, xlabel: str, color: str | None = None) -> bytes:
    """Two panels of signed bars: contributions summed per feature family and per image filter."""
    fig = Figure(figsize=(8.4, 0.3 * max(len(family), len(image_filter)) + 1.6))
    for k, (series, title) in enumerate(((family, "by feature family"), (image_filter, "by image filter"))):
        ax = fig.add_subplot(1, 2, k + 1)
        s = series.sort_values(key=np.abs, kind="stable")
        ax.barh(range(len(s)), s.to_numpy(dtype=float), height=0.6,
                color=color or [UP if v >= 0 else DOWN for v in s])
        ax.set_yticks(range(len(s)), list(s.index), fontsize=8)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.spines[["top", "right"]].set_visible(False)
    fig.subplots_adjust(wspace=0.6)
    return _png(fig)


def magnitude_bars(series: pd.Series, *, xlabel: str, title: str = "", color: str = "#34495e") -> bytes:
    """Horizontal bars of non-negative magnitudes, largest on top."""
    s = series.sort_values(kind="stable")
    fig = Figure(figsize=(7.6, 0.34 * len(s) + 1.1))
    ax = fig.add_subplot()
    ax.barh(range(len(s)), s.to_numpy(dtype=float), color=color, height=0.65)
    ax.set_yticks(range(len(s)), [_short(i, 60) for i in s.index], fontsize=8)
    ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title, fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def lesion_slice(image: np.ndarray, mask: np.ndarray, spacing: tuple[float, float] = (1.0, 1.0),
                 height: int = 380) -> bytes:
    """The image slice with the mask outline in yellow: whole on the left, zoomed on the lesion on the right,
    as JPEG bytes.

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
        ax.fill_between(grid, lo, hi, color=UP, alpha=0.18, lw=0, label="95% bootstrap band")
        stats["auc_ci_low"], stats["auc_ci_high"] = (float(v) for v in np.percentile(aucs, [2.5, 97.5]))
    ax.plot(fpr, tpr, color=UP, lw=1.8, label=f"AUC {auc:.3f}")
    if threshold is not None:
        yhat = p >= threshold
        sens = (yhat & (y == 1)).sum() / max(1, (y == 1).sum())
        spec = (~yhat & (y == 0)).sum() / max(1, (y == 0).sum())
        ax.plot([1 - spec], [sens], "o", color="black", ms=5, label=f"threshold {threshold:.2f}")
    _roc_axes(ax, legend_size=8)
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
    ax.errorbar(xs, ys, yerr=[ys - np.array(lo), np.array(hi) - ys], fmt="o-", color=DOWN, ms=4, lw=1.2,
                capsize=2, label="observed (95% CI)")
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed share of positives")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.legend(loc="upper left", fontsize=8, frameon=False)
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
    ax.set_xticks([0, 1], [f"predicted\n{_short(c, 18)}" for c in classes], fontsize=8)
    ax.set_yticks([0, 1], [f"true\n{_short(c, 18)}" for c in classes], fontsize=8)
    ax.set_title(f"threshold {threshold:.3f}", fontsize=9)
    return _png(fig), {"tn": int(m[0, 0]), "fp": int(m[0, 1]), "fn": int(m[1, 0]), "tp": int(m[1, 1])}


def beeswarm(shap: pd.DataFrame, values: pd.DataFrame, *, top: int = 15, seed: int = 42) -> bytes:
    """SHAP value of each case for the ``top`` features; colour = the case's feature value (rank in cohort)."""
    order = shap.abs().mean().sort_values(ascending=False, kind="stable").index[:top]
    rng = np.random.default_rng(seed)
    fig = Figure(figsize=(7.8, 0.38 * len(order) + 1.4))
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
        sc = ax.scatter(s, y, c=np.nan_to_num(colour, nan=0.5), cmap="coolwarm", vmin=0, vmax=1, s=9, lw=0)
    ax.axvline(0, color=GREY, lw=0.8)
    ax.set_yticks(range(len(order)), [_short(n, 48) for n in reversed(list(order))], fontsize=8)
    ax.set_xlabel("SHAP value (change in predicted probability)")
    ax.spines[["top", "right"]].set_visible(False)
    if sc is not None:
        cb = fig.colorbar(sc, ax=ax, fraction=0.03, pad=0.02, ticks=[0, 1])
        cb.ax.set_yticklabels(["low", "high"], fontsize=8)
        cb.set_label("feature value", fontsize=8)
    return _png(fig)


def _dependence_axes(ax, name: str) -> None:
    """Zero line, labels and light frame shared by the binary and per-class dependence plots."""
    ax.axhline(0, color=GREY, lw=0.8)
    ax.set_xlabel(_short(name, 50), fontsize=8)
    ax.set_ylabel("SHAP value", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.spines[["top", "right"]].set_visible(False)


def dependence(name: str, x: pd.Series, s: pd.Series, labels: pd.Series | None = None) -> bytes:
    """SHAP value of one feature against its value; points coloured by true class when known."""
    fig = Figure(figsize=(4.2, 3.4))
    ax = fig.add_subplot()
    if labels is not None and labels.notna().any():
        for (lab, grp), colour in zip(labels.groupby(labels), (DOWN, UP, "#27ae60", "#8e44ad"), strict=False):
            idx = grp.index
            ax.scatter(x[idx], s[idx], s=10, lw=0, color=colour, alpha=0.8, label=str(lab))
        ax.legend(fontsize=7, frameon=False, title="true class", title_fontsize=7)
    else:
        ax.scatter(x, s, s=10, lw=0, color="#34495e", alpha=0.8)
    _dependence_axes(ax, name)
    return _png(fig)


def heatmap(matrix: pd.DataFrame, *, title: str, vmin: float = -1, vmax: float = 1) -> bytes:
    """Annotated square matrix (fold x fold rank correlations)."""
    n = len(matrix)
    size = min(8.0, 1.6 + 0.45 * n)
    fig = Figure(figsize=(size + 0.8, size))
    ax = fig.add_subplot()
    im = ax.imshow(matrix.to_numpy(dtype=float), cmap="viridis", vmin=vmin, vmax=vmax)
    if n <= 12:
        for i in range(n):
            for j in range(n):
                v = matrix.iat[i, j]
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if v < (vmin + vmax) / 2 else "black")
    ax.set_xticks(range(n), list(matrix.columns), rotation=90, fontsize=7)
    ax.set_yticks(range(n), list(matrix.index), fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return _png(fig)


# ---------------------------------------------------------------- multi-class figures

CLASS_COLOURS = ("#2471a3", "#c0392b", "#27ae60", "#8e44ad", "#d35400", "#16a085", "#7f8c8d", "#b7950b",
                 "#2c3e50", "#e84393")


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
    _roc_axes(ax, legend_size=7)
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
                    fontsize=9 if k <= 4 else 7)
    ax.set_xticks(range(k), [f"predicted\n{_short(c, 14)}" for c in classes], fontsize=7)
    ax.set_yticks(range(k), [f"true\n{_short(c, 14)}" for c in classes], fontsize=7)
    ax.set_title("most probable class (share of row)", fontsize=9)
    return _png(fig), m.tolist()


def class_magnitude_bars(frame: pd.DataFrame, *, xlabel: str) -> bytes:
    """Stacked horizontal bars: rows are features (largest total on top), columns are classes."""
    f = frame.loc[frame.sum(axis=1).sort_values(kind="stable").index]
    fig = Figure(figsize=(7.6, 0.34 * len(f) + 1.4))
    ax = fig.add_subplot()
    left = np.zeros(len(f))
    for k, name in enumerate(f.columns):
        ax.barh(range(len(f)), f[name].to_numpy(dtype=float), left=left, color=_class_colour(k), height=0.65,
                label=str(name))
        left += f[name].to_numpy(dtype=float)
    ax.set_yticks(range(len(f)), [_short(i, 60) for i in f.index], fontsize=8)
    ax.set_xlabel(xlabel)
    ax.legend(fontsize=7, frameon=False, title="class", title_fontsize=7, loc="lower right")
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def dependence_by_class(name: str, x: pd.Series, shap_by_class: dict[str, pd.Series]) -> bytes:
    """SHAP value of one feature towards each class (one colour per class) against the feature's value."""
    fig = Figure(figsize=(4.2, 3.4))
    ax = fig.add_subplot()
    for k, (label, s) in enumerate(shap_by_class.items()):
        ax.scatter(x, s, s=9, lw=0, color=_class_colour(k), alpha=0.75, label=str(label))
    ax.legend(fontsize=7, frameon=False, title="towards class", title_fontsize=7)
    _dependence_axes(ax, name)
    return _png(fig)
