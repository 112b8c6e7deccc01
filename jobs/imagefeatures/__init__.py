"""Shared library of the Spark jobs: image decoding, the MobileNetV2 feature model,
the featurize / PCA / validate transformations and the small I/O helpers they need.

Shipped to EMR as a zip with ``--py-files``; the entrypoints in ``jobs/`` import it.
"""
