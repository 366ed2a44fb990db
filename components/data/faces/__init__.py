"""Package data: real face images with their landmarks (``faces.json``) for the synthetic generator.

See ``build_faces.py`` for where each image comes from and how the folder is rebuilt.
"""
