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


def test_short_and_numeric_case_ids_are_replaced_as_whole_tokens_only(tmp_path):
    """With PatientID "1" a plain text replace turned the UID 1.2.840... into P...2.840...; only the id itself goes."""
    from radpipe.pseudonym import Pseudonymiser

    p = Pseudonymiser(tmp_path / "key.json")
    uid = "1.2.840.113619.2.55.3.604688119.969.1268071029.321"
    frame = pd.DataFrame({
        "case_id": ["1", "PAT1"],
        "conversions": [f"DICOM series {uid}: 21 slices, 1.5 mm; rescale slope 1; case 1 (1_image.nrrd, 1.nii.gz)",
                        f"series {uid} of PAT1; PAT10 and MRN-PAT1 are other patients; PAT1.dcm, PAT1_20240110"],
    })
    out = p.table(frame, text_columns=("conversions",))
    # a bare "1" (slope 1) is the id as a token: text cannot tell it from a count, so it is replaced too
    one, pat1 = p("1"), p("PAT1")
    assert out["case_id"].tolist() == [one, pat1]
    assert out.loc[0, "conversions"] == (f"DICOM series {uid}: 21 slices, 1.5 mm; rescale slope {one}; "
                                         f"case {one} ({one}_image.nrrd, {one}.nii.gz)")
    assert out.loc[1, "conversions"] == (f"series {uid} of {pat1}; PAT10 and MRN-PAT1 are other patients; "
                                         f"{pat1}.dcm, {pat1}_20240110")
    # the same rule for text naming several cases (e.g. a manifest note)
    assert p.text("11 cases; example 1_image.nii.gz; 1.5", ["1", "PAT1"]) == f"11 cases; example {one}_image.nii.gz; 1.5"
