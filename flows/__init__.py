"""Thin pipeline stages: read params, call components, write what dvc.yaml declares."""
