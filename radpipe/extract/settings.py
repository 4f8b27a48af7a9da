"""The ``extract:`` section of a recipe: pyradiomics parameters plus radpipe's own per-case choices.

pyradiomics parameters are written exactly as in a pyradiomics params file (``setting``,
``imageType``, ``featureClass``), or loaded from one with ``params_file``, and validated with
pyradiomics' own schema, so a lab's existing settings carry over and a misspelt key is an error.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from radpipe.errors import ConfigError
from radpipe.extract.preprocess import PreprocessStep

# pyradiomics applies these itself; radpipe reads, checks and crops the images instead, and computes
# its own provenance diagnostics once from the file bytes (pyradiomics' additionalInfo hashes the
# image again per extraction).
_RADPIPE_OWNED_SETTINGS = {"additionalInfo": False}


class ExtractSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    params_file: Path | None = Field(
        None, description="A standard pyradiomics parameter file (YAML/JSON); path relative to the recipe."
    )
    setting: dict[str, Any] = Field(default_factory=dict, description="pyradiomics 'setting' (binWidth, force2D, ...).")
    imageType: dict[str, dict[str, Any]] = Field(  # noqa: N815 - pyradiomics' own key
        default_factory=dict, description="pyradiomics 'imageType' (Original, LoG, Wavelet, ...); default Original."
    )
    featureClass: dict[str, list[str] | None] = Field(  # noqa: N815 - pyradiomics' own key
        default_factory=dict, description="pyradiomics 'featureClass'; empty means every class."
    )
    label: int | None = Field(None, description="Mask label of the ROI; default the only non-zero label.")
    roi_name: str | None = Field(
        None, description="Structure name (or regex) to take from DICOM RTSTRUCT / SEG masks, e.g. 'GTV-1'."
    )
    min_voxels: int = Field(10, description="Masks with fewer ROI voxels are rejected.")
    roi_mode: Literal["single", "per_label", "per_component"] = Field(
        "single", description="One ROI per case, one per mask label, or one per connected component (lesion)."
    )
    aggregate: Literal["none", "largest", "volume_weighted_mean", "max"] = Field(
        "largest", description="How per-lesion rows become one row per patient for modelling."
    )
    extra_masks: str | None = Field(
        None, description="Glob (relative to the dataset root) of further lesion masks per case, with {case_id}."
    )
    reader_masks: str | None = Field(
        None, description="Glob (relative to the dataset root, with {case_id}) of several readers' masks of the same "
        "lesion, e.g. 'masks_r*/{case_id}.nii.gz': `radpipe robustness` extracts each and writes reader_icc.csv.")
    preprocessing: list[PreprocessStep] = Field(default_factory=list, description="SimpleITK steps, in order.")
    crop_for_filters: bool = Field(
        True, description="Crop to the mask box plus a per-axis margin in mm sized for the enabled filters."
    )
    geometry_tolerance: float = Field(1e-3, description="Image/mask geometry differences below this are fixed.")
    engine: Literal["pyradiomics", "mirp"] = Field(
        "pyradiomics", description="Feature engine: pyradiomics, or MIRP (IBSI-compliant; pip install \"radpipe[ibsi]\"), "
        "with settings mapped from this section (radpipe.extract.mirp_engine).")
    names: Literal["pyradiomics", "ibsi"] = Field(
        "pyradiomics", description="Feature column names: pyradiomics' (original_glcm_Contrast) or IBSI-style "
        "(cm_contrast_d1_3d_avg_fbs_w25; radpipe.extract.ibsi_names). The codebook keeps both.")
    interpolation: Literal["radpipe", "ibsi"] = Field(
        "radpipe", description="ibsi: every resample step follows the IBSI (grid size rounded up, centres aligned, "
        "mask linear >= 0.5, integer intensities rounded; radpipe.extract.ibsi_interpolation).")
    mirp: dict[str, Any] = Field(
        default_factory=dict, description="Further MIRP extract_features keywords (engine: mirp only), e.g. "
        "glcm_spatial_method: [3d_average].")
    intensity_unit: str | None = Field(
        None, description="Unit of the image intensities (HU, SUV, a.u.) for messages and reports; default: "
        "from the DICOM headers (HU for CT, SUV for PET converted to SUV), else a.u.")

    # (the inputs it was built from, the params): keyed, so model_copy(update=...) or an assignment never
    # hands out the parameters of the settings it was copied from
    _params_cache: tuple[str, dict] | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _ibsi_interpolation(self):
        if self.interpolation == "ibsi":
            for step in self.preprocessing:
                if step.step == "resample" and step.mode != "ibsi":
                    step.mode = "ibsi"
        return self

    def resolve_paths(self, base: Path, recipe_file: Path | None = None) -> None:
        """Make ``params_file`` absolute and validate the pyradiomics parameters now, not mid-run."""
        if self.params_file is not None and not self.params_file.is_absolute():
            self.params_file = (base / self.params_file).resolve()
        self.pyradiomics_params(source=str(recipe_file) if recipe_file else None)
        if self.interpolation == "ibsi":
            from radpipe.extract.ibsi_interpolation import check_bin_alignment

            setting = self.pyradiomics_params()["setting"]
            if any(setting.get("resampledPixelSpacing") or []):
                raise ConfigError("interpolation: ibsi applies to radpipe's resample step; remove "
                                  "resampledPixelSpacing and add {step: resample, spacing: [...]}",
                                  file=str(recipe_file) if recipe_file else None,
                                  key="extract.setting.resampledPixelSpacing")
            check_bin_alignment(setting, source=str(recipe_file) if recipe_file else None)
        if self.engine == "mirp":
            from radpipe.extract.mirp_engine import mirp_keywords, require_mirp

            require_mirp()
            mirp_keywords(self, source=str(recipe_file) if recipe_file else None)
        elif self.mirp:
            raise ConfigError("'mirp' settings need 'engine: mirp'", file=str(recipe_file) if recipe_file else None,
                              key="extract.mirp")

    def pyradiomics_params(self, source: str | None = None) -> dict:
        """The full pyradiomics parameter dict (params file, then the recipe's own keys on top), validated."""
        inputs = repr((str(self.params_file), self.setting, self.imageType, self.featureClass))
        if self._params_cache is not None and self._params_cache[0] == inputs:
            return copy.deepcopy(self._params_cache[1])
        params: dict[str, Any] = {"setting": {}, "imageType": {}, "featureClass": {}}
        if self.params_file is not None:
            if not self.params_file.exists():
                raise ConfigError("params file not found", file=source, key=f"extract.params_file ({self.params_file})")
            loaded = yaml.safe_load(self.params_file.read_text()) or {}
            for key, value in loaded.items():
                params[key] = value or {}
        params["setting"].update(self.setting)
        params["imageType"].update(self.imageType)
        params["featureClass"].update(self.featureClass)
        params["setting"].update(_RADPIPE_OWNED_SETTINGS)
        if not params["imageType"]:
            params["imageType"] = {"Original": {}}
        validate_pyradiomics_params(params, source=str(self.params_file or source))
        self._params_cache = (inputs, params)
        return copy.deepcopy(params)

    def fingerprint(self) -> str:
        """A canonical JSON string of everything that changes feature values (for the cache key)."""
        payload = {
            "params": self.pyradiomics_params(),
            "label": self.label,
            "roi_name": self.roi_name,
            "min_voxels": self.min_voxels,
            "roi_mode": self.roi_mode,
            "preprocessing": [step.model_dump(mode="json") for step in self.preprocessing],
            "crop_for_filters": self.crop_for_filters,
            "geometry_tolerance": self.geometry_tolerance,
        }
        if self.engine != "pyradiomics":  # keeps pyradiomics cache keys as they were
            payload.update(engine=self.engine, mirp=self.mirp)
        return json.dumps(payload, sort_keys=True, default=str)


def quiet_pyradiomics() -> None:
    """pyradiomics warns on stderr for every case ("GLCM is symmetrical…"); radpipe reports problems itself."""
    import radiomics

    radiomics.setVerbosity(logging.ERROR)


def validate_pyradiomics_params(params: dict, source: str | None = None) -> None:
    """Validate with pyradiomics' own schema and feature list; raise ConfigError naming the key."""
    from radiomics import featureextractor, getFeatureClasses, getImageTypes

    for image_type in params.get("imageType", {}):
        if image_type not in getImageTypes():
            raise ConfigError(
                f"unknown image type '{image_type}' (pyradiomics knows: {', '.join(sorted(getImageTypes()))})",
                file=source, key=f"imageType.{image_type}",
            )
    classes = getFeatureClasses()
    for feature_class, names in (params.get("featureClass") or {}).items():
        if feature_class not in classes:
            raise ConfigError(
                f"unknown feature class '{feature_class}' (pyradiomics knows: {', '.join(sorted(classes))})",
                file=source, key=f"featureClass.{feature_class}",
            )
        known = set(classes[feature_class].getFeatureNames())
        for name in names or []:
            if name not in known:
                raise ConfigError(
                    f"'{name}' is not a {feature_class} feature (known: {', '.join(sorted(known))})",
                    file=source, key=f"featureClass.{feature_class}",
                )
    quiet_pyradiomics()
    pykwalify_logger = logging.getLogger("pykwalify")
    previous = pykwalify_logger.level
    pykwalify_logger.setLevel(logging.CRITICAL)  # its own log repeats what we raise
    try:
        featureextractor.RadiomicsFeatureExtractor(copy.deepcopy(params))
    except Exception as exc:  # pykwalify.errors.SchemaError and friends
        raise ConfigError(f"pyradiomics rejected the parameters: {_schema_message(exc)}", file=source) from None
    finally:
        pykwalify_logger.setLevel(previous)


def _schema_message(exc: Exception) -> str:
    text = str(getattr(exc, "msg", exc)).strip()
    # pykwalify says "Key 'binwidth' was not defined. Path: '/setting'" — already names the key.
    return " ".join(text.split())
