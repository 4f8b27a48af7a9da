"""Figures that must draw for every cohort, however its predictions fall."""

import numpy as np

from radpipe.explain import plots


def test_calibration_draws_when_a_bin_holds_only_positives():
    # 12 cases, 2 bins of 6: the upper bin is all positive, where the Wilson interval's upper edge lands
    # a rounding error below the observed share of 1 (matplotlib refuses a negative error bar)
    y = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1])
    p = np.linspace(0.05, 0.95, 12)
    png = plots.calibration(y, p)
    assert png.startswith(b"\x89PNG")
