"""radpipe as a new user gets it: a wheel installed (not editable) into a fresh venv, used from an empty folder.

The wheel is built from a copy of the sources, so nothing is written into the checkout. The new venv borrows
the dependencies of the running environment through a ``.pth`` file instead of downloading them; the editable
install's own ``.pth`` finder is then not processed, so ``radpipe`` is imported from the wheel alone (checked).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import site
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("radpipe", "setup.cfg", "pyproject.toml", "README.md", "LICENSE")


def _build_wheel(tmp: Path) -> Path:
    source = tmp / "source"
    source.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, source / name)
    command = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q", "-w", str(tmp / "dist")]
    # without isolation when this environment can build wheels itself (fast, offline); setuptools < 70.1
    # needs the separate `wheel` package for that
    import setuptools

    major, minor = (int(part) for part in setuptools.__version__.split(".")[:2])
    if (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None:
        command.append("--no-build-isolation")
    subprocess.run(command, check=True, capture_output=True, text=True, cwd=tmp)
    [wheel] = (tmp / "dist").glob("radpipe-*.whl")
    return wheel


def _fresh_venv(tmp: Path, wheel: Path) -> Path:
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    target = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 check=True, capture_output=True, text=True).stdout.strip())
    # radpipe's dependencies, from this environment, after the venv's own site-packages
    (target / "_radpipe_test_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                    "-q", str(wheel)], check=True, capture_output=True, text=True)
    return venv


def _run(venv: Path, cwd: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items()
           if key not in {"RADPIPE_DATA", "RADPIPE_DATASETS", "PYTHONPATH", "VIRTUAL_ENV"}}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", OMP_NUM_THREADS="1", MPLBACKEND="Agg",
               COLUMNS="200")
    return subprocess.run([str(venv / "bin" / "radpipe"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _said(result: subprocess.CompletedProcess) -> str:
    return " ".join((result.stdout + result.stderr).split())


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv, empty working folder), both outside the repository."""
    tmp = tmp_path_factory.mktemp("installed")
    assert REPO not in tmp.parents
    venv = _fresh_venv(tmp, _build_wheel(tmp))
    work = tmp / "empty"
    work.mkdir()
    return venv, work


def test_wheel_ships_the_recipes_templates_and_license(installed):
    venv, _ = installed
    python = venv / "bin" / "python"
    probe = ("import radpipe, importlib.resources as r, importlib.metadata as m; print(radpipe.__file__); "
             "print((r.files('radpipe') / 'recipes' / 'demo.yaml').is_file()); "
             "print(any(str(f).endswith('LICENSE') for f in m.files('radpipe')))")
    lines = subprocess.run([str(python), "-c", probe], check=True, capture_output=True, text=True,
                           cwd=installed[1]).stdout.split()
    assert Path(lines[0]).is_relative_to(venv) and REPO not in Path(lines[0]).parents  # not the editable copy
    assert lines[1:] == ["True", "True"]


def test_first_commands_from_an_empty_folder(installed):
    venv, work = installed
    result = _run(venv, work, "--help")
    assert result.returncode == 0 and "radpipe init" in _said(result) and "pipelines/" not in _said(result)

    result = _run(venv, work, "datasets")
    assert result.returncode == 0, _said(result)
    assert "no dataset registry found" in _said(result) and "source checkout" not in _said(result)

    result = _run(venv, work, "extract", "./no_such_cohort", "--out", "x")
    assert result.returncode == 2
    assert "'./no_such_cohort' is neither a folder nor a dataset" in _said(result)
    assert "site-packages" not in _said(result)


def test_extract_a_dicom_tree_with_no_configuration(installed):
    from tests.dicom_trees import write_dicom_tree

    venv, work = installed
    written = write_dicom_tree(work / "dicom_export", problems=False)
    result = _run(venv, work, "extract", "dicom_export", "--out", "dicom_out")  # a bare name, no registry
    assert result.returncode == 0, _said(result)[-3000:]
    diagnostics = pd.read_csv(work / "dicom_out" / "diagnostics.csv").set_index("case_id")
    expected = {case_id: case["voxels"] for case_id, case in written["cases"].items()}
    assert diagnostics["roi_voxels"].to_dict() == expected
    assert diagnostics["modality"].to_dict() == {case_id: case["modality"] for case_id, case in written["cases"].items()}
    assert len(pd.read_csv(work / "dicom_out" / "features.csv")) == len(expected)
    for path in (work / "dicom_out").iterdir():
        if path.is_file():
            text = path.read_bytes().decode("utf-8", "replace")
            assert not any(name in text for name in written["patient_names"]), path.name
            assert written["birth_date"] not in text, path.name


@pytest.mark.slow  # about 100 s on 2 busy cores: the demo's three stages
def test_demo_then_init_and_validate_on_its_cohort(installed):
    venv, work = installed
    start = time.perf_counter()
    result = _run(venv, work, "demo", "--out", "demo_out", "--cases", "12")
    seconds = time.perf_counter() - start
    assert result.returncode == 0, _said(result)[-3000:]
    assert (work / "demo_out" / "explain" / "cohort.html").is_file()
    metrics = pd.read_csv(work / "demo_out" / "models" / "metrics.csv").query("cohort == 'cv'")
    assert set(metrics["model"]) == {"svm", "rf", "xgb"}
    assert metrics["auc"].between(0, 1).all() and metrics["auc"].notna().all()
    print(f"radpipe demo --cases 12 from a wheel: {seconds:.1f} s")

    result = _run(venv, work, "init", "study", "--cohort", "demo_out/synthetic_cohort",
                  "--positive-class", "aggressive")
    assert result.returncode == 0, _said(result)
    assert "images/ + masks/ folders: 12 images, 12 masks, labels.csv" in _said(result)
    result = _run(venv, work, "validate", "study/recipe.yaml")
    assert result.returncode == 0, _said(result)
    assert "Cohort('synthetic_cohort', 12 cases, classes {aggressive: 6, indolent: 6})" in _said(result)
    result = _run(venv, work / "study", "datasets")  # the study's registry is found from inside it
    assert result.returncode == 0 and f"registry: {work / 'study' / 'datasets.yaml'}" in _said(result)
