"""benchmark: end-to-end quality benchmarks built from the pipeline's own stages (no work at import)."""
