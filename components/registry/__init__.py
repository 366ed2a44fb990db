"""MLflow model registry flow for EulerNet checkpoints.

``registry.register(checkpoint_path, name, metrics, threshold=None, tags=None, ...) -> version`` (alias
``candidate``), ``registry.promote(name, metric="acer", force=False, version=None) -> Decision``,
``registry.rollback(name) -> (from_version, to_version)``, ``registry.load_champion(name) -> (Predictor, info)``;
``pyfunc.EulerNetPyfunc`` is the pyfunc flavour. Nothing is imported here: ``import components.registry`` stays cheap.
"""
