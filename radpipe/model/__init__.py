"""Model stage: leakage-safe scikit-learn pipelines, nested CV, metrics with CIs, persistence."""
