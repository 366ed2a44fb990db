"""EulerNet model, pure torch: DIIRF, FCAM, Residual Pyramid, Eulerian input (``eulernet.py``), the registered
variants without torch (``variants.py``) and Ranger (``optim.py``). Import from the module that defines a name.

Checkpoints, preprocessing and scoring live in ``components.inference``.
"""
