"""Memory bound: peak RSS of `radpipe extract` on 20 vs 200 tiny synthetic cases.

Workers get paths, not arrays, and each case's result goes to the cache as it finishes, so memory should
not grow with the number of images. What does grow is the feature rows themselves (kept for the tables,
built at the end): about a hundred floats per case, a few kilobytes. Run with `make bench`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.synth import write_case

# The wrapper's only child is `radpipe extract`, so RUSAGE_CHILDREN's ru_maxrss is that run's peak (kB on Linux).
# While it runs, the wrapper also reads the child's VmHWM (peak so far) when features.csv first appears: the peak
# of the extraction phase, before the tables are built.
_PEAK = """
import os, resource, subprocess, sys, time
out = sys.argv[1]
child = subprocess.Popen(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
extraction = 0
while child.poll() is None:
    if not extraction and os.path.exists(os.path.join(out, "features.csv")):
        try:
            with open(f"/proc/{child.pid}/status") as status:
                extraction = next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))
        except (OSError, StopIteration):
            pass
    time.sleep(0.005)
print(child.returncode, extraction, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_rss_mb(cohort: Path, out: Path, jobs: int = 1) -> tuple[float, float]:
    """(peak RSS before the tables are written, peak RSS of the whole run), in MB."""
    command = [sys.executable, "-m", "radpipe", "extract", str(cohort), "--out", str(out), "--jobs", str(jobs)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", _PEAK, str(out), *command], env=env, capture_output=True,
                            text=True, check=True, timeout=1800)
    code, extraction_kb, total_kb = result.stdout.split()
    assert code == "0", f"radpipe extract exited with {code}"
    return int(extraction_kb) / 1024, int(total_kb) / 1024


def make_cohort(folder: Path, n: int) -> Path:
    """``n`` tiny 3D cases (16 x 24 x 24), sphere radius cycling so that every mask stays inside its image."""
    for index in range(n):
        write_case(folder, f"case{index:03d}", seed=index, radius=4.0 + index % 5)
    return folder


@pytest.mark.bench
def test_peak_rss_does_not_grow_with_the_number_of_cases(tmp_path):
    extraction, total = {}, {}
    for n in (20, 200):
        cohort = make_cohort(tmp_path / f"cohort{n}", n)
        extraction[n], total[n] = peak_rss_mb(cohort, tmp_path / f"out{n}")
    for name, figures in (("until features.csv is written", extraction), ("whole run, tables included", total)):
        ratio = figures[200] / figures[20]
        per_case_kb = (figures[200] - figures[20]) * 1024 / 180
        print(f"\npeak RSS of `radpipe extract --jobs 1`, {name}: 20 cases {figures[20]:.1f} MB, "
              f"200 cases {figures[200]:.1f} MB, ratio {ratio:.3f} ({per_case_kb:+.1f} kB per extra case)")
    assert total[200] / total[20] < 1.25, total  # 10x the cases, well under 1.25x the memory
