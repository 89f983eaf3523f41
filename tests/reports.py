"""One valid report.json (schema 1.1) for tests that need a report without running compress: every key the
schema has, with plausible values (an mlp pruned at 0.5 on synthetic data, timed on onnxruntime at batch
32). ``test_reporting.test_the_test_report_covers_the_schema`` keeps it complete when the schema grows."""

import copy

from filterprune.reporting.schema import SCHEMA_VERSION, Report, check

_COSTS = {"params": 2_000_000, "macs": 300_000_000, "flops": 310_000_000, "accuracy": 0.9, "top5": 0.99}
_TRAIN = {"epochs": 10, "optimizer": "sgd", "lr": 0.02, "schedule": "cosine", "batch_size": 64}
_ROW = {
    "variant": "dense",
    "runtime": "onnxruntime",
    "device": "cpu",
    "precision": "fp32",
    "batch_size": 32,
    "params": 2_000_000,
    "macs": 300_000_000,
    "iters": 20,
    "threads": 1,
    "error": "",
    "p50_ms": 10.0,
    "p90_ms": 11.0,
    "p99_ms": 12.0,
    "throughput": 3200.0,
    "theoretical_speedup": 1.0,
    "speedup": 1.0,
    "speedup_vs_dense_fp32": 1.0,
    "speedup_efficiency": 1.0,
    "cpu_peak_rss_mb": "",
    "gpu_peak_allocated_mb": "",
    "gpu_peak_reserved_mb": "",
    "machine_busy": "",
}

BASE = {
    "schema_version": SCHEMA_VERSION,
    "model": "mlp",
    "criterion": "l1",
    "sparsity": 0.5,
    "scope": "layerwise",
    "target_macs": None,
    "steps": 1,
    "latency_target": None,
    "round_to": 1,
    "seed": 0,
    "device": "cpu",
    "processes": 1,
    "dataset": {"name": "synthetic", "source": "random pixels", "train": 450, "val": 50, "test": 128},
    "dense": _COSTS,
    "pruned": {"params": 500_000, "macs": 75_000_000, "flops": 77_500_000, "accuracy": 0.8, "top5": 0.98},
    "task": "classification",
    "metrics": {
        "headline": "top1",
        "names": {"top1": "top-1", "top5": "top-5"},
        "dense": {"top1": 0.9, "top5": 0.99},
        "pruned": {"top1": 0.8, "top5": 0.98},
    },
    "mode": "shrink",
    "masked": None,
    "theoretical_speedup": 4.0,
    "channel_sparsity": 0.5,
    "layers": [{"name": "1", "channels_before": 100, "channels_after": 50}],
    "skipped_groups": [],
    "unprunable_groups": {},
    "onnx": {
        "path": "model.onnx",
        "max_abs_diff": 1e-7,
        "max_rel_diff": 1e-7,
        "output_scale": 1.0,
        "batches": [1, 7],
        "tolerance": 1e-4,
        "exporter": "torchscript",
        "exporter_fallback": "onnxscript is not installed (the torch.export-based exporter needs it)",
    },
    "deployed": {
        "files": [
            {
                "variant": "pruned",
                "precision": "fp32",
                "runtime": "onnxruntime",
                "path": "model.onnx",
                "top1": 0.8,
                "top5": 0.98,
                "images": 128,
            },
            {
                "variant": "pruned",
                "precision": "int8",
                "runtime": "onnxruntime",
                "path": "model.int8.onnx",
                "top1": 0.79,
                "top5": 0.98,
                "images": 128,
                "top1_drop_points": 1.0,
            },
        ],
        "max_int8_drop": 1.0,
        "calibration": {"images": 256, "seed": 0, "source": "synthetic training split"},
        "warnings": [],
    },
    "latency": [
        {
            "runtime": "onnxruntime",
            "device": "cpu",
            "precision": "fp32",
            "batch_size": 32,
            "dense_ms": 10.0,
            "pruned_ms": 5.0,
            "dense_p90_ms": 11.0,
            "pruned_p90_ms": 5.5,
            "speedup": 2.0,
            "speedup_efficiency": 0.5,
            "speedup_vs_dense_fp32": 2.0,
        }
    ],
    "latency_rows": [
        _ROW,
        {
            **_ROW,
            "variant": "pruned",
            "params": 500_000,
            "macs": 75_000_000,
            "p50_ms": 5.0,
            "p90_ms": 5.5,
            "p99_ms": 6.0,
            "throughput": 6400.0,
            "theoretical_speedup": 4.0,
            "speedup": 2.0,
            "speedup_vs_dense_fp32": 2.0,
            "speedup_efficiency": 0.5,
        },
    ],
    "baseline": {"epochs": 10, "train": _TRAIN, "cache_key": "0123456789abcdef", "history": []},
    "finetune": {
        "config": {**_TRAIN, "lr": 0.01},
        "recipe": "default",
        "distill": "anneal",
        "kept_epoch": 1,
        "history": [{"epoch": 1, "loss": 1.0, "train_top1": 0.8, "val_top1": 0.8, "kept": True}],
        "between_steps": [],
    },
    "scratch": None,
    "timings_s": {"baseline": 1.0, "prune": 0.1, "finetune": 2.0, "export": 0.5, "bench": 3.0},
    "machine": {
        "cpu": "test cpu",
        "cores": 2,
        "torch_threads": 1,
        "python": "3.11",
        "torch": "2.14",
        "onnxruntime": "1.25",
        "torch_pruning": "1.6",
        "gpu": None,
    },
    "version": "0.1.0",
    "model_source": {
        "kind": "registered",
        "name": "mlp",
        "args": {},
        "weights": None,
        "checkpoint": None,
        "num_classes": 10,
        "input_shape": [3, 32, 32],
    },
    "config": {
        "model": "mlp",
        "criterion": "l1",
        "sparsity": 0.5,
        "dataset": "synthetic",
        "epochs": 10,
        "seed": 0,
        "compression": None,
        "target_macs": None,
        "out": "runs/mlp-l1-s0.5",
    },
}

# the masked control of a mask criterion (report["masked"]), for tests that want one
MASKED = {
    "params": 2_000_000,
    "macs": 300_000_000,
    "flops": 155_000_000,
    "nonzero_params": 1_000_000,
    "flop_fraction": 0.5,
    "weight_density": 0.5,
    "compression": 0.3,
    "density": 0.5,
    "scope": "global",
    "reduce": "density",
    "imp_iterations": 2,
    "synflow_rounds": 100,
    "accuracy": 0.85,
    "top5": 0.99,
    "finetune_history": [],
}


def make_report(**changes) -> Report:
    """A deep copy of ``BASE`` with ``changes``: a section given as a dict (``dense={"accuracy": 0.5}``,
    ``config={...}``) updates that section, anything else replaces the key. Checked against the schema."""
    r = copy.deepcopy(BASE)
    for key, value in copy.deepcopy(changes).items():
        r[key] = {**r[key], **value} if isinstance(value, dict) and isinstance(r.get(key), dict) else value
    return check(r, "tests/reports.py")
