"""Configuration mistakes are reported before any work, naming the file, the key and what was expected."""

from __future__ import annotations

import pytest

from radpipe.config import REPO_ROOT, load_datasets, load_recipe, resolve_dataset
from radpipe.errors import ConfigError


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_recipes_and_datasets_validate():
    for path in (REPO_ROOT / "radpipe" / "recipes" / "demo.yaml", REPO_ROOT / "pipelines" / "busi.yaml",
                 REPO_ROOT / "pipelines" / "sts_pet.yaml"):
        recipe = load_recipe(path)
        name = path.stem
        assert recipe.name == name
        assert recipe.extract.pyradiomics_params()["setting"]["additionalInfo"] is False
    assert {"busi", "sts_pet", "pyradiomics_samples"} <= set(load_datasets())


def test_misspelt_recipe_key_names_file_and_key(tmp_path):
    path = write(tmp_path, "r.yaml", "name: x\ndataset: d\nmodel:\n  outer_fold: 5\n")
    with pytest.raises(ConfigError) as info:
        load_recipe(path)
    message = str(info.value)
    assert str(path) in message and "model.outer_fold" in message and "unknown key" in message


def test_misspelt_pyradiomics_setting_is_an_error(tmp_path):
    path = write(tmp_path, "r.yaml", "name: x\ndataset: d\nextract:\n  setting:\n    binwidth: 25\n")
    with pytest.raises(ConfigError) as info:
        load_recipe(path)
    assert "binwidth" in str(info.value) and str(path) in str(info.value)


def test_unknown_feature_class_and_feature_are_errors(tmp_path):
    path = write(tmp_path, "r.yaml", "name: x\ndataset: d\nextract:\n  featureClass:\n    glcmm: []\n")
    with pytest.raises(ConfigError, match="unknown feature class 'glcmm'"):
        load_recipe(path)
    path = write(tmp_path, "r2.yaml", "name: x\ndataset: d\nextract:\n  featureClass:\n    glcm: [Contrastt]\n")
    with pytest.raises(ConfigError, match="'Contrastt' is not a glcm feature"):
        load_recipe(path)


def test_params_file_in_pyradiomics_format_is_taken_unchanged(tmp_path):
    params = write(tmp_path, "params.yaml", "setting:\n  binWidth: 5\nimageType:\n  LoG:\n    sigma: [1.0, 2.0]\n")
    path = write(tmp_path, "r.yaml", f"name: x\ndataset: d\nextract:\n  params_file: {params.name}\n")
    resolved = load_recipe(path).extract.pyradiomics_params()
    assert resolved["setting"]["binWidth"] == 5
    assert resolved["imageType"] == {"LoG": {"sigma": [1.0, 2.0]}}


def test_invalid_yaml_reports_line(tmp_path):
    path = write(tmp_path, "r.yaml", "name: x\ndataset: [unclosed\n")
    with pytest.raises(ConfigError, match="line"):
        load_recipe(path)


def test_dataset_root_that_does_not_exist(tmp_path):
    datasets = write(tmp_path, "datasets.yaml", "datasets:\n  gone:\n    root: /no/such/folder\n")
    with pytest.raises(ConfigError) as info:
        resolve_dataset("gone", datasets_file=datasets)
    assert "datasets.gone.root" in str(info.value) and "does not exist" in str(info.value)


def test_unknown_dataset_lists_known_ones(tmp_path):
    datasets = write(tmp_path, "datasets.yaml", "datasets:\n  one:\n    root: .\n")
    with pytest.raises(ConfigError, match=r"known: one"):
        resolve_dataset("two", datasets_file=datasets)


def test_misspelt_dataset_key(tmp_path):
    datasets = write(tmp_path, "datasets.yaml", "datasets:\n  one:\n    root: .\n    label_colum: y\n")
    with pytest.raises(ConfigError, match="datasets.one.label_colum"):
        load_datasets(datasets)


def test_copied_extract_settings_build_their_own_pyradiomics_params(tmp_path):
    from radpipe.extract.settings import ExtractSettings

    params = tmp_path / "lab.yaml"
    params.write_text("setting:\n  binWidth: 5\nimageType:\n  LoG:\n    sigma: [2.0]\n")
    original = ExtractSettings(setting={"binWidth": 25})
    assert original.pyradiomics_params()["setting"]["binWidth"] == 25  # built and kept
    copied = original.model_copy(update={"params_file": params, "setting": {}})
    assert copied.pyradiomics_params()["setting"]["binWidth"] == 5
    assert copied.pyradiomics_params()["imageType"] == {"LoG": {"sigma": [2.0]}}
    assert original.pyradiomics_params()["setting"]["binWidth"] == 25


def test_registry_search_order_and_its_examples(tmp_path, monkeypatch):
    import doctest

    import radpipe.config as config

    monkeypatch.delenv("RADPIPE_DATASETS", raising=False)
    checkout, study, work = tmp_path / "checkout", tmp_path / "study", tmp_path / "work" / "deep"
    for folder in (checkout, study, work):
        folder.mkdir(parents=True)
    for folder in (checkout, study, tmp_path / "work"):
        (folder / "datasets.yaml").write_text("datasets: {}\n")
    monkeypatch.setattr(config, "CHECKOUT_ROOT", checkout)
    monkeypatch.chdir(work)
    assert config.find_datasets_file() == tmp_path / "work" / "datasets.yaml"  # a parent of the working folder
    assert config.find_datasets_file(start=study) == study / "datasets.yaml"  # the recipe's folder comes first
    (tmp_path / "work" / "datasets.yaml").unlink()
    assert config.find_datasets_file() == checkout / "datasets.yaml"  # the checkout's comes last
    monkeypatch.setattr(config, "CHECKOUT_ROOT", None)
    assert config.find_datasets_file() is None  # an installed package has no registry of its own
    monkeypatch.setenv("RADPIPE_DATASETS", str(study / "datasets.yaml"))
    assert config.find_datasets_file() == study / "datasets.yaml"
    assert config.find_datasets_file(checkout / "datasets.yaml") == checkout / "datasets.yaml"  # explicit wins
    monkeypatch.setenv("RADPIPE_DATASETS", str(tmp_path / "gone.yaml"))
    with pytest.raises(ConfigError, match=r"gone\.yaml.*RADPIPE_DATASETS"):
        config.find_datasets_file()
    monkeypatch.delenv("RADPIPE_DATASETS")
    assert doctest.testmod(config).failed == 0


def test_radpipe_data_has_a_default_only_in_a_checkout(tmp_path, monkeypatch):
    import radpipe.config as config

    monkeypatch.delenv("RADPIPE_DATA", raising=False)
    registry = write(tmp_path, "datasets.yaml", "datasets:\n  pet:\n    root: ${RADPIPE_DATA}/pet\n")
    assert load_datasets(registry)["pet"].root == (REPO_ROOT.parent / "shared" / "data" / "pet").resolve()
    monkeypatch.setattr(config, "CHECKOUT_ROOT", None)
    with pytest.raises(ConfigError) as info:
        load_datasets(registry)
    assert str(registry) in str(info.value) and "RADPIPE_DATA is not set" in str(info.value)
    monkeypatch.setenv("RADPIPE_DATA", str(tmp_path))
    assert load_datasets(registry)["pet"].root == tmp_path / "pet"
