"""Helpers for the magnitude-pruning study of the seed report's VGG on CIFAR-10.

Modules, in pipeline order: ``config`` (profiles), ``data`` (CIFAR-10 sources, cache, splits,
augmentation), ``model`` (the VGG), ``criteria`` (weight -> keep-mask), ``masks`` (applying
masks to a model), ``counting`` (what is left), ``evaluation`` and ``training``,
``recovery`` (prune, measure, recalibrate, fine-tune), ``sensitivity`` (per-layer scans),
``allocation`` (budgets over layers), ``compact`` and ``latency`` (real speed), ``artifacts``
and ``runs`` (keyed results, run directories), ``steps`` and ``experiments`` (the notebooks'
steps), ``distributions``, ``tables`` and ``plots`` (what the notebooks show), ``model_files``,
``report`` (papermill runner, HTML), ``staleness`` (which stored results this code would not
reuse) and ``original`` (the original report's numbers).
"""

__version__ = "0.2.0"
