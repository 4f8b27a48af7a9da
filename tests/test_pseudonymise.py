"""--pseudonymise: no case id or file name reaches an output; pseudonyms are stable with the same key."""

from __future__ import annotations

import json

import pandas as pd
from typer.testing import CliRunner

from radpipe.cli import app
from tests.synth import make_cohort

runner = CliRunner()


def test_pseudonymised_outputs_carry_no_case_id(tmp_path):
    cohort = make_cohort(tmp_path / "cohort", n=3)
    key = tmp_path / "private" / "key.json"
    key.parent.mkdir()
    result = runner.invoke(app, ["extract", str(cohort), "--out", str(tmp_path / "out"), "--pseudonymise", str(key)])
    assert result.exit_code == 0, result.output
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            text = path.read_bytes()
            for case_id in ("case00", "case01", "case02"):
                assert case_id.encode() not in text, f"{case_id} leaked into {path.name}"
    mapping = json.loads(key.read_text())["ids"]
    features = pd.read_csv(tmp_path / "out" / "features.csv")
    assert sorted(features["case_id"]) == sorted(mapping.values())
    assert all(p.startswith("P") and len(p) == 13 for p in mapping.values())

    again = runner.invoke(app, ["extract", str(cohort), "--out", str(tmp_path / "out2"), "--pseudonymise", str(key)])
    assert again.exit_code == 0
    assert (tmp_path / "out2" / "features.csv").read_bytes() == (tmp_path / "out" / "features.csv").read_bytes()
