"""``robustness.html``: the ICC distribution by feature family and filter, drawn from ``robustness.csv`` only."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from radpipe._io import atomic_write_text
from radpipe.robustness.table import READER_ICC_FILE, ROBUSTNESS_FILE


def share_table(table: pd.DataFrame) -> pd.DataFrame:
    """Robust features per image type and family: ``n_robust``, ``n_features`` and ``share_robust``.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"image_type": ["original"] * 3, "family": ["shape", "shape", "glcm"],
    ...                   "robust": [True, False, True]})
    >>> share_table(t)[["family", "n_robust", "n_features"]].values.tolist()
    [['glcm', 1, 1], ['shape', 1, 2]]
    """
    grouped = table.groupby(["image_type", "family"])["robust"]
    shares = pd.DataFrame({"n_robust": grouped.sum().astype(int), "n_features": grouped.size()})
    shares["share_robust"] = shares["n_robust"] / shares["n_features"]
    return shares.reset_index()


def icc_figure(table: pd.DataFrame, threshold: float, icc_type: str) -> str:
    """Box plots of the ICC per family, one panel per image type, as inline SVG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image_types = list(dict.fromkeys(table["image_type"]))
    lowest = min(threshold, float(table["icc"].min(skipna=True))) if table["icc"].notna().any() else threshold
    fig, axes = plt.subplots(1, len(image_types), figsize=(3.2 * len(image_types) + 1, 3.6), sharey=True,
                             squeeze=False)
    for ax, image_type in zip(axes[0], image_types, strict=True):
        part = table[table["image_type"] == image_type]
        families = list(dict.fromkeys(part["family"]))  # shape only exists on the original image
        data = [part.loc[part["family"] == family, "icc"].dropna().clip(lower=-1).to_numpy() for family in families]
        ax.boxplot([d if len(d) else [float("nan")] for d in data], tick_labels=families, showfliers=True,
                   flierprops={"markersize": 2})
        ax.axhline(threshold, color="#D55E00", linestyle="--", linewidth=1)
        ax.set_title(image_type, fontsize=10)
        ax.tick_params(axis="x", labelrotation=60, labelsize=8)
        ax.set_ylim(max(lowest, -1.0) - 0.05, 1.02)
    axes[0][0].set_ylabel(icc_type)
    fig.tight_layout()
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def write_report(result, robustness, cohort_name: str) -> Path:
    """Render ``robustness.html`` into the result's folder from the tables it wrote."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("radpipe.robustness", "templates"), autoescape=select_autoescape())
    table = result.robustness
    grid = (f"rotation {robustness.rotation} degrees, translation {robustness.translation} voxels, "
            f"{robustness.noise_repeats} noise repeat(s), volume change {robustness.volume}, "
            f"{robustness.contour_repeats} contour repeat(s)")
    icc_type = table["icc_type"].iloc[0] if table is not None and len(table) else robustness.icc
    html = env.get_template("robustness.html").render(
        title=f"Feature robustness: {cohort_name}",
        subtitle=f"{len(result.versions)} versions per case; computed {result.computed}, from cache {result.cached}",
        n_cases=int(table["n_cases"].iloc[0]) if table is not None and len(table) else 0,
        n_versions=len(result.versions), grid=grid, icc_type=icc_type, threshold=robustness.threshold,
        figure=icc_figure(table, robustness.threshold, icc_type) if table is not None and len(table) else None,
        shares=share_table(table).to_dict("records") if table is not None else [],
        reader_shares=share_table(result.reader_icc).to_dict("records") if result.reader_icc is not None else [],
        table_file=ROBUSTNESS_FILE, reader_file=READER_ICC_FILE, n_failed=result.n_failed)
    path = Path(result.out_dir) / "robustness.html"
    atomic_write_text(path, html)
    return path
