"""Negative controls (voxels shuffled in the ROI, ROI moved elsewhere in the body, noise image), after bhklab's
READII: what a model learns when the lesion's texture or the lesion itself is taken away."""

from radpipe.controls.images import CONTROLS, body_mask, case_rng, move_roi, noise_image, shuffle_roi
from radpipe.controls.run import (
    NEGATIVE_CONTROLS_FILE,
    TEXTURE_CLASSES,
    control_cohort,
    cv_aucs,
    read_negative_controls,
    run_negative_controls,
    texture_columns,
)

__all__ = ["CONTROLS", "NEGATIVE_CONTROLS_FILE", "TEXTURE_CLASSES", "body_mask", "case_rng", "control_cohort",
           "cv_aucs", "move_roi", "noise_image", "read_negative_controls", "run_negative_controls",
           "shuffle_roi", "texture_columns"]
