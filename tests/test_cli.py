"""The command line as a new user meets it: help texts, exit codes, readable errors."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from radpipe.cli import app

runner = CliRunner()
COMMANDS = ["extract", "train", "explain", "run", "predict", "evaluate", "demo", "datasets", "validate", "init", "segment"]


def test_top_level_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help_with_its_options(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output and len(result.output) > 300


def test_misspelt_recipe_key_exits_2_naming_file_and_key(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("name: x\ndataset: busi\nmodel:\n  modles: [svm]\n")
    result = runner.invoke(app, ["run", str(recipe), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "bad.yaml" in result.output and "model.modles" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()  # reported before any work started


def test_unknown_dataset_exits_2(tmp_path):
    result = runner.invoke(app, ["extract", "no_such_dataset", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "no_such_dataset" in result.output and "known:" in result.output


def test_tampered_model_is_refused_before_unpickling(tmp_path):
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from radpipe.model.persist import save_model

    model = LogisticRegression().fit(np.array([[0.0], [1.0], [2.0], [3.0]]), [0, 0, 1, 1])
    save_model(model, {"model_name": "logreg", "classes": ["a", "b"], "positive_class": "b",
                       "feature_names": ["f"]}, tmp_path / "m")
    with open(tmp_path / "m" / "model.joblib", "ab") as handle:
        handle.write(b"tampered")
    (tmp_path / "f.csv").write_text("case_id,f\nx,1.0\n")
    result = runner.invoke(app, ["predict", str(tmp_path / "m"), str(tmp_path / "f.csv"), "--out", str(tmp_path / "p.csv")])
    assert result.exit_code == 2
    assert "sha256" in result.output and "--trust" in result.output


def test_run_on_an_unlabelled_dataset_stops_before_extracting(tmp_path, data_dir):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: x\ndataset: pyradiomics_samples\n")
    result = runner.invoke(app, ["run", str(recipe), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "no labels" in result.output
    assert not (tmp_path / "out").exists()


def test_params_file_on_the_command_line_overrides_the_recipe(tmp_path):
    from tests.synth import make_cohort

    cohort = make_cohort(tmp_path / "cohort", n=2, labels=False)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("name: r\ndataset: cohort\nextract:\n  setting: {binWidth: 25}\n"
                      "  featureClass: {firstorder: [Mean]}\n")
    params = tmp_path / "lab.yaml"
    params.write_text("featureClass:\n  firstorder: [Mean]\nimageType:\n  Square: {}\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["extract", str(cohort), "--recipe", str(recipe), "--params", str(params),
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    header = (out / "features.csv").read_text().splitlines()[0]
    assert "square_firstorder_Mean" in header  # the file's image type, not only the recipe's Original


def test_plain_config_import_leaves_simpleitk_and_pyradiomics_unloaded():
    """`import radpipe.config` (every command, `radpipe validate`) must not pay for SimpleITK or pyradiomics."""
    import subprocess
    import sys

    code = ("import sys, radpipe.config, radpipe.extract.settings; "
            "print(sorted(m for m in ('SimpleITK', 'radiomics', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_extract_settings_and_features_import_in_either_order():
    """No import cycle between radpipe.extract.settings and radpipe.extract.features."""
    import subprocess
    import sys

    for first, second in (("settings", "features"), ("features", "settings")):
        code = f"import radpipe.extract.{first}, radpipe.extract.{second}"
        assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
    from radpipe.extract import features, settings

    assert features.quiet_pyradiomics is settings.quiet_pyradiomics
