"""Values that used to pass the checks and crash after training are refused before it (issue 18, class 6):
one line naming the key or file, exit 2, nothing written (the --out folder is never created) and every
file byte-identical. Weight files are loaded by the loaders training uses, with torch's weights_only
loader: a pickled object is refused and its payload never runs (marker file)."""

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from contralord.cli.main import main


def _sets(overrides):
    return [arg for k, v in overrides.items() for arg in ("--set", f"{k}={v}")]


def hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


def refused_before_work(tmp_path, capsys, overrides, needle) -> str:
    before = hashes(tmp_path)
    out = tmp_path / "run"
    assert main(["train", *_sets(overrides), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and "Traceback" not in err[0], err
    assert hashes(tmp_path) == before and not out.exists()
    return err[0]


@pytest.mark.parametrize("setting, needle", [
    ({"data.factor_filter": "floor_hue:3"}, "data.labelled_factors: factor 'floor_hue' takes only the value 3"),
    ({"eval.num_train": 2, "eval.num_test": 1}, "eval.num_train/eval.num_test"),
    ({"eval.num_train": 20, "eval.num_test": 5}, "must hold at least 10"),  # 5 test images, 10 hues
    ({"eval.grid_size": 3000}, "eval.grid_size: expected at most 64"),
    ({"run.seed": 2**64}, "run.seed: expected an int from 0 to 2**32 - 1"),
])
def test_config_that_fails_after_training__refused_before(tmp_path, tiny_overrides, capsys, setting, needle):
    refused_before_work(tmp_path, capsys, tiny_overrides | setting, needle)


@pytest.mark.parametrize("shape, needle", [((12, 8, 8, 5), "has 5 channels, expected 1 (grayscale) or 3"),
                                           ((12, 0, 0, 3), "with H == W >= 1")])
def test_images_the_evaluation_cannot_take__refused(tmp_path, tiny_overrides, capsys, shape, needle):
    path = tmp_path / "mine.npz"
    np.savez(path, images=np.zeros(shape, np.uint8), factors=np.stack([np.arange(12) % 3] * 2, 1))
    data = {"data.name": "factors_file", "data.path": path, "data.image_size": 32, "data.size": 0,
            "data.labelled_factors": "factor_0"}
    line = refused_before_work(tmp_path, capsys, tiny_overrides | data, needle)
    assert str(path) in line and "'images'" in line


@pytest.mark.parametrize("channels, kept, name", [(4, 3, "RGBA"), (2, 1, "LA")])
def test_images_with_alpha__the_alpha_dropped_with_a_warning_naming_the_file_and_key(tmp_path, channels, kept, name):
    from contralord.config import ContraLordConfig
    from contralord.setup import build_data

    path = tmp_path / "mine.npz"
    images = np.arange(12 * 8 * 8 * channels, dtype=np.int64).reshape(12, 8, 8, channels) % 251
    np.savez(path, images=images.astype(np.uint8), factors=np.stack([np.arange(12) % 3] * 2, 1))
    cfg = ContraLordConfig.from_overrides({"data.name": "factors_file", "data.path": str(path), "data.image_size": 8,
                                           "data.size": 0, "data.labelled_factors": "factor_0"})
    with pytest.warns(UserWarning, match=rf"{path}: key 'images' holds {name} images \({channels} channels\): the "
                                         r"alpha channel is dropped"):
        data = build_data(cfg)
    assert data.channels == kept
    assert np.array_equal(data.images[np.arange(12)].permute(0, 2, 3, 1).numpy(), images[..., :kept])


class Payload:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


KEYS = ["encoder.pretrained_path", "eval.lpips_weights", "eval.inception_weights"]


@pytest.mark.parametrize("key", KEYS)
def test_weight_file_with_wrong_keys__refused_naming_the_key(tmp_path, tiny_overrides, capsys, key):
    path = tmp_path / "weights.pt"
    torch.save({"not.a.layer": torch.zeros(2)}, path)
    line = refused_before_work(tmp_path, capsys, tiny_overrides | {key: path}, f"{key}: {str(path)!r}")
    assert "does not load into the module it is for" in line


@pytest.mark.parametrize("key", KEYS)
def test_weight_file_holding_a_pickled_object__refused_and_nothing_runs(tmp_path, tiny_overrides, capsys, key):
    path, marker = tmp_path / "weights.pt", tmp_path / "ran"
    torch.save({"layer": Payload(marker)}, path)
    line = refused_before_work(tmp_path, capsys, tiny_overrides | {key: path}, f"{key}: {str(path)!r} holds Python")
    assert "nothing was run" in line and not marker.exists()


def _car(side: int) -> np.ndarray:
    return np.zeros((side, side, 3, 24, 4), np.uint8)


def test_cars3d_mat_declaring_more_than_the_cap__refused_from_its_header(tmp_path, tiny_overrides, capsys):
    root = tmp_path / "cars"
    root.mkdir()
    scipy.io.savemat(root / "car_001.mat", {"im": _car(64)}, do_compression=True)  # 1.1 MiB inflated, ~1 KiB
    data = {"data.name": "cars3d", "data.path": root, "data.image_size": 32, "data.size": 0,
            "data.max_array_gib": 0.0005}
    line = refused_before_work(tmp_path, capsys, tiny_overrides | data, "car_001.mat: key 'im' declares shape")
    assert "over the cap data.max_array_gib" in line


def test_cars3d_mat_v73__one_line(tmp_path, tiny_overrides, capsys):
    import h5py

    root = tmp_path / "cars"
    root.mkdir()
    path = root / "car_001.mat"
    with h5py.File(path, "w", userblock_size=512) as f:  # MATLAB v7.3: HDF5 behind a 512-byte MATLAB header
        f["im"] = _car(8)
    header = io.BytesIO(b"MATLAB 7.3 MAT-file, created by a test".ljust(116) + b"\0" * 8 + b"\x00\x02IM")
    with open(path, "r+b") as f:
        f.write(header.getvalue())
    data = {"data.name": "cars3d", "data.path": root, "data.image_size": 32, "data.size": 0}
    refused_before_work(tmp_path, capsys, tiny_overrides | data, "car_001.mat is a MATLAB v7.3 (HDF5) file")


def test_corrupt_cached_stage1__one_line_naming_its_folder_before_out_is_made(tmp_path, tiny_overrides, capsys):
    from contralord.config import ContraLordConfig
    from contralord.latent_result import ARTIFACT, latent_key
    from contralord.setup import Setup, build_data

    cache = tmp_path / "cache"
    overrides = tiny_overrides | {"run.latent_cache": str(cache)}
    cfg = ContraLordConfig.from_overrides(overrides)
    data = build_data(cfg)
    artifact = cache / latent_key(Setup.of(cfg, data)) / ARTIFACT
    artifact.parent.mkdir(parents=True)
    artifact.write_bytes(b"PK\x03\x04 not a checkpoint")
    line = refused_before_work(tmp_path, capsys, overrides, "stage-1 artifact:")
    assert f"remove {artifact.parent} to retrain stage 1" in line


def test_out_with_a_name_too_long__one_line_naming_out(tmp_path, capsys):
    out = tmp_path / ("x" * 300) / "run"
    assert main(["train", "--preset", "smoke", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("contralord: error: --out: the name xxxx") and "300 bytes long" in err[0]
    assert list(tmp_path.iterdir()) == []
