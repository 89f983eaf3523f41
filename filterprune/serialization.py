"""Checkpoints without pickle: ``<stem>.safetensors`` (weights) + ``<stem>.json`` (architecture, pruning
history, preprocessing). Loading rebuilds the dense model, replays the pruning history through the
dependency graph, then loads the weights strictly, so the result is exactly the saved network.

A dense model is the same format with an empty history. Foreign ``.pt/.pth`` state dicts load with
``torch.load(weights_only=True)``, which refuses to run pickled code. A model of the user's own factory
records the SHA-256 of the factory's code (``code_sha256``): trusting a run (``trust_code``) imports
that code only, checked against this record and the ``report.json`` beside it (``vouch``).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import save_file

from . import limits
from .errors import RunError, UsageError
from .fileio import atomic_write_json, read_small_json, sha256_file, temp_path, umask
from .models import ModelSpec, activation_sizes_of, build_model, factory, sizes_on_meta
from .models.factory import is_factory_ref
from .pruning.graph import build_graph
from .pruning.safety import restore
from .state_dict import load_weights, read_state_dict

FORMAT = "filterprune/1"


def save(
    model: nn.Module, path: Path, spec: ModelSpec, history: list | None = None, meta: dict | None = None
) -> None:
    """Write ``path.with_suffix('.safetensors')`` and ``.json``; ``meta`` is free-form (JSON-safe)."""
    path = Path(path).with_suffix("")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    fd, tmp = temp_path(path)
    os.close(fd)
    try:
        try:
            save_file(state, tmp)
        except SafetensorError as e:  # a full disk, a quota: the environment, one line
            raise RunError(
                f"cannot write {path.with_suffix('.safetensors')}: "
                f"{(str(e).splitlines() or ['write failed'])[0][:200]}"
            ) from None
        os.chmod(tmp, 0o666 & ~umask())  # safetensors writes its file 0600; every other output is 0644
        digest = sha256_file(Path(tmp))
        os.replace(tmp, path.with_suffix(".safetensors"))
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    doc = {
        "format": FORMAT,
        "model": spec.to_dict(),
        "history": history or [],
        "meta": meta or {},
        "weights_sha256": digest,
    }
    code = factory.code_digest(spec.name) if is_factory_ref(spec.name) else None
    if code:  # the code the model was built from: what trust_code will import, and nothing else
        doc["code_sha256"] = code
    atomic_write_json(path.with_suffix(".json"), doc)


def _find_json(path: Path) -> Path:
    path = Path(path)
    if path.is_dir():
        for stem in ("pruned", "model"):
            if (path / f"{stem}.json").is_file():
                return path / f"{stem}.json"
        raise UsageError(f"{path}: no pruned.json or model.json in this folder")
    if path.suffix == ".safetensors" and path.with_suffix(".json").is_file():
        return path.with_suffix(".json")
    if path.suffix == ".json" and path.is_file():
        return path
    raise UsageError(
        f"not a filterprune checkpoint: {path} (expected a run folder, X.json or X.safetensors with X.json)"
    )


def read_meta(path: Path, trust_code: bool = False) -> dict:
    """The validated JSON side of a checkpoint. With ``trust_code`` (or ``--trust-code`` for the process)
    a user factory is checked against the run's records and admitted for import (``vouch``)."""
    jpath = _find_json(path)
    doc = read_small_json(jpath, "checkpoint description")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise RunError(f"{jpath}: not a {FORMAT} checkpoint description")
    hist = doc.get("history")
    if not isinstance(hist, list) or not all(
        isinstance(h, list)
        and len(h) == 3
        and isinstance(h[0], str)
        and isinstance(h[1], bool)
        and isinstance(h[2], list)
        and all(type(i) is int and i >= 0 for i in h[2])
        for h in hist
    ):
        raise RunError(f"{jpath}: malformed pruning history")
    if not isinstance(doc.get("meta", {}), dict) or not isinstance(doc.get("weights_sha256", ""), str):
        raise RunError(f"{jpath}: malformed meta or weights_sha256")
    if "code_sha256" in doc and not _is_sha256(doc["code_sha256"]):
        raise RunError(f"{jpath}: malformed code_sha256")
    try:
        doc["spec"] = ModelSpec.from_dict(doc["model"])
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise RunError(f"{jpath}: malformed model description ({e})") from None
    spec = doc["spec"]  # the description lies outside the weights' digest: the sizes it asks for are checked
    if not is_factory_ref(spec.name):  # user code is never imported to read a description: load() checks it
        _check_sizes(spec, sizes_on_meta(spec) or (0, *activation_sizes_of(spec)), jpath)
    doc["path"] = jpath
    if is_factory_ref(spec.name) and (trust_code or factory.trusting_runs()):
        vouch(doc)
    return doc


def _is_sha256(value) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def vouch(doc: dict) -> None:
    """Trust covers the code a run was made from: the factory named in the checkpoint is admitted for
    import only if the ``report.json`` beside it (when there is one) names the same reference, the two
    records of its SHA-256 agree, and the file has that SHA-256 now. Otherwise one line says what differs
    and nothing is imported. When neither records a hash (a checkpoint written before hashes were recorded,
    with no report beside it) it is refused too: nothing says which code the run was made from."""
    spec, jpath = doc["spec"], doc["path"]
    ref = factory.canonical(spec.name)
    if ref.startswith("object:") or factory.is_trusted(ref):  # handed over in this process: the user's word
        return
    hashes = {jpath.name: doc.get("code_sha256")}
    report = jpath.parent / "report.json"
    if report.is_file():
        src = read_small_json(report, "run report")
        src = src.get("model_source") if isinstance(src, dict) else None
        src = src if isinstance(src, dict) else {}  # no model_source: no name, refused below
        named = src.get("name")
        if not isinstance(named, str) or factory.canonical(named) != ref:
            raise UsageError(
                f"{jpath.name} names {ref} but {report} names "
                f"{named if isinstance(named, str) else 'no model factory'}: trust covers the "
                "code the run was made from, so neither is imported"
            )
        if src.get("code_sha256") is not None and not _is_sha256(src["code_sha256"]):
            raise UsageError(f"{report}: malformed model_source.code_sha256, so {ref} cannot be checked")
        hashes["report.json"] = src.get("code_sha256")
    known = {k: v for k, v in hashes.items() if v}
    if not known:
        raise UsageError(
            f"{' and '.join(hashes)} of {jpath.parent} records no SHA-256 of {ref}'s code "
            "(written before runs recorded it), so nothing says it is the code the run was made "
            "from: hand over the dense module instead, filterprune.load(DIR, model=...)"
        )
    if len(set(known.values())) > 1:
        raise UsageError(
            f"{jpath.name} and report.json disagree on the SHA-256 of {ref}'s code "
            f"({' vs '.join(v[:16] + '...' for v in known.values())}): neither is trusted"
        )
    factory.admit(ref, next(iter(known.values())), f"the run {jpath.parent}")


def _check_sizes(spec: ModelSpec, sizes: tuple[int, int, int], jpath) -> None:
    """The bounds ``compress`` applied when it wrote the run, checked before the model is built for real:
    its parameters (a reader holds the dense model and the pruned one) and its traced activations (loading
    traces the dense model). ``sizes``: ``models.sizes_on_meta``."""
    params, _, total = sizes
    too_big = limits.over_param_budget(params, "the dense model and the pruned one") or (
        limits.over_trace_budget(total)
    )
    if too_big:
        args = f" (model_args {limits.show(spec.args, 80)})" if spec.args else ""
        raise RunError(
            f"{jpath}: describes a {spec.name}{args} on {spec.in_channels}x{spec.image_size}x"
            f"{spec.image_size} inputs, too large to load: {too_big}"
        )


def load(path: str | Path, trust_code: bool = False, model: nn.Module | None = None) -> nn.Module:
    """Rebuild a saved (pruned or dense) model exactly: a run folder, X.json or X.safetensors.

    A model built by the user's own factory is rebuilt by importing that code only with ``trust_code``;
    or ``model`` hands over the dense module (pruned here in place and returned), which never imports;
    when that fails (a module of another width, say) it is left as it was handed over.
    """
    doc = read_meta(Path(path), trust_code=trust_code and model is None)
    if model is not None and not isinstance(model, nn.Module):
        raise UsageError(f"model= must be the dense torch.nn.Module, got a {type(model).__name__}")
    if model is None:
        return _load(doc, trust_code, None)
    pristine = copy.deepcopy(model)  # the caller's module is pruned in place: as it was if that fails
    try:
        return _load(doc, trust_code, model)
    except BaseException:
        restore(model, pristine)
        raise


def _load(doc: dict, trust_code: bool, model: nn.Module | None) -> nn.Module:
    spec: ModelSpec = doc["spec"]
    if is_factory_ref(spec.name):  # the user's code (trusted) or module: its sizes are checked on it
        if model is None:
            sizes = sizes_on_meta(spec)  # trusted by now: built on the meta device first where it can be
            if sizes is not None:
                _check_sizes(spec, sizes, doc["path"])
            model = build_model(spec, trust_code=trust_code)
        shape = (spec.in_channels, spec.image_size, spec.image_size)
        params = sum(p.numel() for p in model.parameters())
        _check_sizes(spec, (params, *limits.activation_sizes(model, shape)), doc["path"])
    model = rebuild(spec, doc["history"], str(doc["path"]), trust_code=trust_code, model=model)
    weights = doc["path"].with_suffix(".safetensors")
    if doc.get("weights_sha256") and weights.is_file() and sha256_file(weights) != doc["weights_sha256"]:
        raise RunError(
            f"{weights}: unreadable weights: they do not match the digest in {doc['path'].name} "
            "(truncated, damaged or from another save)"
        )
    state = read_state_dict(weights)
    load_weights(model, state, str(doc["path"].with_suffix(".safetensors")))
    return model.eval()


def rebuild(
    spec: ModelSpec,
    history: list,
    source: str = "history",
    trust_code: bool = False,
    model: nn.Module | None = None,
) -> nn.Module:
    """The architecture a pruning history describes: a freshly initialised dense ``spec`` model (or the
    dense ``model`` handed over) cut by replaying ``history`` (the weights are the model's own init; load
    weights on top, or train it). A user factory is imported only when trusted (``models.factory``)."""
    model = build_model(spec, trust_code=trust_code) if model is None else model
    if history:
        DG = build_graph(model, torch.randn(1, spec.in_channels, spec.image_size, spec.image_size))
        try:
            DG.load_pruning_history(history)
        except (AttributeError, IndexError, KeyError, RuntimeError, ValueError) as e:
            msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            raise RunError(f"{source}: pruning history does not fit {spec.name} ({msg})") from None
    return model
