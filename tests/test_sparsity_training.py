"""Network-slimming sparsity training visibly works on real CIFAR-10: the share of near-zero BN scales
rises with lambda; and compress can sparsity-train a given checkpoint before pruning."""

import json

import torch

from filterprune.cli import main
from filterprune.criteria.structured.slimming import small_gamma_share
from filterprune.data import ImageData, load_dataset
from filterprune.models import ModelSpec, build_model
from filterprune.train import TrainConfig, train


def test_share_of_small_gammas_rises_with_lambda(shared_data):
    full = load_dataset("cifar10", shared_data)
    data = ImageData(
        "cifar10",
        full.x_train[:512],
        full.y_train[:512],
        full.x_test[:64],
        full.y_test[:64],
        full.class_names,
        full.source,
        mean=full.mean,
        std=full.std,
    )
    shares, medians = [], []
    for lam in (0.0, 0.3, 1.0):  # strong: one short epoch must show it (realistic runs: benchmarks/)
        torch.manual_seed(0)
        model = build_model(ModelSpec("resnet20"))
        train(
            model, data, TrainConfig(epochs=1, batch_size=32, lr=0.1, sparsity_reg=lam), torch.device("cpu")
        )
        shares.append(small_gamma_share(model, 1e-2))
        gammas = torch.cat(
            [m.weight.detach().abs() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        )
        medians.append(float(gammas.median()))
    assert shares[0] < 0.01 and shares[2] > shares[0] + 0.5 and shares[1] >= shares[0]
    assert medians[0] > medians[1] > medians[2]


def test_compress_sparsity_trains_a_checkpoint_before_pruning(tmp_path):
    torch.manual_seed(0)
    from filterprune import serialization as ckpt

    ckpt.save(build_model(ModelSpec("resnet20")), tmp_path / "dense", ModelSpec("resnet20"))
    assert (
        main(
            [
                "compress",
                "resnet20",
                "--criterion",
                "slimming",
                "--sparsity",
                "0.4",
                "--dataset",
                "synthetic",
                "--checkpoint",
                str(tmp_path / "dense.json"),
                "--sparsity-reg",
                "0.5",
                "--sparsity-epochs",
                "1",
                "--lr",
                "0.1",
                "--finetune-epochs",
                "0",
                "--no-export",
                "--no-bench",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 0
    )
    r = json.loads((tmp_path / "o" / "report.json").read_text())
    assert len(r["baseline"]["sparsity_training"]["history"]) == 1
    assert r["baseline"]["sparsity_training"]["config"]["sparsity_reg"] == 0.5
