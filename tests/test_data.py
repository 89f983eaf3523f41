import numpy as np
import pytest
import torch

from filterprune.data import load_dataset, make_loader, resolve_default_dataset
from filterprune.errors import UsageError


def test_embedded_digits_are_real_and_offline():
    d = load_dataset("digits")
    assert d.x_train.shape[1:] == (3, 32, 32) and d.x_train.dtype == torch.uint8
    assert len(d.x_train) + len(d.x_test) == 1797
    assert set(d.y_train.tolist()) == set(range(10))
    assert not d.flip  # a mirrored digit is another symbol
    again = load_dataset("digits")
    assert torch.equal(d.y_test, again.y_test)  # fixed split


def test_default_dataset_falls_back_to_embedded(tmp_path):
    name, notice = resolve_default_dataset(tmp_path)
    assert name == "digits" and "embedded" in notice


def test_real_cifar_subset_from_data_root(shared_data):
    d = load_dataset("cifar10", shared_data)
    assert d.x_train.shape == (5085, 3, 32, 32) and d.x_test.shape == (1017, 3, 32, 32)
    assert d.class_names[0] == "airplane" and d.flip
    assert resolve_default_dataset(shared_data) == ("cifar10", None)
    m = load_dataset("mnist", shared_data)
    assert m.x_train.shape == (8000, 1, 28, 28) and len(m.y_test) == 2000


def test_npz_dataset_and_augmented_loader(tmp_path):
    rng = np.random.default_rng(0)
    p = tmp_path / "toy.npz"
    np.savez(p, x=rng.integers(0, 255, (50, 16, 16), dtype=np.uint8), y=rng.integers(0, 3, 50))
    d = load_dataset(f"npz:{p}")
    assert d.x_train.shape == (40, 1, 16, 16) and d.num_classes == 3
    x, y = next(iter(make_loader(d, "train", 8, augment=True)))
    assert x.shape == (8, 1, 16, 16) and x.dtype == torch.float32


@pytest.mark.parametrize("content", [b"not a zip", b""])
def test_corrupt_npz_is_a_clear_error(tmp_path, content):
    p = tmp_path / "bad.npz"
    p.write_bytes(content)
    with pytest.raises(UsageError, match="not a readable npz"):
        load_dataset(f"npz:{p}")


def test_missing_dataset_offline_names_the_fix(tmp_path):
    with pytest.raises(UsageError, match="not found under .*--dataset digits"):
        load_dataset("svhn", tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()  # nothing left behind


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(UsageError, match="valid: .*cifar10.*digits"):
        load_dataset("imagenet")


def test_imagefolder(tmp_path):
    from PIL import Image

    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((40, 48, 3), 60 * i, np.uint8)).save(
                    tmp_path / split / cls / f"{i}.png"
                )
    d = load_dataset(f"imagefolder:{tmp_path}", workers=0)
    assert d.class_names == ["cat", "dog"] and len(d.y_train) == 6 and d.image_size == 32
    x, y = next(iter(make_loader(d, "test", 4)))
    assert x.shape == (4, 3, 32, 32) and y.tolist() == [0, 0, 0, 1]


def test_synthetic_data_comes_at_the_models_input_size_or_image_size():
    """Structure-only runs at a model's real size: the native input by default, --image-size honoured."""
    from filterprune.config import CompressConfig
    from filterprune.inputs import prepare

    data, spec, _ = prepare(
        CompressConfig.of(
            model="tv:mobilenet_v3_small", criterion="l1", sparsity=0.3, dataset="synthetic", epochs=0
        )
    )
    assert data.image_size == spec.image_size == 224 and tuple(data.x_train.shape[1:]) == (3, 224, 224)
    data, spec, _ = prepare(
        CompressConfig.of(
            model="resnet20", criterion="l1", sparsity=0.3, dataset="synthetic", image_size=48, epochs=0
        )
    )
    assert data.image_size == spec.image_size == 48
