"""Image folders streamed from disk at the model's input size, and safe decoding: only the formats we mean,
no decompression bombs, unreadable files skipped with a warning (never sinking the dataset)."""

import os
import struct
import zlib
from io import BytesIO

import numpy as np
import pytest
import torch
from PIL import Image

from filterprune.data import load_dataset, make_loader
from filterprune.data.stream import FolderData

EPS = (
    b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n%%EndComments\n"
    b"newpath 0 0 moveto 8 8 lineto stroke showpage\n%%EOF\n"
)


def _folder(root, n=3, size=(40, 56)):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                a = rng.integers(0, 255, (*size, 3)).astype(np.uint8)
                Image.fromarray(a).save(root / split / cls / f"{i}.jpg", quality=90)
    return root


def _png_header_only(w, h) -> bytes:
    """A PNG that declares w x h pixels (a decompression bomb's header) with one tiny data chunk."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def fake_gs(tmp_path, monkeypatch):
    """A stand-in Ghostscript on PATH that leaves a mark when anything runs it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    marker = tmp_path / "gs-was-called"
    (bin_dir / "gs").write_text(
        f'#!/bin/sh\ntouch {marker}\n[ "$1" = --version ] && echo 10.02.1 && exit 0\nexit 1\n'
    )
    (bin_dir / "gs").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return marker


def test_eps_named_png_never_reaches_ghostscript(tmp_path, fake_gs):
    folder = _folder(tmp_path / "imgs")
    (folder / "train" / "a" / "photo.png").write_bytes(EPS)
    with pytest.warns(UserWarning, match=r"skipped 1 file\(s\).*photo.png"):
        data = load_dataset(f"imagefolder:{folder}", image_size=32, workers=0)
    assert len(data.y_train) == 6
    for _ in make_loader(data, "train", 4, augment=True):
        pass
    assert not fake_gs.exists()
    # the control: unrestricted, PIL would have handed this very file to the `gs` on PATH
    with pytest.raises(Exception):  # noqa: B017  (the stand-in fails the conversion; it was called)
        Image.open(folder / "train" / "a" / "photo.png").load()
    assert fake_gs.exists()


def test_decompression_bomb_and_garbage_are_skipped_with_a_warning(tmp_path):
    folder = _folder(tmp_path / "imgs")
    (folder / "train" / "a" / "bomb.png").write_bytes(_png_header_only(30000, 30000))
    (folder / "train" / "b" / "big-but-declared.png").write_bytes(
        _png_header_only(9000, 9000)
    )  # 81 Mpx > 64 Mpx
    (folder / "train" / "b" / "notes.txt").write_text("not an image")
    with pytest.warns(UserWarning, match=r"skipped 3 file\(s\)"):
        data = FolderData(folder, image_size=32, workers=0)
    assert len(data.y_train) == 6 and data.y_train.tolist() == [0, 0, 0, 1, 1, 1]


def test_a_file_truncated_after_its_header_is_replaced_by_the_next_image(tmp_path):
    folder = _folder(tmp_path / "imgs")
    buf = BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3)).astype(np.uint8)).save(buf, "JPEG")
    (folder / "test" / "a" / "0.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    data = FolderData(folder, image_size=32, workers=0)
    with pytest.warns(UserWarning, match=r"skipping unreadable image .*0\.jpg"):
        batches = list(make_loader(data, "test", 6))
    assert sum(len(y) for _, y in batches) == 6 and batches[0][0].shape == (6, 3, 32, 32)


def test_streamed_at_the_requested_size_with_pretrained_stats_and_subset(tmp_path):
    folder = _folder(tmp_path / "imgs", n=5)
    data = FolderData(
        folder,
        image_size=48,
        resize_size=55,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        train_subset=4,
        workers=0,
    )
    assert len(data.y_train) == 4 and len(data.y_test) == 10 and data.mean == (0.5, 0.5, 0.5)
    x, _ = next(iter(make_loader(data, "train", 4, augment=True)))
    assert x.shape == (4, 3, 48, 48)
    x, _ = next(iter(make_loader(data, "test", 10)))
    raw = np.asarray(
        Image.open(folder / "test" / "a" / "0.jpg").convert("RGB")
    )  # 40x56: resize 55 short side
    assert x.shape == (10, 3, 48, 48) and torch.isfinite(x).all()
    assert x[0].mean().item() == pytest.approx(((raw / 255.0 - 0.5) / 0.25).mean(), abs=0.15)
    est = FolderData(folder, image_size=32, workers=0)  # no weights: estimated from a sample
    assert all(0.3 < m < 0.7 for m in est.mean) and all(0.05 < s < 0.35 for s in est.std)


def test_loader_workers_stream_in_other_processes(tmp_path):
    data = FolderData(_folder(tmp_path / "imgs"), image_size=32, workers=2)
    loader = make_loader(data, "train", 3, augment=True)
    assert loader.num_workers == 2 and sum(len(y) for _, y in loader) == 6


def test_run_onnx_preprocesses_as_the_folder_evaluation_did(tmp_path):
    """export/run_onnx.py (no torch) resizes the short side to the metadata's resize_size and center-crops,
    as FolderData's evaluation transform does; and it refuses other formats too."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "run_onnx", Path(__file__).parents[1] / "export" / "run_onnx.py"
    )
    run_onnx = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_onnx)
    folder = _folder(tmp_path / "imgs", n=1, size=(60, 80))
    data = FolderData(
        folder, image_size=32, resize_size=37, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), workers=0
    )
    x, _ = next(iter(make_loader(data, "test", 2)))
    mean = np.full((1, 3, 1, 1), 0.5, np.float32)
    std = np.full((1, 3, 1, 1), 0.25, np.float32)
    paths = [s for s, _ in data.test]
    y = run_onnx.load_images(paths, [-1, 3, 32, 32], mean, std, np.float32, resize=37)
    assert y.shape == (2, 3, 32, 32)
    assert np.abs(y - x.numpy()).mean() < 0.05  # PIL's vs torchvision's bilinear filter, same geometry
    squashed = run_onnx.load_images(
        paths, [-1, 3, 32, 32], mean, std, np.float32
    )  # plain resize: other geometry
    assert np.abs(squashed - x.numpy()).mean() > np.abs(y - x.numpy()).mean()
    (tmp_path / "photo.png").write_bytes(EPS)
    with pytest.raises(run_onnx.Usage, match="not a readable image"):
        run_onnx.load_images([str(tmp_path / "photo.png")], [-1, 3, 32, 32], mean, std, np.float32)


def test_validation_split_is_carved_from_training_files(tmp_path):
    data = FolderData(_folder(tmp_path / "imgs", n=10), image_size=32, workers=0)
    carved = data.carve_val(0.2, seed=0)
    assert len(carved.y_val) == 4 and len(carved.y_train) == 16 and carved.y_val.tolist() == [0, 0, 1, 1]
    assert not {p for p, _ in carved.val} & {p for p, _ in carved.train} and len(data.train) == 20
    assert (
        carved.val_digest()
        == data.carve_val(0.2, seed=0).val_digest()
        != data.carve_val(0.2, seed=1).val_digest()
    )
    assert sum(len(y) for _, y in make_loader(carved, "val", 3)) == 4


def test_small_photos_train_at_their_size_unless_pretrained_weights_expect_the_native_one(tmp_path, caplog):
    """A new user's 40x56 photos with an ImageNet-sized model: not upsampled to 224 behind their back."""
    import logging

    from filterprune.config import CompressConfig
    from filterprune.inputs import prepare

    root = _folder(tmp_path / "imgs")
    base = {
        "model": "tv:resnet18",
        "criterion": "l1",
        "sparsity": 0.3,
        "dataset": f"imagefolder:{root}",
        "workers": 0,
    }
    with caplog.at_level(logging.INFO, logger="filterprune"):
        data, spec, _ = prepare(CompressConfig.of(**base))
    assert data.image_size == spec.image_size == 40
    assert any("the images are about 40 px: training at 40" in r.getMessage() for r in caplog.records)
    data, spec, _ = prepare(CompressConfig.of(**base, image_size=64))  # asked: honoured, nothing said
    assert data.image_size == spec.image_size == 64
