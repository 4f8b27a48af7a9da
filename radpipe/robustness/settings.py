"""The ``robustness:`` section of a recipe: which perturbations to combine, and how ICC decides robustness.

The perturbations follow Zwanenburg et al., Sci Rep 2019;9:614 and combine as a grid: every rotation with
every translation, every noise repeat, every volume change and every contour repeat gives one perturbed version
of each case.
"""

from __future__ import annotations

import itertools
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ICC_TYPES = ("ICC1", "ICC2", "ICC3")


class RobustnessSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rotation: list[float] = Field(
        default_factory=lambda: [0.0],
        description="Angles in degrees, about the axial (z) axis through the ROI centroid; 0 keeps the image.")
    translation: list[float] = Field(
        default_factory=lambda: [0.0],
        description="Shifts as fractions of the voxel spacing, applied along every axis at once (0.5 = half "
        "a voxel in x, y and z).")
    noise_repeats: int = Field(
        0, ge=0, description="Versions with added Gaussian noise at the image's estimated noise level; 0 adds none.")
    volume: list[float] = Field(
        default_factory=lambda: [0.0],
        description="ROI volume changes as fractions (-0.1 shrinks by 10%, 0.1 grows by 10%).")
    contour_repeats: int = Field(
        0, ge=0, description="Versions whose boundary supervoxels (SLIC) are randomly added or removed; 0: none.")
    supervoxel_voxels: int = Field(
        30, ge=4, description="Mean supervoxel size in voxels for contour randomisation.")
    icc: Literal["ICC1", "ICC2", "ICC3"] = Field(
        "ICC1", description="ICC used for the robust flag: ICC1 = ICC(1,1), one-way random (as Zwanenburg 2019: "
        "perturbations are not the same 'raters' for every case); ICC2 = ICC(2,1) absolute agreement; ICC3 = "
        "ICC(3,1) consistency.")
    threshold: float = Field(
        0.75, ge=-1.0, le=1.0, description="A feature is robust when the lower 95% CI bound of its ICC reaches this.")
    seed: int = Field(42, description="Seed of the noise and contour randomisation (per case and version).")

    @field_validator("rotation", "translation", "volume")
    @classmethod
    def _not_empty(cls, values: list[float]) -> list[float]:
        if not values:
            raise ValueError("give at least one value (0 keeps the image or ROI as it is)")
        return values

    @field_validator("volume")
    @classmethod
    def _volume_range(cls, values: list[float]) -> list[float]:
        if any(v <= -1.0 for v in values):
            raise ValueError("a volume change of -100% or less leaves no ROI; use fractions above -1")
        return values

    def image_grid(self) -> list[tuple[float, float, int]]:
        """(angle, shift, noise repeat) per perturbed image; repeat -1 means no noise."""
        repeats = list(range(self.noise_repeats)) or [-1]
        return list(itertools.product(self.rotation, self.translation, repeats))

    def mask_grid(self) -> list[tuple[float, int]]:
        """(volume change, contour repeat) per perturbed mask on an image; repeat -1 keeps the contour."""
        repeats = list(range(self.contour_repeats)) or [-1]
        return list(itertools.product(self.volume, repeats))

    @property
    def n_versions(self) -> int:
        return len(self.image_grid()) * len(self.mask_grid())
