"""``--distributed``: baseline training and finetuning with DistributedDataParallel under ``torchrun``.

torchrun starts N copies of the same command and tells each its RANK, WORLD_SIZE and LOCAL_RANK in the
environment. Every rank runs the pipeline up to the end of finetuning: it loads the same data, prunes
identically (same seed, deterministic pruning; ``wrap`` checks that the ranks hold the same network
before every DDP run) and trains together with the others — each rank on its share of the data
(DistributedSampler), gradients averaged by DDP. ``--batch-size`` is the *global* batch: each of N ranks
takes batch_size / N images per step, so N processes take the same number of steps at the same learning
rate as one process does, and no hyper-parameter changes with N. BatchNorm statistics are per rank (DDP
broadcasts rank 0's buffers before each forward, and ``train`` broadcasts them once more at the end).
Rank 0 alone evaluates, exports, benchmarks and writes the outputs; the others wait for it at a
barrier and exit 0.

Outside a distributed session every function here is a no-op (rank 0 of 1), so ``train.py`` and
``api.py`` call them unconditionally.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, DistributedSampler

from .errors import RunError, UsageError

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
LAUNCH = "torchrun --nproc_per_node N -m filterprune ... --distributed"
# ranks 1.. wait at the final barrier while rank 0 exports and benchmarks, which can take long; a rank
# that dies is noticed by torchrun, which stops the others, so a generous timeout costs nothing
TIMEOUT = timedelta(hours=6)

_session = False  # True between start() and stop(): filterprune itself asked for --distributed
_owned = False  # start() created the process group (a caller's own group is left to the caller)


def active() -> bool:
    return _session


def rank() -> int:
    return dist.get_rank() if _session else 0


def world_size() -> int:
    return dist.get_world_size() if _session else 1


def is_main() -> bool:
    return rank() == 0


def start(device: torch.device, batch_size: int) -> torch.device:
    """Join the process group torchrun describes (nccl on CUDA, gloo on CPU); returns this rank's device."""
    global _session, _owned
    missing = [k for k in TORCHRUN_ENV if k not in os.environ]
    if missing:
        raise UsageError(
            f"--distributed needs the environment torchrun sets ({', '.join(missing)} missing): "
            f"launch with `{LAUNCH}`"
        )
    try:
        world, local = int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    except ValueError:
        world = local = -1
    if world < 1 or local < 0:
        raise UsageError(
            f"--distributed: malformed torchrun environment (WORLD_SIZE={os.environ['WORLD_SIZE']!r}, "
            f"LOCAL_RANK={os.environ['LOCAL_RANK']!r})"
        )
    if batch_size % world:
        raise UsageError(
            f"--batch-size is the global batch and must divide among the {world} processes, got {batch_size}"
        )
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise UsageError(
                f"--distributed: local rank {local} has no GPU ({torch.cuda.device_count()} visible); "
                "start at most one process per GPU (or use --device cpu)"
            )
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    _owned = not dist.is_initialized()
    if _owned:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
    _session = True
    if not is_main():  # every rank would say the same warnings; rank 0 says them once
        warnings.simplefilter("ignore")
    return device


def stop(ok: bool) -> None:
    """Leave the group; after success rank 0 has written the outputs once everyone reaches the barrier."""
    global _session
    if not _session:
        return
    _session = False
    try:
        if ok:
            dist.barrier()
    finally:
        if _owned:
            dist.destroy_process_group()


@contextmanager
def session(enabled: bool, device: torch.device, batch_size: int) -> Iterator[torch.device]:
    """``with session(cfg.distributed, device, cfg.batch_size) as device:`` — the whole command inside."""
    if not enabled:
        yield device
        return
    device = start(device, batch_size)
    ok = False
    try:
        yield device
        ok = True
    finally:
        stop(ok)


def _tensor(values) -> torch.Tensor:
    """Collectives run on the backend's device: CPU for gloo, this rank's GPU for nccl."""
    on = (
        torch.device("cuda", torch.cuda.current_device())
        if dist.get_backend() == "nccl"
        else torch.device("cpu")
    )
    return torch.tensor(values, dtype=torch.float64, device=on)


def summed(*values: float) -> list[float]:
    """The values summed over the ranks (the values themselves outside a session). A NaN/inf on any rank
    makes the sum non-finite on every rank, so a diverging loss stops all ranks at the same step."""
    if not _session:
        return list(values)
    t = _tensor(list(values))
    dist.all_reduce(t)
    return t.tolist()


def shard(loader: DataLoader, seed: int) -> DataLoader:
    """The training loader split among the ranks: a DistributedSampler (shuffled by ``seed`` and the
    epoch, see ``set_epoch``) and batch_size / world_size images per rank and step."""
    if not _session:
        return loader
    world, batch = world_size(), loader.batch_size
    assert batch is not None  # make_loader's loaders batch by size (torch's None: a batch_sampler)
    if batch % world:
        raise UsageError(
            f"--batch-size is the global batch and must divide among the {world} processes, got {batch}"
        )
    sampler: DistributedSampler[Any] = DistributedSampler(
        loader.dataset, num_replicas=world, rank=rank(), shuffle=True, seed=seed
    )
    return DataLoader(loader.dataset, batch_size=batch // world, sampler=sampler, num_workers=0)


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """A new shuffle each epoch, the same on every rank (the ranks' shares stay disjoint)."""
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)


def network_digest(model: nn.Module) -> str:
    """The architecture as the state dict describes it: names and shapes (the channel counts), no values."""
    layout = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    return hashlib.sha256(json.dumps(layout).encode()).hexdigest()


def check_same_network(model: nn.Module) -> None:
    """Every rank must hold the network rank 0 holds (pruning is deterministic for a seed); else stop all."""
    if not _session:
        return
    mine = int(network_digest(model)[:13], 16)  # 52 bits: exact in the float64 the collective carries
    gathered = [_tensor([0.0]) for _ in range(world_size())]
    dist.all_gather(gathered, _tensor([float(mine)]))
    differ = [r for r, t in enumerate(gathered) if int(t.item()) != int(gathered[0].item())]
    if differ:
        raise RunError(
            f"--distributed: rank(s) {', '.join(map(str, differ))} pruned to other channel counts than "
            "rank 0; every rank must prune identically (same --seed, same data and checkpoint)"
        )


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """The model to train: DDP around ``model`` in a session (its parameters stay ``model``'s), else
    itself."""
    if not _session:
        return model
    check_same_network(model)
    ids = (
        [device.index if device.index is not None else torch.cuda.current_device()]
        if device.type == "cuda"
        else None
    )
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def sync_buffers(model: nn.Module) -> None:
    """After training: every rank takes rank 0's BatchNorm statistics (its last forward updated only its
    own), so all ranks end with identical weights and buffers."""
    if not _session:
        return
    for b in model.buffers():
        dist.broadcast(b, src=0)
