"""The face path, shared by labeling, inference and serving: detectors and 68 landmarks (``landmarks.py``),
following a face between frames (``tracking.py``), the similarity-transform crop (``crop.py``) and cutting face
clips from frames (``clips.py``). Import from the module that defines a name.

What a new detector must implement (``landmarks.LandmarkBackend``, one class and one entry in
``landmarks.BACKENDS``): ``name``; ``detect(frame_rgb) -> list[Face]`` (largest first, 68 points in iBUG order);
``detect_boxes(frame_rgb, upsample=None) -> [(box, score)]`` and ``landmarks_for_boxes(frame_rgb, boxes, scores)``
(the tracker searches a window with the first and seeds the second); ``__reduce__`` (Ray pickles backends to its
workers: rebuild from the constructor's arguments). May import: ``data``; never labeling, serving or training.
"""
