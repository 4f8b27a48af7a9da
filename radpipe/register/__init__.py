"""Registration: align one image to another (SimpleITK, ITKv4) and carry the moving image and its mask onto the
fixed image's grid, with a QC row that fails a diverged or misplaced registration. Sits before extraction and
imports no other radpipe stage.

Names are imported on first use, so ``radpipe.config`` can read :class:`RegistrationSettings` without loading
SimpleITK.
"""

from radpipe._lazy import lazy_exports

_CORE = "radpipe.register.core"
_EXPORTS = {
    "QC_COLUMNS": _CORE, "RegistrationResult": _CORE, "dice": _CORE, "displace_image": _CORE,
    "map_modality": _CORE, "mask_to_moving": _CORE, "register_images": _CORE, "resample_mask": _CORE,
    "roi_points": _CORE, "target_registration_error": _CORE, "transform_points": _CORE,
    "RegistrationSettings": "radpipe.register.settings", "registration_settings": "radpipe.register.settings",
    "write_overlay": "radpipe.register.overlay", "register_files": "radpipe.register.files",
}

__getattr__, __dir__, __all__ = lazy_exports("radpipe.register", _EXPORTS)
