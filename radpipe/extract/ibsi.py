"""pyradiomics feature names → IBSI feature codes, for the codebook.

The mapping lives in ``data/ibsi_codes.csv`` (columns ``feature_class, feature, ibsi_code, ibsi_name, ibsi_note``; the note says where
pyradiomics' definition differs from IBSI's or why a feature has no code)
so it can be reviewed as a table.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pandas as pd

MAPPING_FILE = Path(__file__).with_name("data") / "ibsi_codes.csv"


@cache
def ibsi_codes() -> dict[tuple[str, str], str]:
    if not MAPPING_FILE.exists():
        return {}
    table = pd.read_csv(MAPPING_FILE, dtype=str, keep_default_na=False)
    return {(row.feature_class, row.feature): row.ibsi_code for row in table.itertuples() if row.ibsi_code}
