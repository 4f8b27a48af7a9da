"""Registration: align one image to another (SimpleITK, ITKv4) and carry the moving image and its mask onto the
fixed image's grid, with a QC row that fails a diverged or misplaced registration. Sits before extraction and
imports no other radpipe stage."""

from radpipe.register.core import (
    QC_COLUMNS,
    RegistrationResult,
    dice,
    displace_image,
    map_modality,
    mask_to_moving,
    register_images,
    resample_mask,
    roi_points,
    target_registration_error,
    transform_points,
)
from radpipe.register.settings import RegistrationSettings, registration_settings

__all__ = [
    "QC_COLUMNS", "RegistrationResult", "RegistrationSettings", "dice", "displace_image", "map_modality",
    "mask_to_moving",
    "register_images", "registration_settings", "resample_mask", "roi_points", "target_registration_error",
    "transform_points",
]
