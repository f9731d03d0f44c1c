"""From a loaded dataset source to the kept `ImageFactorData`: class choice, filter, subset, hash.

ContraLORD's stage 1 (Sec. 3.1) learns one code per kept image and one per class, so the kept subset
and the class factor define the embedding tables; the fingerprint ties a checkpoint to exactly that
data. Every loader returns a `Source` (labels first, images on demand), and `select` does the rest
identically for all formats: filter by factor values, draw `size` positions with
`numpy.random.default_rng(seed).choice(..., replace=False)`, sort them, then load only those images.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from contralord.data.core import DataError, ImageFactorData, LazyImages

HASH_CHUNK = 2**20  # bytes read at a time when hashing a file


@dataclass(frozen=True)
class Source:
    """A dataset before subsetting: per-item labels now, images on demand.

    Attributes:
        factors: int64 (N, F) factor value indices, or None.
        factor_names: the F names.
        factor_sizes: the F cardinalities.
        labels: int64 (N,) class ids when factors is None.
        num_labels: number of label classes when factors is None.
        default_class: factor name used as the class when `class_factor` is None.
        load: sorted positions (M,) -> uint8 images (M, C, S, S), a tensor or LazyImages.
        files: sorted positions (M,) -> [(name, path)] whose content the fingerprint hashes.
        meta: JSON-serialisable description (render parameters, class names) for the fingerprint.
    """

    load: Callable[[np.ndarray], torch.Tensor | LazyImages]
    factors: np.ndarray | None = None
    factor_names: tuple[str, ...] = ()
    factor_sizes: tuple[int, ...] = ()
    labels: np.ndarray | None = None
    num_labels: int = 0
    default_class: str | None = None
    files: Callable[[np.ndarray], list[tuple[str, Path]]] = lambda positions: []
    meta: Mapping[str, object] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.factors if self.factors is not None else self.labels)


def require_path(name: str, path: str | None, kind: str, what: str) -> Path:
    """Checks that `path` names an existing file (kind="file") or folder (kind="dir")."""
    if not path:
        raise DataError(f"data.path: dataset '{name}' needs a path to {what}; got {path!r}")
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"data.path: {p} does not exist (dataset '{name}' expects {what})")
    if (kind == "dir") != p.is_dir():
        raise DataError(f"data.path: {p} is not a {'folder' if kind == 'dir' else 'file'} "
                        f"(dataset '{name}' expects {what})")
    return p


def require_single_split(name: str, split: str) -> None:
    """Formats without an official test split accept only split="train"."""
    if split != "train":
        raise DataError(f"data.split: dataset '{name}' has a single split 'train'; got {split!r}")


def require_train_or_test(name: str, split: str) -> None:
    """Formats that ship both splits accept split "train" or "test"."""
    if split not in ("train", "test"):
        raise DataError(f"data.split: '{name}' has splits 'train' and 'test'; got {split!r}")


def class_column(source: Source, name: str, class_factor: str | int | None) -> int | None:
    """Column of `source.factors` used as the class: by name, by index, or the default."""
    if source.factors is None:
        if class_factor is not None:
            raise DataError(f"data.class_factor: dataset '{name}' has no factors (its classes are "
                            f"its labels); got {class_factor!r}")
        return None
    choice = source.default_class if class_factor is None else class_factor
    if choice in source.factor_names:
        return source.factor_names.index(choice)
    if isinstance(choice, (int, str)) and str(choice).isdigit():
        if int(choice) < len(source.factor_names):
            return int(choice)
    raise DataError(f"data.class_factor: unknown factor {choice!r} for dataset '{name}'; valid: "
                    f"{', '.join(source.factor_names)} or an index < {len(source.factor_names)}")


def filter_positions(source: Source, name: str, factor_filter: Mapping[str, Sequence[int]] | None
                     ) -> np.ndarray:
    """Positions (sorted, int64) whose factor values all lie in the allowed lists."""
    if not factor_filter:
        return np.arange(len(source), dtype=np.int64)
    if source.factors is None:
        raise DataError(f"data.factor_filter: dataset '{name}' has no factors; got {dict(factor_filter)}")
    keep = np.ones(len(source), dtype=bool)
    for factor, values in factor_filter.items():
        if factor not in source.factor_names:
            raise DataError(f"data.factor_filter: unknown factor {factor!r} for dataset '{name}'; "
                            f"valid: {', '.join(source.factor_names)}")
        col = source.factor_names.index(factor)
        allowed = np.asarray(list(values))
        bad = [v for v in allowed.tolist() if not isinstance(v, int) or not 0 <= v < source.factor_sizes[col]]
        if bad:
            raise DataError(f"data.factor_filter: values {bad} of factor {factor!r} are not integers in "
                            f"[0, {source.factor_sizes[col]})")
        keep &= np.isin(source.factors[:, col], allowed)
    if not keep.any():
        raise DataError(f"data.factor_filter: {dict(factor_filter)} leaves 0 of {len(source)} images")
    return np.flatnonzero(keep).astype(np.int64)


def choose_subset(positions: np.ndarray, size: int, seed: int) -> np.ndarray:
    """`size` positions drawn without replacement by `seed`, sorted (all of them when size == 0)."""
    if size > len(positions):
        raise DataError(f"data.size: {size} images requested but only {len(positions)} remain "
                        f"(after data.factor_filter)")
    if size == 0:
        return positions
    return np.sort(np.random.default_rng(seed).choice(positions, size=size, replace=False))


def file_sha256(path: Path) -> str:
    """sha256 of a file's content, streamed in HASH_CHUNK pieces (a 3 GB file stays cheap)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(source: Source, header: Mapping[str, object], positions: np.ndarray) -> str:
    """sha256 over the header, the content of the source's files and the kept positions."""
    h = hashlib.sha256(json.dumps({**header, "meta": source.meta}, sort_keys=True).encode())
    for label, path in source.files(positions):
        h.update(f"{label}:{file_sha256(path)};".encode())
    h.update(positions.astype("<i8").tobytes())
    return h.hexdigest()


def select(source: Source, name: str, image_size: int, size: int, seed: int, split: str,
           class_factor: str | int | None, factor_filter: Mapping[str, Sequence[int]] | None,
           exclude: np.ndarray | None = None, at_most: bool = False) -> ImageFactorData:
    """Applies class choice, filter and subset to `source` and loads the kept images.

    ``exclude`` drops positions first (a held-out set excludes the training positions); with
    ``at_most`` a ``size`` larger than what remains keeps everything that remains.
    """
    col = class_column(source, name, class_factor)
    candidates = filter_positions(source, name, factor_filter)
    if exclude is not None:
        candidates = np.setdiff1d(candidates, np.asarray(exclude, dtype=np.int64))
    if at_most:
        size = min(size, len(candidates)) if size else 0
    positions = choose_subset(candidates, size, seed)  # (M,)
    images = source.load(positions)  # (M, C, S, S) uint8
    if col is None:
        factors, classes, num_classes = None, source.labels[positions], source.num_labels
    else:
        factors = torch.from_numpy(np.ascontiguousarray(source.factors[positions], dtype=np.int64))
        classes, num_classes = source.factors[positions, col], source.factor_sizes[col]
    header = {"name": name, "image_size": image_size, "split": split, "class_column": col}
    return ImageFactorData(
        name=name, images=images,
        classes=torch.from_numpy(np.ascontiguousarray(classes, dtype=np.int64)),
        factors=factors, factor_names=source.factor_names if col is not None else (),
        num_classes=int(num_classes), fingerprint=fingerprint(source, header, positions),
        factor_sizes=tuple(source.factor_sizes) if col is not None else (),
        positions=torch.from_numpy(positions.astype(np.int64)))
