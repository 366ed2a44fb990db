"""Inference: the config that travels with the weights (``config.py``), the checkpoint format (``checkpoint.py``),
the tensor rules (``tensors.py``), the video head (``video_head.py``) and the one pipeline video -> faces -> clips ->
tensor -> map -> score (``predictor.py``) used by evaluate, serve, predict, the MLflow model and tests. Import from
the module that defines a name: importing the package loads nothing.

May import ``components.model`` (the network), ``components.labeling`` (face finding and cropping, the same code
labeling runs) and ``components.data`` (decoding).
"""
