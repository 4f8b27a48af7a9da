"""Feature robustness: perturbed images and masks (Zwanenburg et al., Sci Rep 2019) and ICC per feature."""
