"""Riley et al.'s minimum sample size for a binary outcome, against the published worked example."""

import math

import pytest

from radpipe.model.persist import render_model_card
from radpipe.model.sample_size import max_r2_cs, riley_binary, sample_size_record


def test_published_example_24_parameters_prevalence_0174_r2_0288():
    # Riley et al. (Stat Med 2019 Part II; BMJ 2020;368:m441) and pmsampsize's binary example: criteria give
    # 623, 662 and 221 participants; 662 is required, i.e. 4.8 events per candidate predictor parameter
    result = riley_binary(24, 0.174, 0.288)
    assert [c["n"] for c in result.criteria] == [623, 662, 221]
    assert result.n_required == 662 and result.events_required == 116
    assert round(result.events_per_predictor_required, 1) == 4.8
    assert result.max_r2_cs == pytest.approx(0.603, abs=5e-4)
    assert result.criteria[1]["shrinkage"] == pytest.approx(0.905, abs=5e-4)


def test_max_r2_and_the_default_anticipated_r2():
    phi = 16 / 39
    expected = 1 - (phi ** phi * (1 - phi) ** (1 - phi)) ** 2  # exp(2 x null log-likelihood per case)
    assert max_r2_cs(phi) == pytest.approx(expected)
    result = riley_binary(12, phi)
    assert result.r2_cs == pytest.approx(0.15 * expected) and "15%" in result.r2_cs_source


def test_a_small_cohort_is_warned_with_its_events_per_predictor():
    record = sample_size_record(39, 16, 110)
    assert record["n_available"] == 39 and record["events_per_predictor"] == pytest.approx(16 / 110)
    assert record["n_required"] > 39 and f"{16 / 110:.2f} events per candidate predictor" in record["warning"]
    assert set(record) >= {"n_required", "n_available", "events_required", "events_available",
                           "candidate_predictors", "prevalence", "r2_cs", "criteria", "events_per_predictor",
                           "warning"}
    card = render_model_card({"model_name": "logreg", "classes": ["no", "yes"], "sample_size": record})
    assert "## Sample size" in card and "**Warning:**" in card and f"n >= {record['criteria'][0]['n']}" in card
    big = sample_size_record(100_000, 40_000, 5)
    assert big["warning"] is None and big["n_required"] == max(c["n"] for c in big["criteria"])
    assert big["criteria"][2]["n"] == math.ceil((1.96 / 0.05) ** 2 * 0.4 * 0.6)
