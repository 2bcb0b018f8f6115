"""CIFAR-10 as uint8 tensors: find the data, decode it once, cache it, split it, augment it.

Three sources hold the same 60,000 images (50,000 train, 10,000 test, 10 classes):

1. the official python batches (``cifar-10-batches-py/``), read by torchvision, which also
   downloads them when online;
2. an image-folder tree ``<dir>/train/<class>/*`` and ``<dir>/test/<class>/*`` (PNG or JPEG);
3. a ``.tar.gz`` / ``.tgz`` archive of such a tree (``train/`` and ``test/`` at the top, or inside
   one wrapping folder).

The first load decodes the source into ``<cache_dir>/cifar10-<key16>.pt`` (uint8 tensors), where
the key is a sha256 of the source's content, not its name; later loads are one ``torch.load``.
The validation split is carved from the training images at load time, ``val_size / 10`` per
class, chosen by a ``torch.Generator`` seeded with ``seed``.

Training reads batches as tensors: :func:`augment_batch` is the seed's
``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip(0.5)`` applied to a whole uint8 batch, and
:func:`to_float` the seed's ``ToTensor`` (``x / 255``, no normalisation).
:func:`make_synthetic_splits` generates a small image set with the same shapes for tests and the
smoke profile, so neither needs a dataset.

Modules, in load order:

* ``sources``: the source layouts, :func:`resolve_source`, DataSourceError and the how-to text;
* ``keys``: the content sha256 of a source (the cache key);
* ``decode``: batches, image folders and archives -> uint8 tensors, checking every image;
* ``cache``: the content-keyed ``.pt`` cache, written atomically;
* ``splits``: CLASSES, IMAGE_SHAPE, :class:`CifarSplits` and the stratified validation split;
* ``load``: the entry points :func:`load_splits` and :func:`load_cifar10`;
* ``augment``: :func:`to_float` and :func:`augment_batch`;
* ``synthetic``: :func:`make_synthetic_splits`.

The names below are the package's public API; import them from ``pruning_utils.data``.
"""

from .augment import CROP_PADDING, augment_batch, to_float
from .load import load_cifar10, load_splits
from .sources import SOURCE_ENV_VAR, DataSourceError
from .splits import CLASSES, IMAGE_SHAPE, CifarSplits
from .synthetic import make_synthetic_splits

__all__ = [
    "CLASSES",
    "CROP_PADDING",
    "IMAGE_SHAPE",
    "SOURCE_ENV_VAR",
    "CifarSplits",
    "DataSourceError",
    "augment_batch",
    "load_cifar10",
    "load_splits",
    "make_synthetic_splits",
    "to_float",
]
