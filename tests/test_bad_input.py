"""The bad-input catalogue: every way of handing filterprune something wrong, one table row each.

A row is ``(id, argv, exit status, regex)``. ``{name}`` in argv is a file that ``BadFiles`` makes on
demand (add a maker there for a new kind of file). Every row must end in exactly one error line that
matches the regex, with the given exit status (2 usage, 1 runtime), no traceback, no "internal error",
and no output folder or staging leftovers. ``tests/test_cli.py`` holds a dozen earlier cases (unknown
model/criterion/dataset, sparsity out of range, missing files, another architecture, ...); these
are all different ones. The count goes into README's reliability section.
"""

import json
import os
import pickle
import re

import numpy as np
import pytest
import torch
from reports import make_report
from safetensors.torch import save_file

from filterprune import serialization as ckpt
from filterprune.cli import main
from filterprune.models import ModelSpec, build_model, factory

# cheap settings: rows that pass validation stop at data, checkpoint or graph checks within seconds
C = [
    "compress",
    "resnet20",
    "--criterion",
    "l1",
    "--sparsity",
    "0.4",
    "--round-to",
    "1",
    "--dataset",
    "synthetic",
    "--epochs",
    "0",
    "--finetune-epochs",
    "0",
    "--no-export",
    "--no-bench",
]
T = ["train", "resnet20", "--dataset", "synthetic", "--epochs", "0"]

CATALOGUE = [
    # --- names and commands (exit 2)
    ("no-command", [], 2, "required: command"),
    ("unknown-command", ["frobnicate"], 2, "invalid choice: 'frobnicate'"),
    ("unknown-flag", [*C, "--sparstiy", "0.3"], 2, "unrecognized arguments: --sparstiy"),
    (
        "unknown-torchvision-model",
        [*C[:1], "tv:resnet9000", *C[2:]],
        2,
        "unknown torchvision classifier 'resnet9000'",
    ),
    ("unknown-scope", [*C, "--scope", "wide"], 2, "invalid choice: 'wide'"),
    ("unknown-optimizer", [*C, "--optimizer", "rmsprop"], 2, "invalid choice: 'rmsprop'"),
    ("unknown-schedule", [*T, "--schedule", "linear"], 2, "invalid choice: 'linear'"),
    ("device-with-index", [*C, "--device", "cuda:1"], 2, "unknown device 'cuda:1'"),
    ("train-unknown-model", ["train", "resnet21"], 2, "unknown model 'resnet21'"),
    ("train-unknown-dataset", ["train", "resnet20", "--dataset", "cifar11"], 2, "unknown dataset 'cifar11'"),
    # --- values out of range (exit 2)
    ("sparsity-nan", [*C, "--sparsity", "nan"], 2, r"--sparsity must be in \[0, 1\), got nan"),
    ("sparsity-inf", [*C, "--sparsity", "inf"], 2, r"--sparsity must be in \[0, 1\), got inf"),
    ("lr-zero", [*C, "--lr", "0"], 2, r"--lr must be in \(0, 10\)"),
    ("lr-nan", [*T, "--lr", "nan"], 2, r"--lr must be in \(0, 10\), got nan"),
    ("finetune-lr-negative", [*C, "--finetune-lr", "-1"], 2, r"--finetune-lr must be in \(0, 10\), got -1"),
    ("batch-size-zero", [*C, "--batch-size", "0"], 2, "--batch-size must be >= 1"),
    ("epochs-not-integer", [*C, "--epochs", "1.5"], 2, "invalid int value: '1.5'"),
    ("finetune-epochs-negative", [*C, "--finetune-epochs", "-2"], 2, "--finetune-epochs must be >= 0"),
    ("round-to-zero", [*C, "--round-to", "0"], 2, "--round-to must be an integer >= 1"),
    ("layer-floor-zero", [*C, "--layer-floor", "0"], 2, r"--layer-floor must be in \(0, 1\]"),
    ("layer-floor-above-one", [*C, "--layer-floor", "1.5"], 2, r"--layer-floor must be in \(0, 1\]"),
    ("sparsity-reg-negative", [*T, "--sparsity-reg", "-0.001"], 2, "--sparsity-reg must be >= 0"),
    ("seed-beyond-64-bits", [*C, "--seed", str(2**70)], 2, "--seed must be in \\[-9223372036854775808"),
    ("calib-batches-zero", [*C, "--calib-batches", "0"], 2, "--calib-batches must be >= 1"),
    ("bench-iters-zero", [*C, "--bench-iters", "0"], 2, "--bench-iters must be >= 1"),
    (
        "bench-batch-size-zero",
        [*C, "--bench-batch-sizes", "0,4"],
        2,
        "--bench-batch-sizes must be integers >= 1",
    ),
    ("bench-batch-sizes-text", [*C, "--bench-batch-sizes", "a,b"], 2, "expected comma-separated integers"),
    ("cuda-without-gpu", [*C, "--device", "cuda"], 2, "--device cuda requested but no CUDA GPU is available"),
    # --- paths (exit 2)
    (
        "checkpoint-is-a-device",
        [*C, "--checkpoint", "/dev/null"],
        2,
        "not a regular file or folder: /dev/null",
    ),
    (
        "checkpoint-folder-without-checkpoint",
        [*C, "--checkpoint", "{empty_dir}"],
        2,
        "no pruned.json or model.json",
    ),
    ("out-is-a-file", [*C, "--out", "{a_file}"], 2, "already exists and is not empty"),
    ("out-is-a-file-overwrite", [*C, "--out", "{a_file}", "--overwrite"], 2, "is a file, not a folder"),
    (
        "out-below-a-file",
        [*C, "--out", "{a_file}/run"],
        2,
        "cannot create output folder .* not a writable folder",
    ),
    ("train-out-taken", [*T, "--out", "{full_dir}"], 2, "already exists and is not empty"),
    # --- data files (exit 2)
    ("npz-float-images", [*C, "--dataset", "npz:{npz_float_images}"], 2, "images must be uint8, got float32"),
    (
        "npz-missing-arrays",
        [*C, "--dataset", "npz:{npz_missing_arrays}"],
        2,
        r"needs arrays x_train.*has \['images'\]",
    ),
    ("npz-pickled-objects", [*C, "--dataset", "npz:{npz_objects}"], 2, "not a readable npz archive"),
    (
        "npz-negative-labels",
        [*C, "--dataset", "npz:{npz_negative_labels}"],
        2,
        r"labels must lie in \[0, 100000\), got -1",
    ),
    (
        "npz-float-labels",
        [*C, "--dataset", "npz:{npz_float_labels}"],
        2,
        "labels must be a 1-D integer array",
    ),
    (
        "npz-empty-test-split",
        [*C, "--dataset", "npz:{npz_empty_test}"],
        2,
        "must both hold images .*got 8 and 0",
    ),
    ("npz-non-square-images", [*C, "--dataset", "npz:{npz_non_square}"], 2, "expected square images"),
    (
        "imagefolder-without-test",
        [*C, "--dataset", "imagefolder:{imagefolder_no_test}"],
        2,
        "needs train/ and test/",
    ),
    (
        "imagefolder-no-images",
        [*C, "--dataset", "imagefolder:{imagefolder_no_images}"],
        2,
        "no readable images",
    ),
    (
        "cifar-folder-corrupted",
        [*C, "--dataset", "cifar10", "--data-root", "{cifar_corrupted}"],
        2,
        "cifar-10-batches-py: cifar10 files are incomplete or corrupted",
    ),
    # --- checkpoints that do not fit (exit 2)
    (
        "checkpoint-of-another-model",
        [*C[:1], "resnet32", *C[2:], "--checkpoint", "{r20_checkpoint_dir}"],
        2,
        "holds a resnet20, not a resnet32",
    ),
    (
        "checkpoint-other-class-count",
        [*C, "--checkpoint", "{r20_100_classes_pt}"],
        2,
        r"does not match .* 2 shape \(e.g. fc.weight \(100, 64\) vs \(10, 64\)",
    ),
    # --- untrusted or damaged checkpoints (exit 1)
    (
        "checkpoint-truncated-safetensors",
        [*C, "--checkpoint", "{r20_truncated_safetensors}"],
        1,
        "unreadable or unsafe",
    ),
    ("checkpoint-truncated-pt", [*C, "--checkpoint", "{r20_truncated_pt}"], 1, "unreadable or unsafe"),
    ("checkpoint-empty-file", [*C, "--checkpoint", "{empty_pt}"], 1, "unreadable or unsafe"),
    ("checkpoint-malicious-pickle", [*C, "--checkpoint", "{evil_legacy_pickle}"], 1, "unreadable or unsafe"),
    ("checkpoint-malicious-torch-zip", [*C, "--checkpoint", "{evil_torch_zip}"], 1, "unreadable or unsafe"),
    (
        "checkpoint-not-a-state-dict",
        [*C, "--checkpoint", "{tensor_pt}"],
        1,
        "does not hold a state dict of tensors",
    ),
    (
        "checkpoint-nan-weights",
        [*C, "--checkpoint", "{r20_nan_safetensors}"],
        1,
        r"1 tensor\(s\) hold NaN or inf",
    ),
    (
        "checkpoint-json-garbage",
        [*C, "--checkpoint", "{json_garbage}"],
        1,
        "unreadable checkpoint description",
    ),
    (
        "checkpoint-json-deeply-nested",
        [*C, "--checkpoint", "{json_deep}"],
        1,
        "unreadable checkpoint description",
    ),
    (
        "checkpoint-json-wrong-format",
        [*C, "--checkpoint", "{json_wrong_format}"],
        1,
        "not a filterprune/1 checkpoint",
    ),
    (
        "checkpoint-json-huge-model",
        [*C, "--checkpoint", "{json_huge_classes}"],
        1,
        r"malformed model description \(num_classes must be an integer in \[1, 100000\]",
    ),
    (
        "checkpoint-json-negative-index",
        [*C, "--checkpoint", "{json_negative_index}"],
        1,
        "malformed pruning history",
    ),
    (
        "checkpoint-json-unknown-layer",
        [*C, "--checkpoint", "{json_unknown_layer}"],
        1,
        "pruning history does not fit",
    ),
    (
        "checkpoint-weights-swapped",
        [*C, "--checkpoint", "{r20_swapped_weights}"],
        1,
        "do not match the digest",
    ),
    ("checkpoint-pair-truncated", [*C, "--checkpoint", "{r20_pair_truncated}"], 1, "do not match the digest"),
    # --- training that diverges (exit 1): stop, keep the last good weights, say where
    # --- hostile and heavy inputs (issue 16): bounded before anything is built, never an internal error
    (
        "sweep-name-alias-bomb",
        ["sweep", "{sweep_name_bomb_yaml}", "--dry-run"],
        2,
        r"refused: expands to more than 100,000 values",
    ),
    (
        "sweep-grid-alias-bomb",
        ["sweep", "{sweep_grid_bomb_yaml}", "--dry-run"],
        2,
        r"refused: more than 100 aliases",
    ),
    (
        "sweep-recursive-alias",
        ["sweep", "{sweep_recursive_yaml}", "--dry-run"],
        2,
        "refused: a recursive alias",
    ),
    (
        "sweep-grid-of-ten-million-runs",
        ["sweep", "{sweep_huge_grid_yaml}", "--dry-run"],
        2,
        r"stands for 10,000,000 runs \(grid 10 x 10 x 10 x 10 x 10 x 10 x 10\); at most 10,000",
    ),
    (
        "sweep-file-over-a-megabyte",
        ["sweep", "{sweep_huge_file_yaml}", "--dry-run"],
        2,
        r"refused: larger than 1,048,576 bytes",
    ),
    ("report-json-huge-string", ["report", "{report_huge_string}"], 1, r"a string of 200,000 characters"),
    ("report-json-huge-integer", ["report", "{report_huge_int}"], 1, r"an integer with 401 digits"),
    ("report-json-too-many-layers", ["report", "{report_many_layers}"], 1, r"more than 2,000 layers"),
    (
        "checkpoint-json-huge-integer",
        [*C, "--checkpoint", "{json_huge_int}"],
        1,
        r"an integer with 401 digits",
    ),
    (
        "checkpoint-json-huge-image-size",
        ["export", "{r20_image_4096}", "--out", "{out}"],
        1,
        r"describes a resnet20 on 3x4096x4096 inputs, too large to load: .* GiB limit \(FILTERPRUNE_MEMORY_GB",
    ),
    (
        "export-checkpoint-json-huge-model",
        ["export", "{r20_huge_model_args}", "--out", "{out}"],
        1,
        r"describes a tv:mobilenet_v2 \(model_args \{'width_mult': 30\}\) on 3x32x32 inputs, too large to "
        r"load: a model of 1,9\d\d,\d+,\d+ parameters \(the dense model and the pruned one\) .* GiB limit",
    ),
    (
        "bench-checkpoint-json-huge-model",
        ["bench", "{r20_huge_model_args}", "--out", "{out}"],
        1,
        r"describes a tv:mobilenet_v2 .* too large to load: a model of 1,9\d\d,\d+,\d+ parameters",
    ),
    (
        "export-factory-run-huge-model-args",
        ["export", "{factory_run_huge}", "--trust-code", "--out", "{out}"],
        1,
        r"wide_net\.py:build \(model_args \{'width': 20000\}\) on 3x2x2 inputs, too large to load: a model of "
        r"400,\d+,\d+ parameters",
    ),
    (
        "bench-factory-run-huge-model-args",
        ["bench", "{factory_run_huge}", "--trust-code", "--out", "{out}"],
        1,
        r"wide_net\.py:build \(model_args \{'width': 20000\}\) .* too large to load",
    ),
    (
        "export-batch-hundred-thousand",
        ["export", "{r20_checkpoint_dir}", "--batch", "100000", "--out", "{out}"],
        2,
        r"--batch 100000: a forward at batch 100000 .* over the [0-9.]+ GiB limit",
    ),
    (
        "compress-checkpoint-already-pruned",
        [*C, "--checkpoint", "{r20_pruned_dir}"],
        2,
        r"holds an already pruned resnet20 \(1 pruning steps\); --checkpoint takes dense weights",
    ),
    (
        "bench-onnx-huge-declared-input",
        ["bench", "{huge_input_onnx}", "--out", "{out}"],
        2,
        r"declares an input of 10,800,000,000 values per sample \(3x60000x60000\)",
    ),
    (
        "bench-onnx-without-inputs",
        ["bench", "{no_input_onnx}", "--out", "{out}"],
        2,
        "the graph has no input to feed",
    ),
    (
        "bench-onnx-external-data-outside",
        ["bench", "{external_outside_onnx}", "--out", "{out}"],
        2,
        r"keeps its data in '../../../../etc/passwd': external data must be a file inside the model's folder",
    ),
    (
        "bench-onnx-external-data-symlink-out",
        ["bench", "{external_symlink_onnx}", "--out", "{out}"],
        2,
        r"keeps its data in 'weights.bin', which leads outside the model's folder",
    ),
    (
        "bench-empty-runtime",
        ["bench", "{no_input_onnx}", "--runtime", "", "--out", "{out}"],
        2,
        "--runtime needs at least one value",
    ),
    (
        "bench-out-not-empty",
        ["bench", "{no_input_onnx}", "--out", "{full_dir}"],
        2,
        r"already exists and is not empty \(pass --overwrite",
    ),
    # --- the user's own model (issue 13; exit 2, nothing imported that was not asked for)
    (
        "factory-file-missing",
        [*C[:1], "{empty_dir}/nope.py:build", *C[2:]],
        2,
        r"model file not found: .*nope\.py",
    ),
    ("factory-attribute-missing", [*C[:1], "{net_py}:nope", *C[2:]], 2, r"net\.py has no attribute 'nope'"),
    (
        "factory-not-callable",
        [*C[:1], "{net_py}:WIDTH", *C[2:]],
        2,
        r"net\.py:WIDTH is not callable \(it is a int\)",
    ),
    (
        "factory-returns-no-module",
        [*C[:1], "{net_py}:not_a_module", *C[2:]],
        2,
        "returned a dict, not a torch.nn.Module",
    ),
    (
        "factory-raises",
        [*C[:1], "{net_py}:broken", *C[2:]],
        2,
        r"model factory .*net\.py:broken raised ValueError: no GPU",
    ),
    (
        "factory-import-fails",
        [*C[:1], "{import_fails_py}:build", *C[2:]],
        2,
        "importing .*import_fails.py failed: ZeroDivisionError",
    ),
    (
        "factory-module-not-found",
        [*C[:1], "no_such_pkg.nets:build", *C[2:]],
        2,
        "model module 'no_such_pkg.nets' not found",
    ),
    (
        "factory-output-width",
        [*C[:1], "{net_py}:three_outputs", *C[2:]],
        2,
        r"outputs \(1, 3\) for one image, but the data has 10 classes \(its factory takes no num_classes",
    ),
    (
        "factory-unknown-model-arg",
        [*C[:1], "{net_py}:build", *C[2:], "--model-args", '{{"depth": 3}}'],
        2,
        "raised TypeError: .*unexpected keyword argument 'depth'",
    ),
    ("model-args-not-json", [*C, "--model-args", "{{width: 3"], 2, "--model-args: must be a JSON object"),
    (
        "model-args-not-object",
        [*C, "--model-args", "[1, 2]"],
        2,
        "--model-args: must be a JSON object, got list",
    ),
    (
        "model-args-registered-model",
        [*C, "--model-args", '{{"width": 3}}'],
        2,
        "resnet20 takes no --model-args",
    ),
    (
        "export-untrusted-factory-run",
        ["export", "{factory_run}", "--out", "model.onnx"],
        2,
        r"built by user code .*run_net\.py:build.*--trust-code",
    ),
    (
        "tv-weights-not-cached",
        [*C[:1], "tv:resnet18", *C[2:], "--weights", "DEFAULT"],
        2,
        r"not in the torch hub cache: place resnet18-f37072fd\.pth at .*hub/checkpoints",
    ),
    (
        "tv-unknown-weights",
        [*C[:1], "tv:resnet18", *C[2:], "--weights", "IMAGENET9K"],
        2,
        "unknown weights 'IMAGENET9K' for tv:resnet18; valid: DEFAULT, IMAGENET1K_V1",
    ),
    (
        "weights-for-registered-model",
        [*C, "--weights", "DEFAULT"],
        2,
        "--weights applies to tv:<name> and timm:<name>",
    ),
    (
        "weights-and-checkpoint",
        [*C[:1], "tv:resnet18", *C[2:], "--weights", "DEFAULT", "--checkpoint", "{a_file}"],
        2,
        "either --weights or --checkpoint",
    ),
    (
        "timm-unknown-model",
        [*C[:1], "timm:resnet9000", *C[2:]],
        2,
        r"unknown timm model 'resnet9000'; list them with: .*timm.list_models\(\)|optional timm package",
    ),
    (
        "image-size-below-minimum",
        [
            *C[:1],
            "tv:vit_b_16",
            *C[2:-4],
            "--image-size",
            "32",
            "--dataset",
            "imagefolder:{imagefolder_no_images}",
        ],
        2,
        r"--image-size 32 is below the minimum input of tv:vit_b_16 \(224 px\)",
    ),
    (
        "image-size-in-memory-data",
        [*C, "--dataset", "digits", "--image-size", "64"],
        2,
        "--image-size applies to imagefolder: and synthetic",
    ),
    ("image-size-zero", [*C, "--image-size", "0"], 2, "--image-size must be >= 1"),
    ("train-subset-zero", [*C, "--train-subset", "0"], 2, "--train-subset must be >= 1"),
    (
        "ignore-layers-unknown",
        [*C, "--ignore-layers", "conv1,layer9"],
        2,
        "--ignore-layers: no layer named 'layer9'",
    ),
    # --- issue 27: user code under the guard, bad input that was an internal error, bounds at the door
    (
        "factory-sys-exit",
        [*C[:1], "{net_py}:exits", *C[2:]],
        2,
        r"model factory .*net\.py:exits called sys\.exit\(\)$",
    ),
    (
        "factory-sys-exit-code",
        [*C[:1], "{net_py}:exits", *C[2:], "--model-args", '{{"code": 3}}'],
        2,
        r"net\.py:exits called sys\.exit\(3\)$",
    ),
    (
        "factory-sys-exit-message",
        [*C[:1], "{net_py}:exits", *C[2:], "--model-args", '{{"code": "no GPU here"}}'],
        2,
        r"net\.py:exits called sys\.exit\('no GPU here'\)$",
    ),
    (
        "factory-base-exception",
        [*C[:1], "{net_py}:base_exception", *C[2:]],
        2,
        r"net\.py:base_exception raised Boom: deep",
    ),
    (
        "factory-import-sys-exit",
        [*C[:1], "{import_exits_py}:build", *C[2:]],
        2,
        r"importing .*import_exits\.py failed: called sys\.exit\(1\)",
    ),
    (
        "factory-path-too-long",
        [*C[:1], "{empty_dir}/" + "a" * 5000 + ".py:build", *C[2:]],
        2,
        r"model file .*aaa\.\.\. \(\d+ more characters\): File name too long",
    ),
    (
        "model-args-nested-deep",
        [*C[:1], "{net_py}:anything", *C[2:], "--model-args", '{{"a": ' + "[" * 900 + "]" * 900 + "}}"],
        2,
        "--model-args refused: lists or objects nested more than 100 levels deep",
    ),
    (
        "sweep-model-args-nested-deep",
        ["sweep", "{sweep_deep_yaml}", "--dry-run"],
        2,
        "refused: nested more than 100 levels deep",
    ),
    (
        "model-args-string-too-long",
        [*C[:1], "{net_py}:anything", *C[2:], "--model-args", '{{"a": "' + "x" * 120_000 + '"}}'],
        2,
        r"--model-args refused: a string of 120,000 characters \(at most 100,000\)",
    ),
    (
        "tv-model-args-value-error",
        [*C[:1], "tv:resnet18", *C[2:], "--model-args", '{{"width_per_group": "x"}}'],
        2,
        r"tv:resnet18 does not take these --model-args \(ValueError",
    ),
    (
        "workers-not-a-number",
        [*C, "--dataset", "imagefolder:{imagefolder_ok}"],
        2,
        "FILTERPRUNE_WORKERS must be a whole number of DataLoader workers in \\[0, 256\\], got 'abc'",
    ),
    (
        "round-to-auto-without-convs",
        [*C[:1], "{net_py}:no_conv", *C[2:], "--image-size", "32", "--round-to", "auto"],
        2,
        r"--round-to 'auto' .* no 2-D conv layer .*give --round-to an integer",
    ),
    (
        "imagefolder-all-truncated",
        [*C, "--dataset", "imagefolder:{imagefolder_truncated}"],
        2,
        r"consecutive images could not be decoded \(the last: .*image file is truncated\)",
    ),
    (
        "workers-too-many",
        [*C, "--dataset", "imagefolder:{imagefolder_ok}", "--workers", "100000"],
        2,
        r"--workers must be in \[0, 256\], got 100000",
    ),
    (
        "image-size-hundred-thousand",
        [*C, "--dataset", "imagefolder:{imagefolder_ok}", "--image-size", "100000"],
        2,
        "--image-size 100000 is over 4096",
    ),
    (
        "image-size-over-budget",
        [*C, "--dataset", "imagefolder:{imagefolder_ok}", "--image-size", "2000"],
        2,
        r"the input is too large for this model: tracing .* over the 1 GiB limit .*choose a smaller --image-size",
    ),
    (
        "target-batch-hundred-thousand",
        [
            *C[:1],
            "{net_py}:build",
            *C[2:4],
            "--target-speedup",
            "1.5",
            *C[6:],
            "--dataset",
            "imagefolder:{imagefolder_ok}",
            "--image-size",
            "224",
            "--target-batch",
            "100000",
        ],
        2,
        r"--target-batch 100000 is too large for measuring latencies: a forward at batch 100000 .* GiB limit",
    ),
    (
        "factory-too-many-parameters",
        [*C[:1], "{net_py}:anything", *C[2:], "--model-args", '{{"width": 20000}}'],
        2,
        r"the model is too large: a model of [\d,]+ parameters .* over the 1 GiB limit .*check --model-args",
    ),
    (
        "tv-model-args-too-many-parameters",
        [*C[:1], "tv:mobilenet_v2", *C[2:], "--model-args", '{{"width_mult": 30}}'],
        2,
        r"the model is too large: a model of 1,9\d\d,\d+,\d+ parameters",
    ),
    (
        "model-args-num-classes-against-data",
        [*C[:1], "{net_py}:build", *C[2:], "--model-args", '{{"num_classes": 5}}'],
        2,
        r"--model-args sets num_classes=5, but the data has 10 classes",
    ),
    (
        "model-args-break-the-forward",
        [*C[:1], "{net_py}:sized", *C[2:], "--image-size", "32", "--model-args", '{{"side": 7}}'],
        2,
        r"built with --model-args \{'side': 7\} does not run on 3x32x32 inputs .*check --model-args",
    ),
    (
        "imagefolder-empty-class",
        [*C, "--dataset", "imagefolder:{imagefolder_empty_class}"],
        2,
        r"train: class folder\(s\) dog hold no readable images",
    ),
    (
        "imagefolder-class-linked-to-train",
        [*C, "--dataset", "imagefolder:{imagefolder_link_class}"],
        2,
        r"train: class folder\(s\) loop hold no readable images",
    ),
    (
        "imagefolder-test-class-not-in-train",
        [*C, "--dataset", "imagefolder:{imagefolder_extra_test_class}"],
        2,
        r"test: class folder\(s\) dog are not in train/",
    ),
    (
        "tv-unknown-weights-listed-once",
        [*C[:1], "tv:resnet18", *C[2:], "--weights", "IMAGENET9K_V9"],
        2,
        r"valid: DEFAULT, IMAGENET1K_V1$",
    ),
    (
        "finetune-loss-diverges",
        [
            *C[:-4],
            "--finetune-epochs",
            "1",
            "--no-export",
            "--no-bench",
            "--checkpoint",
            "{r20_huge_weights_safetensors}",
        ],
        1,
        r"finetune: loss became (nan|inf) in epoch 1; stopped and kept the weights of epoch 0, "
        r"saved in .*last-good/finetune-resnet20-.*/ \(lower --lr\?\)",
    ),
]


BUDGET_ROWS = {
    "image-size-over-budget",
    "target-batch-hundred-thousand",
    "factory-too-many-parameters",
    "tv-model-args-too-many-parameters",
    "export-checkpoint-json-huge-model",
    "bench-checkpoint-json-huge-model",
    "export-factory-run-huge-model-args",
    "bench-factory-run-huge-model-args",
}


@pytest.fixture(scope="module")
def r20_state():
    torch.manual_seed(0)
    return build_model(ModelSpec("resnet20")).state_dict()


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


class BadFiles(dict):
    """``files["name"]`` makes the bad file called ``name`` under ``root`` (once) and returns its path."""

    def __init__(self, root, state):
        super().__init__()
        self.root, self.state = root, state

    def __missing__(self, name):
        path = self.root / re.sub(
            r"_(safetensors|pt|onnx|yaml|py)$", r".\1", name
        )  # the suffix picks the reader
        getattr(self, name)(path)
        self[name] = str(path)
        return self[name]

    # -- folders and plain files
    def empty_dir(self, p):
        p.mkdir()

    def full_dir(self, p):
        p.mkdir()
        (p / "keep.txt").write_text("another run's results")

    def a_file(self, p):
        p.write_text("not a folder")

    def empty_pt(self, p):
        p.write_bytes(b"")

    def out(self, p):  # where a row's output would go: it must never appear
        pass

    # -- sweep files
    _TINY = "base: {model: mlp, criterion: l1, sparsity: 0.4, epochs: 0, dataset: synthetic}\n"

    def _bomb(self, levels=10, width=9):
        """``levels`` anchors, each a list of ``width`` aliases of the one before: width**levels values."""
        return ["&a0 [" + ",".join(["lol"] * width) + "]"] + [
            f"&a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)
        ]

    def sweep_name_bomb_yaml(self, p):  # 437 bytes that stand for 3.4 billion strings
        p.write_text(f"name: [{', '.join(self._bomb())}]\n")

    def sweep_grid_bomb_yaml(self, p):
        bomb = self._bomb(levels=12, width=11)  # 121 aliases: refused while composing
        p.write_text(self._TINY + "grid:\n  seed: [" + ", ".join(bomb) + "]\n")

    def sweep_recursive_yaml(self, p):
        p.write_text(self._TINY + "grid:\n  seed: &s [1, *s]\n")

    def sweep_huge_grid_yaml(self, p):
        axes = [
            "seed",
            "calib_batches",
            "bench_iters",
            "batch_size",
            "finetune_epochs",
            "imp_iterations",
            "steps",
        ]
        p.write_text(self._TINY + "grid:\n" + "".join(f"  {a}: [1,2,3,4,5,6,7,8,9,10]\n" for a in axes))

    def sweep_huge_file_yaml(self, p):
        p.write_text(self._TINY + "# " + "x" * (1 << 20) + "\n")

    # -- report folders (one finished run each)
    def _report(self, p, raw=None, **changes):
        doc = {**make_report(), **changes}
        (p / "run").mkdir(parents=True)
        (p / "run" / "report.json").write_text(raw(json.dumps(doc)) if raw else json.dumps(doc))

    def report_huge_string(self, p):
        self._report(p, model="x" * 200_000)

    def report_huge_int(self, p):
        self._report(p, raw=lambda text: text.replace('"seed": 0', '"seed": 1' + "0" * 400))

    def report_many_layers(self, p):
        self._report(
            p, layers=[{"name": f"l{i}", "channels_before": 8, "channels_after": 4} for i in range(2001)]
        )

    # -- ONNX files
    def _onnx(self, p, inputs, nodes, outputs, initializer=()):
        from onnx import helper

        graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializer))
        p.write_bytes(
            helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
        )

    def huge_input_onnx(self, p):  # a few hundred bytes declaring one 3x60000x60000 image
        from onnx import TensorProto, helper

        self._onnx(
            p,
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 60000, 60000])],
            [helper.make_node("GlobalAveragePool", ["input"], ["y"])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 1, 1])],
        )

    def no_input_onnx(self, p):
        from onnx import TensorProto, helper, numpy_helper

        self._onnx(
            p,
            [],
            [helper.make_node("Constant", [], ["y"], value=numpy_helper.from_array(np.ones(1, np.float32)))],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        )

    def _external(self, p, location):
        from onnx import TensorProto, helper, numpy_helper

        w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
        w.ClearField("raw_data")
        w.data_location = TensorProto.EXTERNAL
        for k, v in (("location", location), ("offset", "0"), ("length", "64")):
            entry = w.external_data.add()
            entry.key, entry.value = k, v
        self._onnx(
            p,
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4])],
            [helper.make_node("MatMul", ["input", "w"], ["y"])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
            [w],
        )

    def external_outside_onnx(self, p):
        self._external(p, "../../../../etc/passwd")

    def external_symlink_onnx(self, p):
        (p.parent / "weights.bin").symlink_to("/etc/passwd")
        self._external(p, "weights.bin")

    # -- datasets
    def _npz(self, p, **arrays):
        with open(p, "wb") as f:  # the name keeps its suffix
            np.savez(f, **arrays)

    def _images(self, n, dtype=np.uint8):
        return np.random.default_rng(0).integers(0, 255, (n, 3, 8, 8)).astype(dtype)

    def npz_float_images(self, p):
        self._npz(p, x=self._images(10, np.float32), y=np.arange(10) % 2)

    def npz_missing_arrays(self, p):
        self._npz(p, images=self._images(10))

    def npz_objects(self, p):
        self._npz(p, x=np.array([{"a": 1}] * 10, dtype=object), y=np.arange(10) % 2)

    def npz_negative_labels(self, p):
        self._npz(p, x=self._images(10), y=np.arange(10) - 1)

    def npz_float_labels(self, p):
        self._npz(p, x=self._images(10), y=np.linspace(0, 1, 10))

    def npz_empty_test(self, p):
        self._npz(
            p,
            x_train=self._images(8),
            y_train=np.arange(8) % 2,
            x_test=self._images(0),
            y_test=np.zeros(0, np.int64),
        )

    def npz_non_square(self, p):
        self._npz(p, x=np.zeros((10, 3, 8, 6), np.uint8), y=np.arange(10) % 2)

    def imagefolder_no_test(self, p):
        (p / "train" / "cat").mkdir(parents=True)

    def _folder(self, p, classes, test_classes=None, truncate=False):
        from PIL import Image

        rng = np.random.default_rng(0)
        for split, names in (("train", classes), ("test", test_classes or classes)):
            for c in names:
                (p / split / c).mkdir(parents=True)
                for i in range(2):
                    Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(
                        p / split / c / f"{i}.png"
                    )
                    if truncate:
                        blob = (p / split / c / f"{i}.png").read_bytes()
                        (p / split / c / f"{i}.png").write_bytes(blob[: len(blob) // 2])

    def imagefolder_ok(self, p):
        self._folder(p, ["cat", "dog"])

    def imagefolder_truncated(self, p):  # headers read, pixels do not
        self._folder(p, ["cat", "dog"], truncate=True)

    def imagefolder_empty_class(self, p):
        self._folder(p, ["cat", "cow"])
        (p / "train" / "dog").mkdir()

    def imagefolder_link_class(self, p):
        self._folder(p, ["cat", "dog"])
        (p / "train" / "loop").symlink_to("../train")

    def imagefolder_extra_test_class(self, p):
        self._folder(p, ["cat", "cow"], ["cat", "cow", "dog"])

    def sweep_deep_yaml(self, p):
        deep = "{a: " + "[" * 1100 + "]" * 1100 + "}"
        p.write_text(
            "base: {model: mlp, criterion: l1, sparsity: 0.4, epochs: 0, dataset: synthetic}\n"
            f"grid:\n  model_args: [{deep}]\n"
        )

    def import_exits_py(self, p):
        p.write_text("import sys\nsys.exit(1)\n")

    def imagefolder_no_images(self, p):
        for split in ("train", "test"):
            (p / split / "cat").mkdir(parents=True)
            (p / split / "cat" / "note.txt").write_text("not an image")

    def cifar_corrupted(self, p):
        (p / "cifar-10-batches-py").mkdir(parents=True)
        (p / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"\x80\x04junk")

    # -- the user's own model files
    def net_py(self, p):
        p.write_text(
            "import torch.nn as nn\nWIDTH = 3\n\n"
            "def build(num_classes=10, width=4):\n"
            "    return nn.Sequential(nn.Conv2d(3, width, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),\n"
            "                         nn.Linear(width, num_classes))\n\n"
            "def not_a_module(num_classes=10):\n    return {'model': None}\n\n"
            "def broken(num_classes=10):\n    raise ValueError('no GPU')\n\n"
            "def three_outputs():\n    return build(3)\n\n"
            "def exits(num_classes=10, code=None):\n    import sys\n    sys.exit(code)\n\n"
            "class Boom(BaseException):\n    pass\n\n"
            "def base_exception(num_classes=10):\n    raise Boom('deep')\n\n"
            "def anything(num_classes=10, width=4, **kwargs):\n"
            "    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, width), nn.Linear(width, width),\n"
            "                         nn.Linear(width, num_classes))\n\n"
            "def no_conv(num_classes=10):\n    return anything(num_classes, 16)\n\n"
            "def sized(num_classes=10, side=30):\n"
            "    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * side * side, num_classes))\n"
        )

    def import_fails_py(self, p):
        p.write_text("x = 1 / 0\n")

    def factory_run(self, p):
        """A run folder whose model is built by a file that would leave `pwned` here if imported."""
        code = p.parent / "run_net.py"
        code.write_text(
            "import pathlib, torch.nn as nn\npathlib.Path('pwned').touch()\n\n"
            "def build(num_classes=10):\n    return nn.Sequential(nn.Flatten(), nn.Linear(12, num_classes))\n"
        )
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 10))
        ckpt.save(net, p / "pruned", ModelSpec(f"{code}:build", 10, 3, 2))

    def factory_run_huge(self, p):
        """A run of a factory whose pruned.json asks, after the fact, for 400 million parameters (the code and
        its hash are the run's own: trust admits it, the size must still be refused before the build)."""
        code = p.parent / "wide_net.py"
        code.write_text(
            "import torch.nn as nn\n\ndef build(num_classes=10, width=4):\n"
            "    return nn.Sequential(nn.Flatten(), nn.Linear(12, width), nn.Linear(width, width),\n"
            "                         nn.Linear(width, num_classes))\n"
        )
        net = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(12, 4), torch.nn.Linear(4, 4), torch.nn.Linear(4, 10)
        )
        ckpt.save(net, p / "pruned", ModelSpec(f"{code}:build", 10, 3, 2, args={"width": 4}))
        doc = json.loads((p / "pruned.json").read_text())
        doc["model"]["args"] = {"width": 20000}
        (p / "pruned.json").write_text(json.dumps(doc))

    # -- checkpoints
    def _r20(self, p, state=None, **kw):
        ckpt.save(_module(state or self.state), p / "model", ModelSpec("resnet20"), **kw)

    def r20_checkpoint_dir(self, p):
        self._r20(p)

    def r20_100_classes_pt(self, p):
        torch.save(build_model(ModelSpec("resnet20", num_classes=100)).state_dict(), p)

    def r20_truncated_safetensors(self, p):
        save_file(self.state, str(p) + ".full")
        blob = open(str(p) + ".full", "rb").read()
        p.write_bytes(blob[: len(blob) // 3])

    def r20_truncated_pt(self, p):
        torch.save(self.state, str(p) + ".full")
        blob = open(str(p) + ".full", "rb").read()
        p.write_bytes(blob[: len(blob) // 2])

    def evil_legacy_pickle(self, p):
        with open(p, "wb") as f:
            pickle.dump({"conv1.weight": _Evil()}, f)

    def evil_torch_zip(self, p):
        torch.save({"conv1.weight": _Evil()}, p)

    def tensor_pt(self, p):
        torch.save(torch.zeros(3), p)

    def r20_nan_safetensors(self, p):
        state = dict(self.state)
        state["conv1.weight"] = state["conv1.weight"].clone().fill_(float("nan"))
        save_file(state, str(p))

    def r20_huge_weights_safetensors(self, p):
        state = dict(self.state)
        state["fc.weight"] = state["fc.weight"] * 1e36
        save_file(state, str(p))

    def _json(self, p, doc):
        p.mkdir()
        (p / "model.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))

    def _doc(self, **changes):
        return {
            "format": "filterprune/1",
            "model": ModelSpec("resnet20").to_dict(),
            "history": [],
            "meta": {},
            **changes,
        }

    def json_garbage(self, p):
        self._json(p, "{")

    def json_deep(self, p):
        self._json(p, "[" * 200_000)

    def json_wrong_format(self, p):
        self._json(p, self._doc(format="pickle/4"))

    def json_huge_classes(self, p):
        self._json(p, self._doc(model={**ModelSpec("resnet20").to_dict(), "num_classes": 10**12}))

    def json_huge_int(self, p):
        self._json(p, json.dumps(self._doc()).replace('"num_classes": 10', '"num_classes": 1' + "0" * 400))

    def r20_image_4096(self, p):  # the description lies outside the weights' digest
        self._r20(p)
        doc = json.loads((p / "model.json").read_text())
        doc["model"]["image_size"] = 4096
        (p / "model.json").write_text(json.dumps(doc))

    def r20_huge_model_args(self, p):  # another model, made huge by its arguments, named after the fact
        self._r20(p)
        doc = json.loads((p / "model.json").read_text())
        doc["model"].update(name="tv:mobilenet_v2", args={"width_mult": 30})
        (p / "model.json").write_text(json.dumps(doc))

    def r20_pruned_dir(self, p):
        import torch_pruning as tp

        from filterprune.pruning.graph import build_graph

        model = _module(self.state)
        DG = build_graph(model, torch.randn(1, 3, 32, 32))
        DG.get_pruning_group(model.conv1, tp.prune_conv_out_channels, idxs=[0, 1]).prune()
        ckpt.save(model, p / "model", ModelSpec("resnet20"), DG.pruning_history())

    def json_negative_index(self, p):
        self._json(p, self._doc(history=[["conv1", True, [-1]]]))

    def json_unknown_layer(self, p):
        self._r20(p, history=[["no.such.layer", True, [0, 1]]])

    def r20_swapped_weights(self, p):
        self._r20(p)
        other = {k: v + 1 if v.is_floating_point() else v for k, v in self.state.items()}
        save_file(other, str(p / "model.safetensors"))

    def r20_pair_truncated(self, p):
        self._r20(p)
        blob = (p / "model.safetensors").read_bytes()
        (p / "model.safetensors").write_bytes(blob[:-100])


def _module(state):
    m = build_model(ModelSpec("resnet20"))
    m.load_state_dict(state)
    return m


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err and "internal error" not in err, err
    errors = [ln for ln in err.splitlines() if ln.startswith("filterprune: error:")]
    assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err
    return errors[0]


@pytest.mark.parametrize("case", CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_catalogue(case, tmp_path, r20_state, capfd, monkeypatch):
    name, argv, code, pattern = case
    if name == "cuda-without-gpu" and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    monkeypatch.setenv("FILTERPRUNE_WORKERS", "abc" if name == "workers-not-a-number" else "0")
    # a row's --trust-code holds for the whole process (factory.trust_all): undone after it, so a later
    # row that must refuse untrusted code is not trusted by an earlier one
    monkeypatch.setattr(factory, "_TRUST_ALL", False)
    if name in BUDGET_ROWS:  # what the row asks for is refused on any machine, and a regression stays small
        monkeypatch.setenv("FILTERPRUNE_MEMORY_GB", "1")
    monkeypatch.chdir(tmp_path)  # `pwned` would appear here; default outputs too
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # an empty hub cache
    files = BadFiles(tmp_path, r20_state)
    argv = [a.format_map(files) for a in argv]
    if argv[:1] == ["compress"] and "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    assert main(argv) == code
    line = _one_error_line(capfd.readouterr().err)
    assert re.search(pattern, line), line
    assert (
        not (tmp_path / "out").exists()
        and not (tmp_path / "runs").exists()
        and not (tmp_path / "model.onnx").exists()
    )
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name or p.name == "pwned"]
    if name == "train-out-taken":
        assert (tmp_path / "full_dir" / "keep.txt").read_text() == "another run's results"


def test_catalogue_is_large_and_distinct():
    assert len({c[0] for c in CATALOGUE}) == len(CATALOGUE) >= 30
    assert len({tuple(c[1]) for c in CATALOGUE}) == len(CATALOGUE)


# ------------------------------------------------------------------ beyond the command line table
@pytest.mark.parametrize("content", [b"", b"not a protobuf at all", "truncated"])
def test_a_file_that_is_not_onnx_is_one_clear_error(tmp_path, content):
    from filterprune.errors import RunError
    from filterprune.exporting.convert import export_onnx, session

    path = tmp_path / "model.onnx"
    if content == "truncated":
        export_onnx(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)), path, (3, 2, 2))
        content = path.read_bytes()[:-40]
    path.write_bytes(content)
    with pytest.raises(RunError, match="not a loadable ONNX model"):
        session(path)


def test_missing_onnx_file_is_a_usage_error(tmp_path):
    from filterprune.errors import UsageError
    from filterprune.exporting.convert import session

    with pytest.raises(UsageError, match="ONNX file not found"):
        session(tmp_path / "nope.onnx")


def test_a_sparsity_that_would_empty_layers_is_floored_with_a_warning(tmp_path, capfd):
    out = tmp_path / "out"
    assert main([*C, "--sparsity", "0.99", "--layer-floor", "0.25", "--out", str(out)]) == 0
    err = capfd.readouterr().err
    warning = [ln for ln in err.splitlines() if "warning" in ln]
    assert warning == [
        "[filterprune] warning: 12 layer(s) would keep less than 25% of their channels; kept at "
        "the floor (--layer-floor)"
    ], err
    layers = json.loads((out / "report.json").read_text())["layers"]
    pruned = [r for r in layers if r["channels_after"] < r["channels_before"]]
    assert pruned and all(r["channels_after"] == -(-r["channels_before"] // 4) for r in pruned)


def test_every_load_of_a_file_refuses_pickle():
    """Static audit: no code path may unpickle a user's file (the malicious-pickle rows prove the runtime)."""
    from pathlib import Path

    src = {p: p.read_text() for p in (Path(__file__).parents[1] / "filterprune").rglob("*.py")}
    for path, text in src.items():
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, (path, call)
        for call in re.findall(r"np\.load\([^)]*\)", text):
            assert "allow_pickle=False" in call, (path, call)
        assert not re.search(r"\bpickle\.loads?\(|yaml\.load\(|\bdill\b|torch\.save\(model", text), path
