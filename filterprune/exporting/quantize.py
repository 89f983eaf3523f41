"""INT8 post-training quantization of exported ONNX files, and the accuracy of a file measured by running it.

onnxruntime's static quantization: QDQ format (QuantizeLinear/DequantizeLinear pairs around each quantized
op, which onnxruntime fuses into integer kernels and OpenVINO reads as its own int8), per-channel int8
weights, uint8 activations (onnxruntime's advice for x86 CPUs, with or without VNNI), MinMax ranges
calibrated on a seeded random draw of the run's own training images.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import onnx

from .. import limits
from ..data.loader import make_loader
from ..errors import RunError, UsageError
from .convert import session, set_metadata

CALIB_BATCH = 32
METHOD = (
    "onnxruntime static quantization, QDQ, per-channel int8 weights, uint8 activations, MinMax calibration"
)
# TensorRT's explicit quantization takes symmetric int8 only (zero points 0): its flavour of the same file
METHOD_TENSORRT = (
    "onnxruntime static quantization, QDQ, per-channel symmetric int8 weights, symmetric int8 activations "
    "(TensorRT's explicit quantization), MinMax calibration"
)


def train_size(data) -> int:
    return len(data.y_train)


def check_calib_images(data, n: int) -> None:
    """``calib_images`` must fit the training split (the images are drawn from it) and, held at once as
    the calibration set, the memory budget."""
    if n < 1 or n > train_size(data):
        raise UsageError(
            f"calib_images must be in [1, {train_size(data)}] (the training images of {data.name}), got {n}",
            ("calib_images",),
        )
    too_big = limits.over_images_budget(n, data.in_channels * data.image_size**2)
    if too_big:
        raise UsageError(f"calib_images {n} are too many to hold at once: {too_big}", ("calib_images",))


def calibration_images(data, n: int, seed: int) -> np.ndarray:
    """``n`` training images, preprocessed as for evaluation (no augmentation), drawn at random with
    ``seed``."""

    check_calib_images(data, n)
    batches, have = [], 0
    for x, _ in make_loader(data, "train", CALIB_BATCH, augment=False, shuffle=True, seed=seed):
        batches.append(x.numpy().astype(np.float32))
        have += len(x)
        if have >= n:
            break
    return np.concatenate(batches)[:n]


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over a batch of images (made a subclass when used)."""

    def __init__(self, name: str, images: np.ndarray):
        self.name, self.images, self.i = name, images, 0

    def get_next(self):
        if self.i >= len(self.images):
            return None
        batch = self.images[self.i : self.i + CALIB_BATCH]
        self.i += CALIB_BATCH
        return {self.name: np.ascontiguousarray(batch)}

    def rewind(self):
        self.i = 0


def reader(name: str, images: np.ndarray):
    """A CalibrationDataReader feeding ``images`` to the input ``name``."""
    from onnxruntime.quantization import CalibrationDataReader

    return type("ImagesReader", (_Reader, CalibrationDataReader), {})(name, images)


def quantize(
    fp32: onnx.ModelProto, images: np.ndarray, calibration: dict, tensorrt: bool = False
) -> onnx.ModelProto:
    """The INT8 (QDQ) model of ``fp32``, calibrated on ``images``; its metadata is ``fp32``'s with
    ``precision`` int8, ``quantization`` (the method) and ``calibration`` (JSON: images, seed, source).
    ``tensorrt``: symmetric int8 activations and weights, what TensorRT's explicit quantization takes
    (the default's uint8 activations suit x86 CPUs). A model onnxruntime cannot quantize is a RunError
    naming why."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    md = {p.key: p.value for p in fp32.metadata_props}
    md.update(
        precision="int8",
        quantization=METHOD_TENSORRT if tensorrt else METHOD,
        calibration=json.dumps(calibration),
    )
    with tempfile.TemporaryDirectory(prefix="filterprune-int8-") as tmp:
        src, pre, out = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(fp32.SerializeToString())
        try:
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            quantize_static(
                str(pre),
                str(out),
                reader(fp32.graph.input[0].name, images),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QInt8 if tensorrt else QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True} if tensorrt else {},
            )
            proto = onnx.load(str(out))
        except Exception as e:  # noqa: BLE001 - any failure of the quantizer: one line
            first = (str(e).splitlines() or [""])[0][:200]
            raise RunError(f"INT8 quantization failed: {type(e).__name__}: {first}") from None
    set_metadata(proto, md)
    return proto


def int8_agreement(fp32: bytes, int8: bytes, images: np.ndarray) -> dict:
    """How closely the INT8 file follows the FP32 one on ``images``: top-1 agreement and the largest
    difference relative to the output scale."""
    a, b = (_logits(session(m), images) for m in (fp32, int8))
    diff = float(np.abs(a - b).max())
    return {
        "top1_agreement": float((a.argmax(1) == b.argmax(1)).mean()),
        "max_abs_diff": diff,
        "max_rel_diff": diff / max(1.0, float(np.abs(a).max())),
        "images": len(images),
    }


def _logits(sess, x: np.ndarray, batch: int = 256) -> np.ndarray:
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i : i + batch]})[0] for i in range(0, len(x), batch)])


def onnx_accuracy(path: Path, data, batch: int = 256) -> dict:
    """Top-1 / top-5 of the ONNX file itself (onnxruntime, CPU) over the test split."""

    sess = session(path)
    name, half = sess.get_inputs()[0].name, sess.get_inputs()[0].type == "tensor(float16)"
    n = top1 = top5 = 0
    k = min(5, data.num_classes)
    for x, y in make_loader(data, "test", batch, augment=False, shuffle=False):
        feed = x.numpy().astype(np.float16 if half else np.float32)
        out = sess.run(None, {name: feed})[0]
        pred = np.argsort(-out, axis=1)[:, :k]
        y = y.numpy()
        top1 += int((pred[:, 0] == y).sum())
        top5 += int((pred == y[:, None]).any(axis=1).sum())
        n += len(y)
    return {"top1": top1 / n, "top5": top5 / n, "images": n}
