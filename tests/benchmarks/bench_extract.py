"""Extraction benchmark (issue 3): radpipe vs the pyradiomics batch CLI on the pyradiomics sample cases.

The five sample cases are repeated to a cohort of 5 x RADPIPE_BENCH_REPEAT extractions (default 4: 20
extractions; RADPIPE_BENCH_REPEAT=1 shrinks the whole run to a couple of minutes). Every ratio is measured
within one test, so machine load hits both sides alike; `uptime` is printed with each figure.

Configurations: "filtered" (Original + LoG sigma 1, 2, 3 mm + Wavelet) and "original" (Original only),
both as standard pyradiomics params files given unchanged to both tools. Each radpipe timing is a fresh
`radpipe extract` process with a fresh output folder and cache (except the cache figures, which rerun one).
Wall times on a machine shared with other work are noisy: the parallel and Dask figures alternate their two
commands RADPIPE_BENCH_PAIRS times (default 2) and report the best and the median ratio, with the CPU time and
the cores each command obtained (CPU / wall).

One test per figure, so one can be run alone:
  test_speed_and_parity   radpipe --jobs 2 vs pyradiomics --jobs 2 (filtered, Original only), parity, peak RSS
  test_cache_rerun        rerun with nothing changed vs the first run (command and in-process stage), one case added
  test_parallel_efficiency  --jobs 2 vs --jobs 1
  test_dask_backend       Dask LocalCluster (2 workers) vs joblib --jobs 2: identical bytes, wall ratio

Prints one `[bench]` line per figure with its target; the speed/memory targets are reported, not asserted
(they depend on load). Asserted: every run succeeds, a rerun computes nothing, adding one case computes exactly
one, and the Dask and joblib backends write byte-identical features.csv.

Run: `.venv/bin/pytest -m bench -s tests/benchmarks/bench_extract.py [-k NAME]` (or `make bench`).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.bench

BIN = Path(sys.executable).parent
CASES = ("brain1", "brain2", "breast1", "lung1", "lung2")
REPEAT = int(os.environ.get("RADPIPE_BENCH_REPEAT", "4"))
PAIRS = int(os.environ.get("RADPIPE_BENCH_PAIRS", "2"))

PARAMS = {
    "filtered": """\
        setting:
          binWidth: 25
          label: 1
        imageType:
          Original: {}
          LoG:
            sigma: [1.0, 2.0, 3.0]
          Wavelet: {}
        featureClass:
          shape:
          firstorder:
          glcm:
          glrlm:
          glszm:
          gldm:
          ngtdm:
        """,
    "original": """\
        setting:
          binWidth: 25
          label: 1
        imageType:
          Original: {}
        featureClass:
          shape:
          firstorder:
          glcm:
          glrlm:
          glszm:
          gldm:
          ngtdm:
        """,
}

# Peak RSS of one extraction in a fresh interpreter (what one worker process holds).
RSS_RADPIPE = """
import resource, sys
from pathlib import Path
from radpipe.extract.features import CaseInput, extract_case
from radpipe.extract.runner import file_digest
from radpipe.extract.settings import ExtractSettings
image, mask, params = sys.argv[1:4]
settings = ExtractSettings(params_file=Path(params))
item = CaseInput("lung2", image, mask, image_sha256=file_digest(Path(image)), mask_sha256=file_digest(Path(mask)))
result = extract_case(item, settings)
assert result.status == "ok", result.qc
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
RSS_PYRADIOMICS = """
import logging, resource, sys
import radiomics
from radiomics import featureextractor
radiomics.setVerbosity(logging.ERROR)
image, mask, params = sys.argv[1:4]
featureextractor.RadiomicsFeatureExtractor(params).execute(image, mask)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _line(text: str) -> None:
    print(f"[bench] {text}", flush=True)


def _verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + sys of the command and every worker process it reaped)."""
    cpu = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return elapsed, _children_cpu() - cpu


def _radpipe(work: Path, batch: Path, params: Path, out: Path, *extra: str) -> tuple[float, float]:
    return _timed([str(BIN / "radpipe"), "extract", str(batch), "--params", str(params), "--out", str(out),
                   "--format", "csv", *extra], work)


def _pyradiomics(work: Path, batch: Path, params: Path, out_csv: Path, jobs: int = 2) -> tuple[float, float]:
    return _timed([str(BIN / "pyradiomics"), str(batch), "--jobs", str(jobs), "-p", str(params),
                   "-o", str(out_csv), "-f", "csv", "--verbosity", "1"], work)


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def _max_rss_mb(script: str, image: Path, mask: Path, params: Path) -> float:
    proc = subprocess.run([sys.executable, "-c", script, str(image), str(mask), str(params)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return int(proc.stdout.strip().splitlines()[-1]) / 1024  # Linux: ru_maxrss is in KiB


def _parity(radpipe_csv: Path, pyradiomics_csv: Path) -> dict:
    """Worst relative difference of every feature, radpipe (cropped) vs pyradiomics default (uncropped)."""
    ours = pd.read_csv(radpipe_csv)
    theirs = pd.read_csv(pyradiomics_csv)
    theirs.index = pd.Index([Path(p).name.replace("_image.nrrd", "") + "_r0" for p in theirs["Image"]], name="case_id")
    theirs = theirs[~theirs.index.duplicated()]
    ours = ours.set_index("case_id")
    features = [c for c in theirs.columns if not c.startswith("diagnostics_") and c not in ("Image", "Mask")]
    missing = sorted(set(features) - set(ours.columns))
    extra = sorted(set(ours.columns) - set(features) - {"roi"})
    worst = {"all": (0.0, ""), "original": (0.0, ""), "wavelet": (0.0, ""), "log": (0.0, "")}
    differing = {key: 0 for key in worst}
    compared = 0
    for case in [c + "_r0" for c in CASES]:
        for name in features:
            if name not in ours.columns:
                continue
            a = float(ours.at[case, name])
            b = float(theirs.at[case, name])
            compared += 1
            if (np.isnan(a) and np.isnan(b)) or a == b:
                continue
            rel = abs(a - b) / abs(b) if b != 0 else abs(a - b)
            group = name.split("_")[0].split("-")[0]
            for key in ("all", group):
                if key in worst:
                    differing[key] += 1
                    if rel > worst[key][0] or np.isnan(rel):
                        worst[key] = (rel, f"{case}:{name} ({a!r} vs {b!r})")
    return {"worst": worst, "differing": differing, "compared": compared, "missing": missing, "extra": extra,
            "n_features": len(features)}


@dataclass
class Cohort:
    """The benchmark cohort, written once per session: batch files for both tools and the params files."""

    work: Path
    samples: Path
    params: dict[str, Path]
    py_batch: Path
    rp_batch: Path
    rp_plus: Path  # rp_batch with one more case
    n: int


@pytest.fixture(scope="module")
def cohort(data_dir, tmp_path_factory) -> Cohort:
    samples = data_dir / "pyradiomics_samples"
    work = tmp_path_factory.mktemp("bench_extract")
    params = {}
    for name, text in PARAMS.items():
        params[name] = work / f"{name}.yaml"
        params[name].write_text(textwrap.dedent(text))
    rows = [(f"{case}_r{r}", samples / f"{case}_image.nrrd", samples / f"{case}_label.nrrd")
            for r in range(REPEAT) for case in CASES]
    py_batch = work / "py_batch.csv"
    pd.DataFrame({"Image": [str(i) for _, i, _ in rows], "Mask": [str(m) for _, _, m in rows]}).to_csv(
        py_batch, index=False)
    rp_batch = work / "rp_batch.csv"
    rp_frame = pd.DataFrame({"case_id": [c for c, _, _ in rows], "Image": [str(i) for _, i, _ in rows],
                             "Mask": [str(m) for _, _, m in rows]})
    rp_frame.to_csv(rp_batch, index=False)
    rp_plus = work / "rp_batch_plus.csv"
    pd.concat([rp_frame, pd.DataFrame({"case_id": ["lung1_added"], "Image": [str(samples / "lung1_image.nrrd")],
                                       "Mask": [str(samples / "lung1_label.nrrd")]})]).to_csv(rp_plus, index=False)
    _line(f"cohort: {len(rows)} extractions ({REPEAT} x {len(CASES)} pyradiomics sample cases)")
    return Cohort(work, samples, params, py_batch, rp_batch, rp_plus, len(rows))


def _fresh(c: Cohort, name: str) -> Path:
    out = c.work / name
    shutil.rmtree(out, ignore_errors=True)
    return out


def _alternate(c: Cohort, runs: dict[str, tuple[str, ...]]) -> dict[str, list[tuple[float, float]]]:
    """Each named radpipe command PAIRS times, alternating, each with a fresh output folder and cache."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for _ in range(PAIRS):
        for name, extra in runs.items():
            times[name].append(_radpipe(c.work, c.rp_batch, c.params["filtered"], _fresh(c, name), *extra))
    return times


def _ratios(slow: list[tuple[float, float]], fast: list[tuple[float, float]]) -> tuple[float, float]:
    """(best, median) over the pairs of slow wall / fast wall, each pair measured back to back."""
    ratios = sorted(s[0] / f[0] for s, f in zip(slow, fast, strict=True))
    return ratios[-1], float(np.median(ratios))


def _walls(runs: list[tuple[float, float]]) -> str:
    return ", ".join(f"{wall:.1f} s ({cpu / wall:.2f} cores)" for wall, cpu in runs)


def test_speed_and_parity(cohort):
    c = cohort
    _line(f"machine at start: {_uptime()}")
    t_py_f, cpu_py_f = _pyradiomics(c.work, c.py_batch, c.params["filtered"], c.work / "py_filtered.csv")
    _line(f"pyradiomics CLI filtered --jobs 2: {t_py_f:.1f} s wall, {cpu_py_f:.1f} s CPU")
    out_f = _fresh(c, "rp_filtered_j2")
    t_rp_f2, cpu_rp_f2 = _radpipe(c.work, c.rp_batch, c.params["filtered"], out_f, "--jobs", "2")
    _line(f"radpipe filtered --jobs 2: {t_rp_f2:.1f} s wall, {cpu_rp_f2:.1f} s CPU "
          f"(CPU ratio pyradiomics/radpipe {cpu_py_f / cpu_rp_f2:.2f}x)")
    speed = t_py_f / t_rp_f2
    _line(f"speed filtered (Original+LoG 1,2,3 mm+Wavelet), radpipe --jobs 2 vs pyradiomics --jobs 2: "
          f"{speed:.2f}x ({t_py_f:.1f} s / {t_rp_f2:.1f} s; target >= 8x: {_verdict(speed >= 8)})")

    t_py_o, cpu_py_o = _pyradiomics(c.work, c.py_batch, c.params["original"], c.work / "py_original.csv")
    out_o = _fresh(c, "rp_original_j2")
    t_rp_o, cpu_rp_o = _radpipe(c.work, c.rp_batch, c.params["original"], out_o, "--jobs", "2")
    speed_o = t_py_o / t_rp_o
    _line(f"speed Original only, radpipe --jobs 2 vs pyradiomics --jobs 2: {speed_o:.2f}x "
          f"({t_py_o:.1f} s / {t_rp_o:.1f} s; CPU {cpu_py_o:.1f} s / {cpu_rp_o:.1f} s; "
          f"target >= 1.5x: {_verdict(speed_o >= 1.5)})")

    for name, ours, theirs in (("filtered", out_f, c.work / "py_filtered.csv"),
                               ("original", out_o, c.work / "py_original.csv")):
        p = _parity(ours / "features.csv", theirs)
        worst_rel, worst_name = p["worst"]["all"]
        groups = "; ".join(f"{g}: worst {p['worst'][g][0]:.2e} ({p['differing'][g]} differ)"
                           for g in ("original", "log", "wavelet"))
        _line(f"parity {name} (radpipe{' cropped' if name == 'filtered' else ''} vs pyradiomics default uncropped), "
              f"{p['compared']} values "
              f"({p['n_features']} features x {len(CASES)} cases): worst relative {worst_rel:.2e} at {worst_name}; "
              f"{groups}; missing in radpipe {len(p['missing'])}, extra {len(p['extra'])} "
              f"(target <= 1e-4, Original and wavelet identical: "
              f"{_verdict(worst_rel <= 1e-4 and not p['missing'] and p['worst']['original'][0] == 0 and p['worst']['wavelet'][0] == 0)})")

    image, mask = c.samples / "lung2_image.nrrd", c.samples / "lung2_label.nrrd"
    rss_rp = _max_rss_mb(RSS_RADPIPE, image, mask, c.params["filtered"])
    rss_py = _max_rss_mb(RSS_PYRADIOMICS, image, mask, c.params["filtered"])
    _line(f"peak RSS, one lung2 filtered extraction in a fresh process: radpipe {rss_rp:.0f} MB, pyradiomics "
          f"default {rss_py:.0f} MB (target radpipe <= 600 MB: {_verdict(rss_rp <= 600)})")
    _line(f"machine at end: {_uptime()}")


def test_cache_rerun(cohort):
    """First run = a fresh command on a cold cache. Rerun = the same command again, nothing changed: the
    command figure includes interpreter start-up and imports, the stage figure is extract_cohort's own wall
    time (manifest.json) in each. Reruns are repeated three times; the median is reported."""
    c = cohort
    _line(f"machine at start: {_uptime()}")
    out = _fresh(c, "rp_cache")
    t_first, _ = _radpipe(c.work, c.rp_batch, c.params["filtered"], out, "--jobs", "2")
    first = _manifest(out)
    assert first["computed"] == c.n
    before = {path.name: path.read_bytes() for path in out.glob("*.csv")}
    reruns = []
    for _ in range(3):
        t_rerun, cpu_rerun = _radpipe(c.work, c.rp_batch, c.params["filtered"], out, "--jobs", "2")
        rerun = _manifest(out)
        assert (rerun["computed"], rerun["cached"], rerun["tables_written"]) == (0, c.n, False)
        reruns.append((t_rerun, cpu_rerun, rerun["wall_seconds"]))
    assert {path.name: path.read_bytes() for path in out.glob("*.csv")} == before
    t_rerun, cpu_rerun, stage_rerun = (float(np.median([r[i] for r in reruns])) for i in range(3))
    command = t_first / t_rerun
    stage = first["wall_seconds"] / max(stage_rerun, 1e-3)
    _line(f"cache rerun, nothing changed (computed 0, cached {c.n}, tables left as they were): "
          f"command {t_rerun:.2f} s ({cpu_rerun:.2f} s CPU, incl. interpreter start and imports) vs first "
          f"{t_first:.1f} s = {command:.1f}x; stage {stage_rerun * 1000:.0f} ms vs {first['wall_seconds']:.1f} s = "
          f"{stage:.0f}x (target >= 50x: {_verdict(command >= 50)} command / {_verdict(stage >= 50)} stage)")

    (out / "features.csv").unlink()  # a deleted table is written again, from the cache
    t_restore, _ = _radpipe(c.work, c.rp_batch, c.params["filtered"], out, "--jobs", "2")
    restored = _manifest(out)
    assert (restored["computed"], restored["tables_written"]) == (0, True)
    assert (out / "features.csv").read_bytes() == before["features.csv"]
    _line(f"cache, features.csv deleted: rewritten from the cache in {t_restore:.2f} s "
          f"(stage {restored['wall_seconds']:.2f} s), bytes identical")

    t_plus, _ = _radpipe(c.work, c.rp_plus, c.params["filtered"], out, "--jobs", "2")
    plus = _manifest(out)
    _line(f"cache, one case added: computed {plus['computed']}, cached {plus['cached']} in {t_plus:.1f} s "
          f"(target computed == 1: {_verdict(plus['computed'] == 1)})")
    assert (plus["computed"], plus["cached"]) == (1, c.n)
    _line(f"machine at end: {_uptime()}")


def test_parallel_efficiency(cohort):
    c = cohort
    _line(f"machine at start: {_uptime()}")
    runs = _alternate(c, {"rp_j1": ("--jobs", "1"), "rp_j2": ("--jobs", "2")})
    best, median = _ratios(runs["rp_j1"], runs["rp_j2"])
    # Cores obtained (CPU / wall): on a machine shared with other sessions --jobs 2 cannot get more than its
    # share; --jobs 1 gets more than one core when SimpleITK's filters find a second one free.
    _line(f"parallel efficiency radpipe filtered --jobs 2 vs --jobs 1 ({PAIRS} pairs): best {best:.2f}x, median "
          f"{median:.2f}x; --jobs 1: {_walls(runs['rp_j1'])}; --jobs 2: {_walls(runs['rp_j2'])} "
          f"(target >= 1.8x: {_verdict(median >= 1.8)})")
    _line(f"machine at end: {_uptime()}")


def test_dask_backend(cohort):
    c = cohort
    _line(f"machine at start: {_uptime()}")
    runs = _alternate(c, {"rp_dask": ("--scheduler", "local"), "rp_joblib": ("--jobs", "2")})
    same_bytes = (c.work / "rp_dask" / "features.csv").read_bytes() == (c.work / "rp_joblib" / "features.csv").read_bytes()
    ratios = sorted(d[0] / j[0] for d, j in zip(runs["rp_dask"], runs["rp_joblib"], strict=True))
    best, median = ratios[0], float(np.median(ratios))
    _line(f"dask --scheduler local vs joblib --jobs 2 ({PAIRS} pairs): features.csv bytes "
          f"{'identical' if same_bytes else 'DIFFER'}; wall ratio best {best:.2f}x, median {median:.2f}x; dask: "
          f"{_walls(runs['rp_dask'])}; joblib: {_walls(runs['rp_joblib'])} "
          f"(target <= 1.3x: {_verdict(same_bytes and median <= 1.3)})")
    _line(f"machine at end: {_uptime()}")
    assert same_bytes, "Dask and joblib backends wrote different features.csv"
