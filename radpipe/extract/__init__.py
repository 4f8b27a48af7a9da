"""Extract stage: read images and masks, check and preprocess them, run pyradiomics, write tables."""
