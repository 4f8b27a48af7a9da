"""`radpipe demo` (what `make demo` runs): all three stages on the synthetic cohort, labelled as synthetic."""

from __future__ import annotations

import json

import pandas as pd
from typer.testing import CliRunner

from radpipe.cli import app


def test_demo_writes_cohort_report_and_one_page_per_case(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--cases", "24", "--jobs", "2"])
    assert result.exit_code == 0, result.output
    explain = tmp_path / "explain"
    pages = sorted(p.stem for p in (explain / "patients").glob("*.html"))
    assert pages == [f"demo_{i:03d}" for i in range(1, 25)]
    cohort = (explain / "cohort.html").read_text()
    assert "SYNTHETIC DATA" in cohort and "SYNTHETIC DATA" in (explain / "patients" / "demo_001.html").read_text()
    assert "src=\"http" not in cohort and "data:image/png;base64," in cohort
    assert (tmp_path / "synthetic_cohort" / "README.txt").read_text().startswith("SYNTHETIC DATA")

    # the classes differ by construction, so cross-validation must find it (and not perfectly for all)
    metrics = pd.read_csv(tmp_path / "models" / "metrics.csv").query("cohort == 'cv'")
    assert metrics["auc"].max() >= 0.8
    shap = pd.read_csv(explain / "shap_values.csv").set_index("case_id")
    summary = json.loads((explain / "summary.json").read_text())
    assert len(shap) == 24 and summary["n_patients"] == 24
    assert summary["additivity_max_error"] < 1e-6  # base value + contributions = predicted probability
