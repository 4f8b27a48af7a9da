"""ICC(1,1), ICC(2,1), ICC(3,1) and their 95% CIs against pingouin's intraclass_corr on the same data."""

import numpy as np
import pandas as pd
import pingouin
import pytest

from radpipe.robustness.icc import feature_icc, icc_table

PINGOUIN_TYPES = {"ICC1": "ICC(1,1)", "ICC2": "ICC(A,1)", "ICC3": "ICC(C,1)"}


def _pingouin(cube: np.ndarray, feature: int) -> pd.DataFrame:
    n, k, _ = cube.shape
    long = pd.DataFrame({"case": np.repeat(np.arange(n), k), "version": np.tile(np.arange(k), n),
                         "value": cube[:, :, feature].ravel()})
    rounding = pingouin.options.get("round.column.CI95")
    pingouin.options["round.column.CI95"] = None  # pingouin rounds its CIs to 2 decimals by default
    try:
        return pingouin.intraclass_corr(long, targets="case", raters="version", ratings="value").set_index("Type")
    finally:
        pingouin.options["round.column.CI95"] = rounding


@pytest.mark.parametrize(("n", "k", "noise", "bias"), [(20, 3, 0.3, 0.0), (8, 5, 1.0, 0.5), (40, 2, 0.05, 2.0)])
def test_icc_matches_pingouin_to_1e10(n, k, noise, bias):
    rng = np.random.default_rng(n * k)
    m = 4
    cube = (rng.normal(size=(n, 1, m)) * rng.uniform(0.5, 3, m) + bias * rng.normal(size=(1, k, m))
            + noise * rng.normal(size=(n, k, m)) + rng.uniform(-5, 5, m))
    ours = icc_table(cube)
    for feature in range(m):
        reference = _pingouin(cube, feature)
        for key, name in PINGOUIN_TYPES.items():
            low, high = reference.loc[name, "CI95"]
            assert ours[key][feature] == pytest.approx(reference.loc[name, "ICC"], abs=1e-10)
            assert ours[key + "_low"][feature] == pytest.approx(low, abs=1e-10)
            assert ours[key + "_high"][feature] == pytest.approx(high, abs=1e-10)


def test_feature_icc_uses_complete_cases_and_flags_robust_on_the_lower_bound():
    rng = np.random.default_rng(1)
    truth = rng.normal(size=12)
    rows = [{"case_id": f"c{i}", "version": v, "stable": truth[i] + 0.01 * rng.normal(),
             "shaky": truth[i] + 2.0 * rng.normal(), "flat": 1.0}
            for i in range(12) for v in range(3)]
    rows = [r for r in rows if not (r["case_id"] == "c0" and r["version"] == 2)]  # c0 lacks a version
    table = feature_icc(pd.DataFrame(rows), threshold=0.75).set_index("feature")
    assert set(table["n_cases"]) == {11}
    complete = pd.DataFrame([r for r in rows if r["case_id"] != "c0"])
    expected = icc_table(complete.pivot(index="case_id", columns="version", values="stable").to_numpy())
    assert table.loc["stable", "icc"] == pytest.approx(expected["ICC1"][0], abs=1e-12)
    assert table.loc["stable", "robust"] and not table.loc["shaky", "robust"]
    assert np.isnan(table.loc["flat", "icc"]) and not table.loc["flat", "robust"]
    assert table.loc["shaky", "ci_low"] < 0.75 <= table.loc["stable", "ci_low"]
