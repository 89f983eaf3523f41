#!/usr/bin/env python3
"""Classify images with an exported ONNX classifier and time it, with nothing but onnxruntime + numpy
(+ Pillow to read images). No torch, no filterprune.

    python run_onnx.py model.onnx cat.png dog.jpg [--provider cpu|cuda|tensorrt|NAME] [--iters 100]

The preprocessing comes from the file's metadata (written by `filterprune export`): input size,
mean/std, class names. Files from elsewhere work with --size/--mean/--std. Timing runs the model on the
given images (or on random inputs when none are given) through IOBinding, with inputs and outputs on the
provider's device, so host<->device copies are not timed. Bad input ends with one line on stderr and
exit status 2; a failure while running ends with exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # else onnxruntime reports to Microsoft over the network
import onnxruntime as ort  # noqa: E402 - after the telemetry switch, which it reads when imported

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "dml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}
ON_CUDA = {"CUDAExecutionProvider", "TensorrtExecutionProvider"}
MAX_INPUT_VALUES = 1 << 26  # one input batch (256 MiB of float32): a file or a flag cannot ask for more


class Usage(Exception):
    """The request is wrong: exit 2."""


def clean(value, width: int = 200) -> str:
    """Text from a file (metadata, class names) or a user (paths) made safe for the terminal: control
    characters and escape sequences shown escaped, never obeyed; cut to ``width`` characters."""
    text = str(value)
    text = text if len(text) <= width else text[:width] + "..."
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, no usage dump
        raise Usage(message)


def provider_name(name: str) -> str:
    full = PROVIDERS.get(name.lower(), name)
    if full not in PROVIDERS.values() and full not in ort.get_all_providers():
        raise Usage(f"unknown provider {name!r}; valid: {', '.join(PROVIDERS)} or a full onnxruntime name")
    if full not in ort.get_available_providers():
        raise Usage(
            f"provider {full} is not available in this onnxruntime build "
            f"(available: {', '.join(ort.get_available_providers())}); see export/README.md"
        )
    return full


def provider_options(full: str, shape: list[int], trt_fp16: bool, cache: str, trt_int8: bool = False) -> dict:
    """TensorRT's engine settings (one shape profile: the timing batch); ``trt_int8`` for a QDQ file, whose
    quantized layers TensorRT then builds in int8."""
    if full != "TensorrtExecutionProvider":
        return {}
    dims = "x".join(str(d) for d in shape)
    return {
        "trt_fp16_enable": trt_fp16,
        "trt_int8_enable": trt_int8,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": cache,
        "trt_profile_min_shapes": f"input:{dims}",
        "trt_profile_opt_shapes": f"input:{dims}",
        "trt_profile_max_shapes": f"input:{dims}",
    }


def open_session(path: str, provider: str, options: dict, threads: int | None) -> ort.InferenceSession:
    if not os.path.isfile(path):
        raise Usage(f"model file not found: {path}")
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    providers = [(provider, options)] + (
        [] if provider == "CPUExecutionProvider" else ["CPUExecutionProvider"]
    )
    try:
        return ort.InferenceSession(path, so, providers=providers)
    except Exception as e:
        first = (str(e).splitlines() or [""])[0][:200]
        raise Usage(f"{path} is not a loadable ONNX model ({type(e).__name__}: {first})") from None


def metadata(sess: ort.InferenceSession) -> dict:
    """metadata_props, with JSON values decoded."""
    out = {}
    for k, v in sess.get_modelmeta().custom_metadata_map.items():
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def preprocessing(sess, md: dict, a) -> tuple[list[int], np.ndarray, np.ndarray, np.dtype]:
    """(input shape with batch -1 if dynamic, mean, std, dtype) from metadata, overridden by flags."""
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else -1 for d in inp.shape]
    if len(shape) != 4:
        raise Usage(f"expected an image classifier with NCHW input, got input shape {inp.shape}")
    if a.size:
        shape[2] = shape[3] = a.size
    elif shape[2] < 1 or shape[3] < 1:
        if "input_shape" not in md:
            raise Usage("the model has no input size in its metadata or graph; pass --size")
        shape[2:] = md["input_shape"][2:]
    c = shape[1] if shape[1] > 0 else 3
    mean = np.array(a.mean if a.mean else md.get("mean", [0.0] * c), dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.array(a.std if a.std else md.get("std", [1.0] * c), dtype=np.float32).reshape(1, -1, 1, 1)
    if mean.size != c or std.size != c:
        raise Usage(f"mean/std need {c} values, got {mean.size} and {std.size}")
    dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
    return shape, mean, std, dtype


FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF")
MAX_PIXELS = 8192 * 8192


def load_images(
    paths: list[str], shape: list[int], mean, std, dtype, resize: int | None = None
) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    mode = "L" if shape[1] == 1 else "RGB"
    batch = []
    for p in paths:
        if not os.path.isfile(p):
            raise Usage(f"image not found: {p}")
        try:
            with Image.open(
                p, formats=FORMATS
            ) as img:  # never another decoder (an EPS named .png: Ghostscript)
                if img.width * img.height > MAX_PIXELS:
                    raise Usage(
                        f"{p}: {img.width}x{img.height} pixels is more than {MAX_PIXELS} "
                        "(a decompression bomb?)"
                    )
                img = img.convert(mode)
                if resize:  # as filterprune evaluated it: shorter side to `resize`, then the center crop
                    scale = resize / min(img.width, img.height)
                    img = img.resize(
                        (max(shape[3], round(img.width * scale)), max(shape[2], round(img.height * scale))),
                        Image.BILINEAR,
                    )
                    left, top = (img.width - shape[3]) // 2, (img.height - shape[2]) // 2
                    img = img.crop((left, top, left + shape[3], top + shape[2]))
                else:
                    img = img.resize((shape[3], shape[2]))  # Pillow's default filter, as in training
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
            raise Usage(f"{p}: not a readable image ({type(e).__name__})") from None
        x = np.asarray(img, dtype=np.float32).reshape(shape[2], shape[3], -1).transpose(2, 0, 1) / 255.0
        batch.append(x)
    return ((np.stack(batch) - mean) / std).astype(dtype)


def _resize(md: dict, a) -> int | None:
    """The short side to resize to before the center crop (image-folder models), unless --size overrides."""
    if a.size or "resize_size" not in md:
        return None
    return int(md["resize_size"])


def fit_batch(x: np.ndarray, n: int) -> np.ndarray:
    """``n`` rows: the given images repeated (so timing never runs on zeros)."""
    return np.concatenate([x] * (n // len(x) + 1))[:n]


def run(sess, x: np.ndarray, fixed: int) -> np.ndarray:
    """Logits for every row of x, in chunks of the model's fixed batch when it has one."""
    name = sess.get_inputs()[0].name
    if fixed <= 0:
        return sess.run(None, {name: x})[0]
    outs = [
        sess.run(None, {name: fit_batch(x[i : i + fixed], fixed)})[0][: len(x[i : i + fixed])]
        for i in range(0, len(x), fixed)
    ]
    return np.concatenate(outs)


def time_model(sess, x: np.ndarray, device: str, warmup: int, iters: int) -> np.ndarray:
    """Milliseconds per call, inputs and outputs bound on ``device``."""
    binding = sess.io_binding()
    binding.bind_ortvalue_input(sess.get_inputs()[0].name, ort.OrtValue.ortvalue_from_numpy(x, device, 0))
    binding.bind_output(sess.get_outputs()[0].name, device)
    times = []
    for i in range(warmup + iters):
        t = time.perf_counter()
        sess.run_with_iobinding(binding)
        if i >= warmup:
            times.append((time.perf_counter() - t) * 1e3)
    return np.array(times)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64) - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _count(value) -> float | None:
    try:
        return float(str(value)[:30])
    except ValueError:
        return None


def describe(md: dict, shape, dtype, provider) -> str:
    parts = [clean(md.get("model", "model"), 80)]
    if "criterion" in md:
        parts.append(
            f"pruned with {clean(md['criterion'], 40)} at channel sparsity {clean(md.get('sparsity'), 40)}"
        )
    dense, pruned = _count(md.get("dense_macs")), _count(md.get("pruned_macs"))
    if dense is not None and pruned is not None:
        parts.append(f"MACs {dense / 1e6:.1f}M -> {pruned / 1e6:.1f}M")
    if md.get("precision") == "int8":  # a quantized file: float input and output, integer kernels inside
        cal = md.get("calibration") if isinstance(md.get("calibration"), dict) else {}
        parts.append(f"precision int8 ({clean(cal.get('images', '?'), 20)} calibration images)")
    elif "precision" in md:
        parts.append(f"precision {clean(md['precision'], 10)}")
    dims = "x".join("N" if d < 0 else str(d) for d in shape)
    return f"{'; '.join(parts)}; input {dims} {np.dtype(dtype).name}; provider {provider}"


def is_int8(md: dict) -> bool:
    """A quantized (QDQ) file, as its metadata says: float input and output, integer kernels inside."""
    return md.get("precision") == "int8"


def tensorrt_note(md: dict) -> str | None:
    """Why TensorRT may run part of an INT8 file in another precision: its explicit quantization takes
    symmetric int8 only, and filterprune's CPU files have uint8 activations."""
    if is_int8(md) and "uint8 activations" in str(md.get("quantization", "")):
        return (
            "note: this INT8 file has uint8 activations (onnxruntime's choice for x86 CPUs); TensorRT takes "
            "symmetric int8 only, so the layers it cannot take run outside TensorRT's int8 kernels"
        )
    return None


def main(argv=None) -> int:
    ap = Parser(description="Classify images with an ONNX classifier and time it.")
    ap.add_argument("model", help="the .onnx file")
    ap.add_argument("images", nargs="*", help="image files (none: time on random inputs only)")
    ap.add_argument("--provider", default="cpu", help=f"{', '.join(PROVIDERS)}, or a full onnxruntime name")
    ap.add_argument("--top", type=int, default=5)
    ap.add_argument("--batch", type=int, default=1, help="batch size for timing (default 1)")
    ap.add_argument("--iters", type=int, default=50, help="timed calls")
    ap.add_argument(
        "--warmup", type=int, default=10, help="untimed calls first (TensorRT builds its engine here)"
    )
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: onnxruntime's)")
    ap.add_argument("--size", type=int, default=None, help="input side, for files without metadata")
    ap.add_argument(
        "--mean", type=float, nargs="+", default=None, help="per-channel mean (default: metadata)"
    )
    ap.add_argument("--std", type=float, nargs="+", default=None, help="per-channel std (default: metadata)")
    ap.add_argument("--trt-fp16", action="store_true", help="TensorRT: build an fp16 engine")
    ap.add_argument("--trt-cache", default="trt_cache", help="TensorRT: engine cache folder")
    try:
        a = ap.parse_args(argv)
        if a.top < 1 or a.batch < 1 or a.iters < 1 or a.warmup < 0:
            raise Usage("--top, --batch and --iters must be >= 1, --warmup >= 0")
        provider = provider_name(a.provider)
        probe = open_session(a.model, "CPUExecutionProvider", {}, a.threads)
        md = metadata(probe)
        try:  # the file's metadata and the flags: anything wrong in them is bad input (exit 2)
            shape, mean, std, dtype = preprocessing(probe, md, a)
        except Usage:
            raise
        except Exception as e:
            raise Usage(
                f"{a.model}: unusable input description ({type(e).__name__}: {str(e)[:200]})"
            ) from None
        fixed = shape[0]
        if fixed > 0 and a.batch != fixed:
            a.batch = fixed  # a fixed-batch file only takes its own batch size
        if not all(type(d) is int and d > 0 for d in shape[1:]):
            raise Usage(
                f"{clean(a.model)}: input shape {clean(shape, 80)} is not a positive NCHW size (pass --size)"
            )
        if a.batch * int(np.prod(shape[1:], dtype=np.float64)) > MAX_INPUT_VALUES:
            raise Usage(
                f"batch {a.batch} of {'x'.join(map(str, shape[1:]))} inputs is more than "
                f"{MAX_INPUT_VALUES:,} values; lower --batch or --size"
            )
        profile = [a.batch, *shape[1:]]
        if provider == "TensorrtExecutionProvider" and tensorrt_note(md):
            print(tensorrt_note(md), file=sys.stderr)
        options = provider_options(provider, profile, a.trt_fp16, a.trt_cache, is_int8(md))
        sess = (
            probe
            if provider == "CPUExecutionProvider"
            else open_session(a.model, provider, options, a.threads)
        )
        try:
            x = load_images(a.images, shape, mean, std, dtype, _resize(md, a)) if a.images else None
        except Usage:
            raise
        except Exception as e:  # a decompression bomb, an image the model's input cannot take
            raise Usage(f"cannot use the images ({type(e).__name__}: {str(e)[:200]})") from None
        print(describe(md, shape, dtype, sess.get_providers()[0]))
        names = md.get("class_names")
        if x is not None:
            probs = softmax(run(sess, x, fixed))
            for path, p in zip(a.images, probs):
                print(clean(path, 4096))
                for rank, c in enumerate(np.argsort(-p)[: a.top], 1):
                    label = (
                        clean(names[c], 60) if isinstance(names, list) and c < len(names) else f"class {c}"
                    )
                    print(f"  {rank}. {label:<20} {p[c]:.4f}")
        rng = np.random.default_rng(0)
        timed = (
            fit_batch(x, a.batch)
            if x is not None
            else ((rng.random((a.batch, *shape[1:]), dtype=np.float32) - mean) / std).astype(dtype)
        )
        device = "cuda" if sess.get_providers()[0] in ON_CUDA else "cpu"
        ms = time_model(sess, np.ascontiguousarray(timed), device, a.warmup, a.iters)
        print(
            f"latency: batch {a.batch}, {sess.get_providers()[0]}, {a.iters} calls after {a.warmup} warm-up: "
            f"median {np.median(ms):.3f} ms, p90 {np.percentile(ms, 90):.3f} ms, min {ms.min():.3f} ms "
            f"({1e3 * a.batch / np.median(ms):.1f} images/s)"
        )
        return 0
    except Usage as e:
        print(f"run_onnx: error: {clean(e, 2000)}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help
        return int(e.code or 0)
    except Exception as e:
        print(
            f"run_onnx: failed: {type(e).__name__}: {clean((str(e).splitlines() or [''])[0], 300)}",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
