"""Settings of image registration (``radpipe register`` and a dataset's ``register_to:``), validated by pydantic.

Every number that changes a registration result lives here, so a methods section can be written from it and a
misspelt key is an error, not a silent default.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from radpipe.errors import ConfigError


class RegistrationSettings(BaseModel):
    """How one image is registered to another (SimpleITK's ITKv4 framework).

    Examples
    --------
    >>> from radpipe.register import RegistrationSettings
    >>> RegistrationSettings(transform="affine", metric="ms").shrink_factors
    [4, 2, 1]
    """

    model_config = ConfigDict(extra="forbid")

    transform: Literal["rigid", "affine", "bspline"] = Field(
        "rigid", description="rigid (rotation + translation), affine (also scaling and shear; starts from the rigid "
        "result) or bspline (a free-form deformation on a control-point grid, starts from the affine result).")
    metric: Literal["mi", "ms"] = Field(
        "mi", description="mi: Mattes mutual information, for images of different modalities (PET to MR, CT to MR); "
        "ms: mean squares, for two images of the same modality and intensity scale.")
    histogram_bins: int = Field(32, ge=8, le=256, description="Joint histogram bins of Mattes mutual information.")
    sampling_percentage: float = Field(
        0.25, gt=0, le=1, description="Share of the fixed image's voxels, drawn at random, on which the metric is "
        "evaluated at each level.")
    seed: int = Field(
        20260, ge=0, description="Seed of the random metric sampling, so that the same inputs give the same "
        "transform on every run.")
    shrink_factors: list[int] = Field(
        default_factory=lambda: [4, 2, 1], description="Multi-resolution pyramid: each level's downsampling of the "
        "images, coarse to fine. The usual ITK choice; the coarsest level (~2 cm voxels on PET) captures shifts of "
        "a centimetre. On STS MR-to-PET, [2, 1] or 24 or 16 histogram bins did no better (measured).")
    smoothing_sigmas_mm: list[float] = Field(
        default_factory=lambda: [4.0, 2.0, 0.0], description="Gaussian smoothing (mm) at each level of the pyramid.")
    iterations: int = Field(200, ge=1, description="Maximum optimizer iterations per pyramid level.")
    learning_rate: float = Field(
        2.0, gt=0, description="First step of the regular-step gradient descent at each level, in mm of shift "
        "(the optimizer scales come from the physical shift each parameter causes); halved whenever the "
        "direction turns back, and the level ends when it falls below 0.001.")
    initialise: Literal["geometry", "moments", "identity"] = Field(
        "identity", description="Start position: identity trusts the images' shared scanner frame (the centre of "
        "rotation is put at the fixed image's centre); geometry overlays the two image centres; moments overlays "
        "the intensity centres of mass.")
    bspline_grid_mm: float = Field(
        40.0, gt=0, description="bspline: control-point spacing (mm) of the deformation grid over the fixed image.")
    mask_interpolation: Literal["nearest", "linear"] = Field(
        "nearest", description="How a mask is carried onto the other grid: nearest neighbour, or linear then "
        "a 0.5 threshold (smoother edges when the target grid is finer).")
    min_dice: float = Field(
        0.5, ge=0, le=1, description="When both images have masks, a registration whose moved mask overlaps the "
        "fixed mask less than this (Dice) is a QC failure. 0.5 is two equal spheres whose centres are a third of a "
        "diameter apart; the same STS contour on the PET and the MR grid overlaps at 0.87 or more (resampling "
        "alone, measured), so a correct alignment stays well above it.")
    max_rotation_deg: float = Field(
        45.0, gt=0, description="A registration that rotates the image more than this is taken as diverged.")
    max_shift_mm: float = Field(
        50.0, gt=0, description="A registration that moves any ROI point farther than this from where the start "
        "position put it is taken as diverged.")
    max_scale: float = Field(
        1.5, gt=1, description="affine/bspline: a registration that stretches or shrinks the image by more than this "
        "factor along any axis is taken as diverged.")
    threads: int = Field(
        1, ge=1, description="ITK threads during the registration. With 1, the same inputs give a bit-identical "
        "transform; with more, the metric's partial sums are added in a varying order and the transform changes "
        "in its last digits (about 1e-9 mm, measured) from run to run.")

    @model_validator(mode="after")
    def _levels_match(self) -> RegistrationSettings:
        if len(self.shrink_factors) != len(self.smoothing_sigmas_mm):
            raise ValueError(f"shrink_factors ({len(self.shrink_factors)} levels) and smoothing_sigmas_mm "
                             f"({len(self.smoothing_sigmas_mm)} levels) must have one value per pyramid level")
        if not self.shrink_factors or any(f < 1 for f in self.shrink_factors):
            raise ValueError("shrink_factors must be whole numbers of at least 1, e.g. [4, 2, 1]")
        if any(s < 0 for s in self.smoothing_sigmas_mm):
            raise ValueError("smoothing_sigmas_mm must be 0 or more, e.g. [4, 2, 0]")
        return self


def registration_settings(values: RegistrationSettings | dict[str, Any] | None, *,
                          where: str = "registration") -> RegistrationSettings:
    """``values`` checked into :class:`RegistrationSettings`; a wrong key or value is a ConfigError naming it.

    Examples
    --------
    >>> registration_settings({"transform": "affine"}).transform
    'affine'
    >>> registration_settings({"trasnform": "affine"})
    Traceback (most recent call last):
    ...
    radpipe.errors.ConfigError: key 'registration.trasnform': unknown key (is it misspelt?); known keys: transform, ...
    """
    if isinstance(values, RegistrationSettings):
        return values
    try:
        return RegistrationSettings.model_validate(values or {})
    except ValidationError as exc:
        error = exc.errors()[0]
        prefix = where if where.endswith(("-", ".")) else f"{where}."  # "--" names a command-line option
        key = prefix + ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            known = ", ".join(RegistrationSettings.model_fields)
            raise ConfigError(f"unknown key (is it misspelt?); known keys: {known}", key=key) from None
        raise ConfigError(error["msg"], key=key) from None
