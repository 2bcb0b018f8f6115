"""Helpers for the magnitude-pruning study of the seed report's VGG on CIFAR-10.

Modules, in pipeline order: ``config`` (profiles), ``data`` (CIFAR-10 sources, cache,
augmentation), ``model`` (the VGG), ``pruners`` (criteria, masks, counts), ``train``
(training, evaluation, BatchNorm recalibration), ``sensitivity`` (per-layer scans), ``runs``
(run directories and artifacts), ``study`` (the notebooks' steps), ``plots`` (figures),
``original`` (the original report's published numbers).
"""

__version__ = "0.1.0"
