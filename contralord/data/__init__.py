"""ContraLORD data layer: datasets as uint8 image tables with classes and ground-truth factors.

See `registry.build_dataset` for the entry point and `formats.py` for the generic factors file format.
"""

from contralord.data.core import DataError, ImageFactorData, LazyImages
from contralord.data.registry import DATASET_NAMES, build_dataset

__all__ = ["DATASET_NAMES", "DataError", "ImageFactorData", "LazyImages", "build_dataset"]
