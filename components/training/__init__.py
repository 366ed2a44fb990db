"""training: Ray Train (V2) worker loop (``loop.py``) and driver (``driver.py``), tracked in MLflow from rank 0;
``TrainConfig`` in ``config.py`` (a dataclass: no torch, no Ray). Import from the module that defines a name.
"""
