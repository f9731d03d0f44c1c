"""Bad input to ``contralord train`` (config values, --out, data files): one line on stderr, exit 2,
before any work, and nothing the user already has is modified (checked by file hashes).

The classes of bad input are listed in docs/BAD_INPUT.md; each has at least one case here or in
test_bad_inputs_eval.py, tests/sweeps/test_sweep_bad_flags.py, tests/ablations/test_make_tables_refusals.py.
"""

import hashlib
import json
import math
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from contralord.cli.main import main
from contralord.config import ContraLordConfig
from contralord.data import DataError, build_dataset
from contralord.training.loop import LoopSpec, NonFiniteLossError, run_loop
from contralord.training.tracking import NullLogger


def _sets(overrides):
    return [arg for k, v in overrides.items() for arg in ("--set", f"{k}={v}")]


def hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under root (the user's files a refused command must leave as they were)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


def refused(capsys, argv) -> str:
    """Run the CLI in-process; assert exit 2 with one line and no traceback; return that line."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def _factors_file(path: Path, n=40, classes=None, **extra):
    images = np.zeros((n, 8, 8), np.uint8)
    factors = np.stack([np.arange(n) % 4 if classes is None else classes, np.arange(n) % 5], 1)
    np.savez(path, images=images, factors=factors, **extra)
    return path


def _train_args(out, data_path, tiny, *extra):
    data = {"data.name": "factors_file", "data.path": data_path, "data.image_size": 32, "data.size": 0}
    return ["train", *_sets(tiny | data), *extra, "--out", str(out)]


@pytest.mark.parametrize("setting, needle", [
    ("encoder.queue_sise=5", "did you mean encoder.queue_size"),
    ("encoder.lr=inf", "encoder.lr: expected a finite float, got 'inf'"),
    ("latent.lr=nan", "latent.lr: expected a finite float"),
    ("loss.rec=-inf", "loss.rec: expected a finite float"),
])
def test_train__bad_value_names_key_and_suggests(tmp_path, tiny_overrides, capsys, setting, needle):
    line = refused(capsys, ["train", *_sets(tiny_overrides), "--set", setting, "--out", str(tmp_path / "o")])
    assert needle in line and len(line) < 300
    assert not (tmp_path / "o").exists()


def test_train__empty_out_is_refused(tiny_overrides, capsys):
    assert "--out: expected a folder path, got ''" in refused(capsys, ["train", *_sets(tiny_overrides), "--out", ""])


def test_train__out_that_is_a_file_is_untouched(tmp_path, tiny_overrides, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    before = hashes(tmp_path)
    assert "is a file" in refused(capsys, ["train", *_sets(tiny_overrides), "--out", str(tmp_path / "notes.txt")])
    assert "is a file" in refused(capsys, ["train", *_sets(tiny_overrides), "--out", str(tmp_path / "notes.txt/x")])
    assert hashes(tmp_path) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_train__unwritable_out_is_refused(tmp_path, tiny_overrides, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert "cannot write in" in refused(capsys, ["train", *_sets(tiny_overrides), "--out", str(locked / "run")])


def test_train__interrupted_run_config_is_not_overwritten(tmp_path, tiny_overrides, capsys):
    out = tmp_path / "run"
    out.mkdir()
    flat = ContraLordConfig.from_overrides(tiny_overrides).to_flat_dict()
    (out / "config.json").write_text(json.dumps(flat))  # a run interrupted before its first checkpoint
    before = hashes(tmp_path)
    line = refused(capsys, ["train", *_sets(tiny_overrides), "--set", "encoder.queue_size=41", "--out", str(out)])
    assert "already holds a run" in line and "--resume" in line
    line = refused(capsys, ["train", *_sets(tiny_overrides), "--set", "encoder.queue_size=41", "--out", str(out),
                            "--resume"])
    assert "encoder.queue_size: 40 in checkpoint vs 41 now" in line
    assert hashes(tmp_path) == before


def test_data__empty_and_text_npz_are_named_without_pickle_advice(tmp_path, tiny_overrides, capsys):
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "text.npz").write_text("images,factors\n1,2\n")
    for name in ("empty.npz", "text.npz"):
        line = refused(capsys, _train_args(tmp_path / "o", tmp_path / name, tiny_overrides))
        assert f"{name} is not a readable .npz archive" in line and "pickle" not in line, line
    assert not (tmp_path / "o").exists()


def test_data__zero_images_blames_the_file(tmp_path, tiny_overrides, capsys):
    path = tmp_path / "none.npz"
    np.savez(path, images=np.zeros((0, 8, 8), np.uint8), factors=np.zeros((0, 2), np.int64))
    line = refused(capsys, _train_args(tmp_path / "o", path, tiny_overrides))
    assert "key 'images' holds 0 images" in line and "batch_size" not in line


def _bomb(path: Path, shape, members=("images",)):
    """An .npz whose members declare `shape` uint8: zeros compress ~1000:1, a forged header costs nothing."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for member in members:
            header = {"descr": "|u1", "fortran_order": False, "shape": shape}
            with z.open(f"{member}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array_header_1_0(f, header)
                if math.prod(shape) < 2**28:
                    f.write(bytes(math.prod(shape)))
    return path


def test_data__deflate_bomb_refused_before_decompressing(tmp_path):
    path = _bomb(tmp_path / "bomb.npz", (1024, 512, 512))  # 256 MiB of zeros, ~260 KB on disk
    assert path.stat().st_size < 2**20
    with pytest.raises(DataError, match=r"key 'images' declares shape \(1024, 512, 512\) of uint8 = 0.25 GiB, "
                                        r"over the cap data.max_array_gib=0.0625"):
        build_dataset("factors_file", str(path), 32, 0, 0, max_array_bytes=2**26)


def test_data__forged_header_refused_with_the_numbers(tmp_path, tiny_overrides, capsys):
    path = _bomb(tmp_path / "forged.npz", (100_000_000, 64, 64))  # declares 381 GiB, holds nothing
    line = refused(capsys, _train_args(tmp_path / "o", path, tiny_overrides))
    assert "declares shape (100000000, 64, 64)" in line and "381 GiB" in line and "data.max_array_gib=16" in line


def test_data__huge_class_factor_refused_before_config_json(tmp_path, tiny_overrides, capsys):
    classes = np.arange(100) % 4
    classes[0] = 10**11  # a cardinality of 1e11: a 6.4 TB class-code table
    path = _factors_file(tmp_path / "f.npz", n=100, classes=classes)
    # the file is named where it is read, before any table is sized by the value (it used to be data.class_factor's
    # cardinality in GiB, which did not name the file)
    needle = f"{path}: key 'factors' column 0 holds the value 100000000000; values index a factor's classes"
    line = refused(capsys, _train_args(tmp_path / "o", path, tiny_overrides, "--set", "eval.protocol=all-factors"))
    assert needle in line
    assert not (tmp_path / "o").exists()
    line = refused(capsys, _train_args(tmp_path / "o", path, tiny_overrides, "--set",
                                       "data.labelled_factors=factor_0,factor_1"))
    assert needle in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("settings, needle", [
    ({"run.device": "cuda:999"}, "run.device: "),  # no CUDA here, or not 1000 GPUs
    ({"run.threads": 10**8}, "run.threads: expected at most"),
    ({"run.latent_cache": "{tmp}/notes.txt"}, "run.latent_cache: "),
    ({"encoder.pretrained_path": "{tmp}/notes.txt"}, "is not a torch weights file"),
    ({"latent.recon_loss": "perceptual", "latent.vgg_weights": "{tmp}/notes.txt"}, "latent.vgg_weights: "),
    ({"encoder.queue_size": 10**11, "encoder.allow_large_queue": "true"}, "encoder.queue_size: two queues of K="),
    ({"latent.content_dim": 10**10}, "latent.content_dim: 96 images x content_dim + residual_dim"),
])
def test_train__impossible_run_refused_before_config_json(tmp_path, tiny_overrides, capsys, settings, needle):
    (tmp_path / "notes.txt").write_text("not weights")
    before = hashes(tmp_path)
    settings = {k: str(v).replace("{tmp}", str(tmp_path)) for k, v in settings.items()}
    assert main(["train", *_sets(tiny_overrides | settings), "--out", str(tmp_path / "o")]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "UserWarning" not in line
           and not line.startswith("  ")]  # allow_large_queue=true warns, as documented
    assert len(err) == 1 and needle in err[0] and "Traceback" not in err[0], err
    assert hashes(tmp_path) == before and not (tmp_path / "o").exists()


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path(os.environ["PAYLOAD_MARKER"]),))


def test_data__pickle_payload_in_npz_never_runs(tmp_path, tiny_overrides, capsys, monkeypatch):
    marker = tmp_path / "payload-ran"
    monkeypatch.setenv("PAYLOAD_MARKER", str(marker))
    path = tmp_path / "evil.npz"
    np.savez(path, images=np.zeros((4, 8, 8), np.uint8), factors=np.array([[_Payload()]] * 4, dtype=object))
    assert pickle.dumps(_Payload())  # the payload is real: unpickling it would create the marker
    line = refused(capsys, _train_args(tmp_path / "o", path, tiny_overrides))
    assert "key 'factors' holds Python objects, which are never unpickled" in line
    assert not marker.exists()


def test_loop__nan_stops_at_once_and_saves_nothing():
    saved, values = [], iter([1.0, 0.5, float("nan"), 0.2])
    spec = LoopSpec("latent", epochs=2, steps_per_epoch=2, images_per_step=1)
    with pytest.raises(NonFiniteLossError, match=r"latent/train/total: nan at step 3 \(epoch 2\)"):
        run_loop(spec, 0, lambda e, s, g: {"total": next(values)}, lambda step: saved.append(step) or "",
                 NullLogger(), lambda metrics, path: None)
    assert saved == [2]  # the first epoch's checkpoint only; nothing after the NaN


def test_train__nan_stage1_is_one_line_and_caches_nothing(tmp_path, tiny_overrides, capsys):
    argv = ["train", *_sets(tiny_overrides | {"latent.lr": "1e38", "latent.epochs": 3}), "--out", str(tmp_path)]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "latent/train/" in err[0] and "Traceback" not in err[0], err
    assert not list(tmp_path.rglob("latent.pt"))  # no cached stage-1 artifact for a later run to reuse


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("side, needle", [
    (9000, r"b\.png: key 'image' declares shape \(9000, 9000, 3\) of uint8 = 0.226 GiB, over the cap"),
    (20000, r"b\.png: not a readable image \(DecompressionBombError"),  # past PIL's own limit
])
def test_data__image_bomb_refused_from_its_header(tmp_path, side, needle):
    from PIL import Image

    folder = tmp_path / "imgs" / "cat"
    folder.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(folder / "a.png")
    Image.new("1", (side, side)).save(folder / "b.png")  # 1-bit zeros: tiny on disk, huge as RGB
    assert (folder / "b.png").stat().st_size < 2**20
    with pytest.raises(DataError, match=needle):
        build_dataset("image_folder", str(tmp_path / "imgs"), 32, 0, 0, max_array_bytes=2**27)
