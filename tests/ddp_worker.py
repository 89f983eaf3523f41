"""Run by tests/test_distributed.py as ``torchrun --standalone --nproc_per_node 2 tests/ddp_worker.py OUT``:
the checks that need real ranks. Each rank writes what it saw to OUT/rank<R>.json and its trained weights
to OUT/<name>-rank<R>.safetensors; the test compares them."""

import json
import math
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from filterprune import distributed
from filterprune.data import ImageData
from filterprune.errors import RunError
from filterprune.models import ModelSpec, build_model
from filterprune.train import TrainConfig, train


def tiny_data(n: int, size: int) -> ImageData:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    y = torch.arange(n) % 10
    return ImageData("tiny", x, y, x[:2], y[:2], [str(i) for i in range(10)], "random", flip=False)


def main(out: Path) -> None:
    device = distributed.start(torch.device("cpu"), batch_size=8)
    r, seen = distributed.rank(), {}
    # one SGD step on the global batch of 8 (4 images per rank), from weights that differ per rank: DDP
    # must start every rank from rank 0's weights and average the gradients of both halves
    torch.manual_seed(100 + r)
    mlp = build_model(ModelSpec("mlp", 10, 3, 8))
    train(mlp, tiny_data(8, 8), TrainConfig(epochs=1, batch_size=8, augment=False), device, desc="step")
    save_file(mlp.state_dict(), str(out / f"mlp-rank{r}.safetensors"))
    # several steps of a network with BatchNorm: parameters and BN statistics end identical on all ranks
    torch.manual_seed(200 + r)
    net = build_model(ModelSpec("resnet20", 10, 3, 8))
    train(net, tiny_data(16, 8), TrainConfig(epochs=2, batch_size=4), device, desc="bn")
    save_file(
        {k: v.contiguous() for k, v in net.state_dict().items()}, str(out / f"resnet20-rank{r}.safetensors")
    )
    # a non-finite loss on one rank is seen by all
    seen["summed_nan"] = math.isfinite(distributed.summed(float("nan") if r == 1 else 1.0)[0])
    # ranks that hold different networks stop with one clear error, all of them
    try:
        distributed.check_same_network(build_model(ModelSpec("mlp", 10, 3, 8 + 2 * r)))
        seen["different_networks"] = None
    except RunError as e:
        seen["different_networks"] = str(e)
    seen["world_size"] = distributed.world_size()
    distributed.stop(ok=True)
    (out / f"rank{r}.json").write_text(json.dumps(seen))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
