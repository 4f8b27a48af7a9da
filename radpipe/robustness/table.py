"""The robustness table's contract: its file name and the columns a reader needs, defined once, by the writer.

Light on purpose (pandas only): the model stage reads ``robustness.csv`` through :func:`read_robustness`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from radpipe.errors import ConfigError

ROBUSTNESS_FILE = "robustness.csv"
READER_ICC_FILE = "reader_icc.csv"
REQUIRED_COLUMNS = ("feature", "robust", "ci_low", "icc_type")


def read_robustness(path: str | Path, *, key: str = "model.robust_features") -> pd.DataFrame:
    """``robustness.csv`` (or a folder holding one) as written by ``radpipe robustness``.

    A missing file, or one without the ``feature``, ``robust``, ``ci_low`` and ``icc_type`` columns, is a
    ConfigError naming ``key`` and what was expected.

    Examples
    --------
    >>> import pandas as pd, tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> pd.DataFrame({"feature": ["original_shape_Sphericity"], "icc_type": ["ICC(1,1)"], "icc": [0.97],
    ...               "ci_low": [0.95], "robust": [True]}).to_csv(folder / "robustness.csv", index=False)
    >>> read_robustness(folder)["robust"].tolist()
    [True]
    """
    path = Path(path)
    if path.is_dir():
        path = path / ROBUSTNESS_FILE
    if not path.is_file():
        raise ConfigError(f"robustness table not found: {path} (write it with `radpipe robustness`)", key=key)
    try:
        table = pd.read_csv(path)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"{path} could not be read as a CSV table: {exc}", key=key) from None
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise ConfigError(f"{path} has no column(s) {', '.join(missing)}: expected a robustness.csv written by "
                          f"`radpipe robustness` ({', '.join(REQUIRED_COLUMNS)}, ...)", key=key)
    if table["robust"].dtype != bool:
        values = table["robust"].astype(str).str.strip().str.lower()
        if not values.isin(["true", "false"]).all():
            raise ConfigError(f"{path}: column robust must hold True/False", key=key)
        table["robust"] = values == "true"
    return table
