"""CLEAR and METRICS checklists filled in from a run: every filled row points at something the run wrote."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from radpipe.config import Recipe
from radpipe.demo import make_demo_cohort
from radpipe.explain.checklists import (
    CHECKLIST_COLUMNS,
    RULES,
    STATUSES,
    checklist_items,
    pointer_exists,
    write_checklists,
)
from radpipe.pipeline import run_recipe


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A whole `radpipe run` (extract, train, explain) on a small synthetic cohort."""
    work = tmp_path_factory.mktemp("run")
    cohort = make_demo_cohort(work / "cohort", n_cases=16)
    recipe = Recipe.model_validate({
        "name": "small", "dataset": str(cohort),
        "extract": {"featureClass": {"shape": [], "firstorder": []}},
        "model": {"models": ["logreg"], "positive_class": "aggressive", "outer_folds": 4, "bootstrap": 20},
        "explain": {"lime_samples": 50, "max_patients": 2, "images": False, "bootstrap": 0, "dependence_plots": 0},
    })
    run_recipe(recipe, work, work / "out")
    return work / "out"


def test_item_definitions_are_complete_and_every_rule_exists():
    clear, metrics = checklist_items("clear"), checklist_items("metrics")
    assert clear["item"].tolist() == list(range(1, 59)) and metrics["item"].tolist() == list(range(1, 31))
    assert set(clear["rule"]) | set(metrics["rule"]) <= set(RULES)
    # items radpipe cannot know stay with the author: ethics (CLEAR 8), acquisition protocol (CLEAR 16, METRICS 6)
    assert clear.set_index("item").loc[[8, 16], "rule"].tolist() == ["author", "author"]
    assert metrics.set_index("item").loc[6, "rule"] == "author"


def test_a_run_writes_both_checklists_and_every_filled_pointer_resolves(run_dir):
    explain = run_dir / "explain"
    for name, n in (("clear", 58), ("metrics", 30)):
        table = pd.read_csv(explain / f"checklist_{name}.csv", keep_default_na=False)
        assert list(table.columns) == CHECKLIST_COLUMNS and len(table) == n
        assert set(table["status"]) <= set(STATUSES)
        answered = table[table["status"].isin(["filled", "partly"])]
        for row in answered.itertuples():
            assert row.pointer, f"{name} item {row.item} is {row.status} without a pointer"
            assert pointer_exists(run_dir, row.pointer), f"{name} item {row.item}: {row.pointer} does not resolve"
        markdown = (explain / f"checklist_{name}.md").read_text()
        assert "https://doi.org/10.1186/s13244-023-01" in markdown and markdown.count("\n| ") == n + 1
    clear = pd.read_csv(explain / "checklist_clear.csv", keep_default_na=False).set_index("item")
    # the values are this run's: 4-fold CV, shape + first-order classes, logreg, the study page's flow of cases
    assert "4 folds" in clear.loc[15, "value"] and clear.loc[15, "status"] == "filled"
    assert clear.loc[26, "value"] == "shape, firstorder"
    assert clear.loc[34, "value"] == "logreg"
    assert clear.loc[45, "pointer"] == "explain/study.html"
    assert clear.loc[8, "status"] == "needs the author" and clear.loc[8, "pointer"] == ""
    codebook = pd.read_csv(run_dir / "features" / "codebook.csv")
    assert clear.loc[27, "value"].startswith(f"{len(codebook)} features")
    metrics = pd.read_csv(explain / "checklist_metrics.csv", keep_default_na=False).set_index("item")
    assert metrics.loc[22, "status"] == "filled"  # calibration: calibration_summary.csv was written by train
    assert metrics.loc[17, "status"] == "not applicable"


def test_pointer_checks_json_keys_and_csv_columns(run_dir):
    assert pointer_exists(run_dir, "models/model_card.json#cv.outer")
    assert not pointer_exists(run_dir, "models/model_card.json#cv.nonsense")
    assert pointer_exists(run_dir, "models/metrics.csv#auc_ci_low")
    assert not pointer_exists(run_dir, "models/metrics.csv#not_a_column")
    assert not pointer_exists(run_dir, "models/missing.csv")


def test_without_the_features_folder_the_extraction_items_go_to_the_author(run_dir, tmp_path):
    tables = write_checklists(run_dir / "models", tmp_path / "explain")
    clear = tables["clear"].set_index("item")
    assert clear.loc[[21, 22, 23, 25], "status"].eq("needs the author").all()
    assert clear.loc[40, "status"] == "filled"  # model-folder items are still answered
