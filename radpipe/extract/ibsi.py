"""pyradiomics feature names → IBSI feature codes, for the codebook.

The mapping lives in ``data/ibsi_codes.csv`` (columns ``feature_class, feature, ibsi_code, ibsi_name,
ibsi_note``) so it can be reviewed as a table. The note says where pyradiomics' definition differs
from IBSI's (e.g. kurtosis vs excess kurtosis) or why a feature has no code.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pandas as pd

MAPPING_FILE = Path(__file__).with_name("data") / "ibsi_codes.csv"


@cache
def ibsi_table() -> pd.DataFrame:
    """The mapping indexed by (feature_class, feature)."""
    table = pd.read_csv(MAPPING_FILE, dtype=str, keep_default_na=False)
    return table.set_index(["feature_class", "feature"])


def ibsi_codes() -> dict[tuple[str, str], str]:
    """{(feature_class, feature): IBSI code} for the features that have one."""
    return {key: code for key, code in ibsi_table()["ibsi_code"].items() if code}
