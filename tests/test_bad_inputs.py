"""A corpus of bad inputs, written at test time, run through the CLI together with good cases.

Every bad input must end as a QC-ledger row (failed, or fixed with the action taken) or as a
configuration error (exit 2), with a reason a person understands; no traceback reaches the user;
and every good case's features are byte-identical to a run without the bad cases.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from radpipe.cli import app
from tests.synth import write_case

runner = CliRunner()
SIZE = (16, 24, 24)  # z, y, x of tests.synth.write_case
GOOD_3D = ["good00", "good01", "good02", "good03"]
GOOD_2D = ["flat00", "flat01", "flat02"]


# --- the corpus --------------------------------------------------------------------------------------------


def _sphere(radius: float = 5.0) -> np.ndarray:
    zz, yy, xx = np.meshgrid(*(np.arange(s) for s in SIZE), indexing="ij")
    distance = np.sqrt(((zz - 8) * 2.0) ** 2 + (yy - 12) ** 2 + (xx - 12) ** 2)
    return (distance <= radius).astype(np.uint8)


def _write_mask(folder: Path, case_id: str, array: np.ndarray, *, spacing=(1.0, 1.0, 2.0), origin=None,
                suffix: str = ".nii.gz") -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    if origin is not None:
        image.SetOrigin(origin)
    path = folder / "masks" / f"{case_id}{suffix}"
    path.unlink(missing_ok=True)
    sitk.WriteImage(image, str(path))


def _write_image(folder: Path, case_id: str, array: np.ndarray, *, suffix: str = ".nii.gz",
                 spacing=(1.0, 1.0, 2.0), is_vector: bool = False) -> Path:
    image = sitk.GetImageFromArray(array, isVector=is_vector)
    if image.GetDimension() == 3 and not is_vector:
        image.SetSpacing(spacing)
    path = folder / "images" / f"{case_id}{suffix}"
    path.unlink(missing_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def _truncate(path: Path, keep: float = 0.4) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _good_2d(folder: Path, case_id: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:48, :48]
    disc = ((yy - 24) ** 2 + (xx - 22) ** 2) <= (9 + seed) ** 2
    grey = np.clip(rng.normal(60, 12, (48, 48)) + disc * 90, 0, 255).astype(np.uint8)
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(grey), str(folder / "images" / f"{case_id}.png"))
    sitk.WriteImage(sitk.GetImageFromArray((disc * 255).astype(np.uint8)), str(folder / "masks" / f"{case_id}.png"))


def make_good_3d(folder: Path) -> None:
    for index, case_id in enumerate(GOOD_3D):
        write_case(folder, case_id, seed=index, radius=4.0 + index)


def make_good_2d(folder: Path) -> None:
    for index, case_id in enumerate(GOOD_2D):
        _good_2d(folder, case_id, seed=index)


def add_bad_3d(folder: Path) -> dict[str, tuple[str, str, list[str]]]:
    """Bad 3D cases; returns case id -> (expected status, expected action, key words of the reason)."""
    expected: dict[str, tuple[str, str, list[str]]] = {}

    def case(case_id, status, action, words, seed):
        write_case(folder, case_id, seed=seed)
        expected[case_id] = (status, action, words)

    case("trunc_nii", "failed", "rejected", ["trunc_nii.nii.gz", "truncated"], 10)
    _truncate(folder / "images" / "trunc_nii.nii.gz")

    # an uncompressed NIfTI cut short: ITK would pad it with zeros without complaint
    case("trunc_raw", "failed", "rejected", ["trunc_raw.nii", "truncated"], 11)
    raw = folder / "images" / "trunc_raw.nii"
    raw.write_bytes(gzip.decompress((folder / "images" / "trunc_raw.nii.gz").read_bytes()))
    (folder / "images" / "trunc_raw.nii.gz").unlink()
    _truncate(raw, 0.7)

    case("bad_nrrd", "failed", "rejected", ["bad_nrrd.nrrd", "could not be read"], 12)
    nrrd = _write_image(folder, "bad_nrrd", np.zeros(SIZE, np.float32), suffix=".nrrd")
    (folder / "images" / "bad_nrrd.nii.gz").unlink()
    _truncate(nrrd, 0.5)

    case("zero_byte", "failed", "rejected", ["zero_byte.nii.gz", "0 bytes"], 13)
    (folder / "images" / "zero_byte.nii.gz").write_bytes(b"")

    case("not_image", "failed", "rejected", ["not_image.nii.gz", "could not be read"], 14)
    (folder / "images" / "not_image.nii.gz").write_text("case_id,label\nthis is a spreadsheet, not a scan\n")

    case("garbage_gz", "failed", "rejected", ["garbage_gz.nii.gz", "could not be read"], 15)
    (folder / "images" / "garbage_gz.nii.gz").write_bytes(gzip.compress(b"\x00\x01not a nifti header" * 40))

    case("empty_mask", "failed", "rejected", ["empty"], 16)
    _write_mask(folder, "empty_mask", np.zeros(SIZE, np.uint8))

    one = np.zeros(SIZE, np.uint8)
    one[8, 12, 12] = 1
    case("one_voxel", "failed", "rejected", ["1 voxel", "min_voxels"], 17)
    _write_mask(folder, "one_voxel", one)

    case("label255", "fixed", "binarised", ["255", "{0, 1}"], 18)
    _write_mask(folder, "label255", _sphere() * 255)

    case("float_mask", "failed", "rejected", ["not integer-valued", "0.7"], 19)
    fractional = _sphere().astype(np.float32)
    fractional[8, 10:14, 10:14] = 0.7
    _write_mask(folder, "float_mask", fractional)

    case("whole_float", "fixed", "binarised", ["{0, 2}"], 20)
    _write_mask(folder, "whole_float", _sphere().astype(np.float32) * 2)

    two = _sphere().copy()
    two[:8][two[:8] == 1] = 2
    case("multilabel", "failed", "rejected", ["several labels", "1, 2", "label:"], 21)
    _write_mask(folder, "multilabel", two)

    case("geom_small", "fixed", "resampled_mask", ["origin", "resampled"], 22)
    _write_mask(folder, "geom_small", _sphere(), origin=(0.0002, 0.0, 0.0))

    case("geom_spacing", "failed", "rejected", ["spacing", "(1.1, 1, 2)", "(1, 1, 2)"], 23)
    _write_mask(folder, "geom_spacing", _sphere(), spacing=(1.1, 1.0, 2.0))

    case("geom_origin", "failed", "rejected", ["origin", "more than the tolerance"], 24)
    _write_mask(folder, "geom_origin", _sphere(), origin=(5.0, 0.0, 0.0))

    case("geom_size", "failed", "rejected", ["size", "(24, 24, 12)"], 25)
    _write_mask(folder, "geom_size", _sphere()[:12], origin=(0.0, 0.0, -30.0))

    case("four_d", "failed", "rejected", ["4D", "several volumes"], 26)
    stack = [sitk.GetImageFromArray(np.random.default_rng(i).normal(50, 10, SIZE).astype(np.float32))
             for i in range(3)]
    sitk.WriteImage(sitk.JoinSeries(stack), str(folder / "images" / "four_d.nii.gz"))

    nan = np.random.default_rng(1).normal(50, 10, SIZE).astype(np.float32)
    nan[0, 0, :5] = np.nan
    case("nan_image", "failed", "rejected", ["5 NaN"], 27)
    _write_image(folder, "nan_image", nan)

    inf = np.random.default_rng(2).normal(50, 10, SIZE).astype(np.float32)
    inf[0, 0, :3] = np.inf
    case("inf_image", "failed", "rejected", ["3 infinite"], 28)
    _write_image(folder, "inf_image", inf, suffix=".nrrd")
    (folder / "images" / "inf_image.nii.gz").unlink()

    case("whole_mask", "failed", "rejected", ["whole image"], 29)
    _write_mask(folder, "whole_mask", np.ones(SIZE, np.uint8))

    case("mask_2d", "failed", "rejected", ["2D", "3D"], 30)
    _write_mask(folder, "mask_2d", _sphere()[8])

    # a good 2D PNG case dropped among NIfTI volumes: its shape2D columns would pad every 3D row
    _good_2d(folder, "png_in_3d", seed=3)
    expected["png_in_3d"] = ("failed", "rejected", ["2D image in a cohort of 3D images", "not comparable"])

    # duplicate case ids: two image files both named 'dup'
    write_case(folder, "dup", seed=31)
    _write_image(folder, "dup", np.zeros(SIZE, np.float32), suffix=".nrrd")
    expected["dup"] = ("failed", "not_paired", ["two image files", "dup.nii.gz", "dup.nrrd"])

    write_case(folder, "lonely", seed=32)
    (folder / "masks" / "lonely.nii.gz").unlink()
    expected["lonely"] = ("failed", "not_paired", ["has no mask"])
    return expected


def add_bad_2d(folder: Path) -> dict[str, tuple[str, str, list[str]]]:
    expected: dict[str, tuple[str, str, list[str]]] = {}
    _good_2d(folder, "trunc_png", seed=5)
    _truncate(folder / "images" / "trunc_png.png", 0.5)
    expected["trunc_png"] = ("failed", "rejected", ["trunc_png.png", "could not be read"])

    # an RGBA screenshot: read as luminance, alpha dropped, noted in diagnostics; the 0/255 mask is binarised
    _good_2d(folder, "rgba_png", seed=6)
    grey = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "images" / "rgba_png.png")))
    rgba = np.stack([grey, (grey * 0.5).astype(np.uint8), grey // 3, np.full_like(grey, 255)], axis=-1)
    _write_image(folder, "rgba_png", rgba, suffix=".png", is_vector=True)
    expected["rgba_png"] = ("fixed", "binarised", ["{0, 255}"])
    return expected


def write_labels(folder: Path, case_ids: list[str], *, bad: bool) -> dict[str, tuple[str, str, list[str]]]:
    """labels.csv; the bad one has a BOM, CRLF, a missing case, an extra case and an unknown label."""
    rows = [(case_id, "b" if i % 2 else "a") for i, case_id in enumerate(case_ids)]
    expected: dict[str, tuple[str, str, list[str]]] = {}
    if bad:
        missing = rows.pop(1)[0]  # a case with images but no label row
        rows[0] = (rows[0][0], "NA")  # a missing-value marker is not a class
        unknown = rows[2][0]
        rows[2] = (unknown, "maybe")  # neither a nor b
        rows.append(("ghost", "a"))  # a label row with no image
        expected["ghost"] = ("failed", "not_paired", ["labels file", "ghost", "no image"])
        expected[missing] = ("fixed", "no_label", ["no row", "labels.csv"])
        expected[rows[0][0]] = ("fixed", "no_label", ["'NA'", "missing"])
        expected[unknown] = ("fixed", "unknown_label", ["'maybe'", "a, b"])
    text = "case_id,label\n" + "".join(f"{c},{v}\n" for c, v in rows)
    if bad:
        (folder / "labels.csv").write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    else:
        (folder / "labels.csv").write_text(text)
    return expected


# --- the test ------------------------------------------------------------------------------------------------


def _extract(folder: Path, out: Path, *extra: str):
    result = runner.invoke(app, ["extract", str(folder), "--out", str(out), *extra])
    return result


def _lines_by_case(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return {line.split(",", 1)[0]: line for line in lines[1:]} | {"<header>": lines[0]}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    clean3, dirty3 = root / "clean3d", root / "dirty3d"
    for folder in (clean3, dirty3):
        make_good_3d(folder)
    expected = add_bad_3d(dirty3)
    write_labels(clean3, GOOD_3D, bad=False)
    pairs = sorted(c for c in expected if expected[c][1] != "not_paired")
    expected |= write_labels(dirty3, GOOD_3D + pairs, bad=True)

    clean2, dirty2 = root / "clean2d", root / "dirty2d"
    for folder in (clean2, dirty2):
        make_good_2d(folder)
    expected2 = add_bad_2d(dirty2)
    return root, clean3, dirty3, expected, clean2, dirty2, expected2


def _check_ledger(out: Path, expected: dict[str, tuple[str, str, list[str]]], output: str) -> list[str]:
    """The bad inputs whose ledger row is missing or unclear (an empty list when all are handled)."""
    qc = pd.read_csv(out / "qc.csv", dtype=str, keep_default_na=False)
    unclear = []
    for case_id, (status, action, words) in expected.items():
        rows = qc[(qc["case_id"] == case_id) & (qc["status"] == status) & (qc["action"] == action)]
        reason = " | ".join(rows["reason"])
        if rows.empty or not all(word in reason for word in words) or "Traceback" in reason:
            unclear.append(f"{case_id}: expected {status}/{action} with {words}; ledger has "
                           f"{qc[qc['case_id'] == case_id].to_dict('records')}")
    return unclear


def test_bad_inputs_are_ledgered_and_good_cases_unchanged(corpus, tmp_path):
    root, clean3, dirty3, expected3, clean2, dirty2, expected2 = corpus
    runs = {name: _extract(folder, tmp_path / name) for name, folder in
            (("clean3d", clean3), ("dirty3d", dirty3), ("clean2d", clean2), ("dirty2d", dirty2))}
    for name, result in runs.items():
        assert "Traceback" not in result.output, result.output
        assert result.exit_code == (1 if name.startswith("dirty") else 0), (name, result.output)

    unclear = _check_ledger(tmp_path / "dirty3d", expected3, runs["dirty3d"].output)
    unclear += _check_ledger(tmp_path / "dirty2d", expected2, runs["dirty2d"].output)

    # the BOM and CRLF of the bad labels.csv are read through: well-labelled cases get no label row
    qc3 = pd.read_csv(tmp_path / "dirty3d" / "qc.csv", dtype=str, keep_default_na=False)
    label_rows = qc3[qc3["action"].isin(["no_label", "unknown_label"])]
    assert sorted(label_rows["case_id"]) == sorted(c for c, e in expected3.items() if "label" in e[1])

    diagnostics = pd.read_csv(tmp_path / "dirty2d" / "diagnostics.csv").set_index("case_id")
    if "alpha channel dropped" not in diagnostics.loc["rgba_png", "conversions"]:
        unclear.append("rgba_png: the alpha channel conversion is not recorded in diagnostics.csv")

    lost_or_changed = []
    for clean, dirty, good in (("clean3d", "dirty3d", GOOD_3D), ("clean2d", "dirty2d", GOOD_2D)):
        for table in ("features.csv", "features_long.csv"):
            before = (tmp_path / clean / table).read_text().splitlines()
            after = set((tmp_path / dirty / table).read_text().splitlines())
            lost_or_changed += [f"{dirty}/{table}: {line[:60]}" for line in before if line not in after]
        wide = _lines_by_case(tmp_path / dirty / "features.csv")
        assert set(good) <= set(wide)

    failed_cases = {c for c, (status, _, _) in {**expected3, **expected2}.items() if status == "failed"}
    wide3 = _lines_by_case(tmp_path / "dirty3d" / "features.csv")
    assert not failed_cases & set(wide3), "a failed case has a features row"

    n_bad = len(expected3) + len(expected2)
    print(f"\nbad inputs (case level): {n_bad}, handled with a clear ledger row: {n_bad - len(unclear)}, "
          f"good cases lost or changed: {len(lost_or_changed)}")
    assert not unclear, "\n".join(unclear)
    assert not lost_or_changed, lost_or_changed


# --- configuration errors: exit 2 before any work ---------------------------------------------------------


def _recipe(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("name", "recipe", "words"),
    [
        ("misspelt key", "name: x\ndataset: cohort\nextract:\n  min_voxel: 5\n",
         ["unknown key", "min_voxel", "misspelt"]),
        ("misspelt pyradiomics setting", "name: x\ndataset: cohort\nextract:\n  setting:\n    binwidth: 5\n",
         ["binwidth"]),
        ("dataset folder missing", "name: x\ndataset: no_such_folder\n", ["no_such_folder"]),
        ("not YAML", "name: x\ndataset: [cohort\n", ["not valid YAML", "line"]),
    ],
)
def test_recipe_errors_exit_2_naming_the_key(tmp_path, name, recipe, words):
    make_good_3d(tmp_path / "cohort")
    path = _recipe(tmp_path / "recipe.yaml", recipe)
    for command in (["validate", str(path)], ["extract", str(tmp_path / "cohort"), "--recipe", str(path),
                                              "--out", str(tmp_path / "out")]):
        if name == "dataset folder missing" and command[0] == "extract":
            continue  # extract takes the dataset from its argument, not from the recipe
        result = runner.invoke(app, command)
        assert result.exit_code == 2, (name, command[0], result.output)
        assert "Traceback" not in result.output
        flat = " ".join(result.output.split())
        assert all(word in flat for word in words), (name, result.output)
    assert not (tmp_path / "out" / "features.csv").exists()


def test_datasets_yaml_root_that_does_not_exist_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("RADPIPE_DATA", str(tmp_path / "nowhere"))
    result = runner.invoke(app, ["extract", "pyradiomics_samples", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    flat = " ".join(result.output.split())
    assert "does not exist" in flat and "nowhere" in flat and "datasets.pyradiomics_samples.root" in flat
    assert "Traceback" not in result.output


def test_validate_lists_the_cohort_problems(corpus):
    root, clean3, dirty3, expected3, *_ = corpus
    recipe = _recipe(root / "dirty.yaml", f"name: dirty\ndataset: {dirty3}\nmodel:\n  positive_class: b\n")
    result = runner.invoke(app, ["validate", str(recipe)])
    assert result.exit_code == 1, result.output
    flat = " ".join(result.output.split())
    for case_id in ("dup", "lonely", "ghost"):
        assert case_id in flat
    assert "Traceback" not in result.output


def test_cohort_folder_copy_is_independent_of_case_order(corpus, tmp_path):
    """The cohort's own bytes decide a good case's row, not its neighbours: a copy with one good case gives
    that case's line unchanged."""
    root, clean3, *_ = corpus
    single = tmp_path / "single"
    for sub in ("images", "masks"):
        (single / sub).mkdir(parents=True)
        shutil.copy(clean3 / sub / "good02.nii.gz", single / sub / "good02.nii.gz")
    assert _extract(single, tmp_path / "one").exit_code == 0
    assert _extract(clean3, tmp_path / "all").exit_code == 0
    one = _lines_by_case(tmp_path / "one" / "features.csv")
    every = _lines_by_case(tmp_path / "all" / "features.csv")
    assert one["good02"] == every["good02"] and one["<header>"] == every["<header>"]


@pytest.mark.slow  # about 25 s: trains a small model
def test_run_recipe_over_a_cohort_with_bad_cases_trains_on_the_good_ones(tmp_path):
    """`radpipe run` goes on past failed cases and unusable labels, and exits 1 naming them in qc.csv."""
    cohort = tmp_path / "cohort"
    for index in range(12):
        write_case(cohort, f"case{index:02d}", seed=index, radius=4.0 + 2.0 * (index % 2) + 0.2 * index)
    write_case(cohort, "trunc", seed=40)
    _truncate(cohort / "images" / "trunc.nii.gz")
    write_case(cohort, "empty", seed=41, mask_array=np.zeros(SIZE, np.uint8))
    rows = [f"case{i:02d},{'b' if i % 2 else 'a'}" for i in range(12)] + ["trunc,a", "empty,b", "case99,a"]
    rows[0] = "case00,maybe"
    (cohort / "labels.csv").write_bytes(("\ufeffcase_id,label\r\n" + "\r\n".join(rows) + "\r\n").encode())
    recipe = _recipe(tmp_path / "recipe.yaml", f"""name: bad
dataset: {cohort}
extract:
  setting: {{binWidth: 10}}
model:
  models: [rf]
  positive_class: b
  outer_folds: 2
  inner_folds: 2
  bootstrap: 20
  select_k: 5
""")
    result = runner.invoke(app, ["run", str(recipe), "--out", str(tmp_path / "out"), "--no-explain"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    qc = pd.read_csv(tmp_path / "out" / "features" / "qc.csv", dtype=str, keep_default_na=False)
    by_case = {case_id: set(rows["action"]) for case_id, rows in qc.groupby("case_id")}
    assert {"rejected"} == by_case["trunc"] == by_case["empty"]
    assert "unknown_label" in by_case["case00"] and "not_paired" in by_case["case99"]
    predictions = pd.read_csv(tmp_path / "out" / "models" / "predictions.csv", dtype={"case_id": str})
    assert set(predictions["case_id"]) == {f"case{i:02d}" for i in range(1, 12)}


def test_binary_outcome_flags_a_third_label_value(tmp_path):
    """With positive_class set the outcome is binary: a third value (here a case-variant typo) is left out."""
    from radpipe.cohort import discover
    from radpipe.config import DatasetSpec

    for index in range(6):
        write_case(tmp_path, f"case{index}", seed=index)
    labels = ["malignant", "benign", "malignant", "benign", "benign", "Malignant "]
    (tmp_path / "labels.csv").write_text("case_id,label\n" + "".join(
        f"case{i},{value}\n" for i, value in enumerate(labels)))
    cohort = discover("t", DatasetSpec(root=tmp_path, positive_class="malignant"))
    assert [(p.case_id, p.status, p.action) for p in cohort.problems] == [("case5", "fixed", "unknown_label")]
    assert "'Malignant'" in cohort.problems[0].reason and "benign, malignant" in cohort.problems[0].reason
    assert cohort.labels.to_dict() == dict(zip([f"case{i}" for i in range(5)], labels[:5], strict=True))
