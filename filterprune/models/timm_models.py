"""Any timm model as ``timm:<name>`` (``pip install 'filterprune[timm]'``), via ``timm.create_model``.

Random init with ``num_classes`` set; pretrained weights come from a local file through ``--checkpoint``
(a 1000-class ImageNet file on data with other classes: the head is left fresh and trained, as for
``tv:``), or with ``--weights DEFAULT`` from the local caches timm itself would fill: the Hugging Face hub
cache (``models--timm--<tag>/snapshots/...``) or the torch hub cache (the file of the config's URL).
We find the file and hand timm its path, so none of timm's download code runs; huggingface_hub is kept
in offline mode as well while timm is in use (``hub_offline``). Nothing is downloaded.
The native input size and preprocessing come from the model's pretrained config.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch.nn as nn

from ..errors import UsageError
from ..state_dict import check_finite, differences, load_error

LIST_HINT = (
    'list them with: python -c "import timm; print(timm.list_models())" '
    "(a pattern: timm.list_models('*resnet*'))"
)


@contextlib.contextmanager
def hub_offline():
    """huggingface_hub reads ``HF_HUB_OFFLINE`` once, when it is imported (by ``import timm``): set it
    before that import, and force the constant of a hub the host process imported earlier. Both are given
    back on the way out, so a Python host's own hub use is not changed behind its back."""
    saved = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    hub = sys.modules.get("huggingface_hub.constants")
    before = getattr(hub, "HF_HUB_OFFLINE", None)
    if hub is not None:
        hub.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved
        hub = sys.modules.get("huggingface_hub.constants")
        if hub is not None:  # imported here: as the environment without us would have made it
            hub.HF_HUB_OFFLINE = before if before is not None else _env_offline()


def _env_offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.upper() in ("1", "ON", "YES", "TRUE")


def _timm():
    try:
        with hub_offline():
            import timm
    except ImportError:
        raise UsageError(
            "timm: models need the optional timm package: pip install 'filterprune[timm]'"
        ) from None
    return timm


def _check_name(name: str):
    timm = _timm()
    if not timm.is_model(name):
        raise UsageError(f"unknown timm model {name!r}; {LIST_HINT}")
    return timm


def timm_model(name, num_classes, in_channels, image_size, args=None, weights=None):
    """The architecture, random init (pretrained weights: ``pretrained``, from the local caches)."""
    timm = _check_name(name)
    kwargs = {**(args or {}), "num_classes": num_classes, "in_chans": in_channels}
    try:
        with hub_offline():
            return timm.create_model(name, pretrained=False, **kwargs)
    except (TypeError, ValueError) as e:  # an unknown keyword; a value the builder refuses
        raise UsageError(
            f"timm:{name} does not take these model_args ({type(e).__name__}: "
            f"{(str(e).splitlines() or [''])[0][:200]})",
            ("model_args",),
        ) from None


def native_input(name: str, weights: str | None) -> dict:
    timm = _check_name(name)
    cfg = timm.get_pretrained_cfg(name)
    cfg = cfg.to_dict() if cfg is not None and hasattr(cfg, "to_dict") else (cfg or {})
    size = int(cfg.get("input_size", (3, 224, 224))[-1])
    crop = float(cfg.get("crop_pct", 0.875) or 0.875)
    info: dict[str, Any] = {
        "image_size": size,
        "min_size": int((cfg.get("min_input_size") or (3, 1, 1))[-1]),
        "resize_size": int(round(size / crop)),
    }
    if weights is not None:
        info.update(
            mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
            std=tuple(cfg.get("std", (0.229, 0.224, 0.225))),
            weights=weights,
        )
    return info


def _hub_cache() -> Path:
    """The Hugging Face hub cache that ``hf_hub_download`` would use."""
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None:
        return Path(hub.HF_HUB_CACHE)
    env = os.environ
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(
        os.path.expanduser(
            env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE") or os.path.join(home, "hub")
        )
    )


def cached_weights(cfg: dict) -> tuple[Path | None, list[str]]:
    """The local file of a pretrained config's weights, and every place looked: the hub snapshot
    (``model.safetensors``, else ``pytorch_model.bin``, as timm asks for them) of ``hf_hub_id``, then
    the torch hub checkpoint of ``url``. Reads the file system only."""
    import torch.hub

    files: list[Path] = []
    places: list[str] = []
    if cfg.get("file"):
        files.append(Path(cfg["file"]))
        places.append(cfg["file"])
    if cfg.get("hf_hub_id"):
        repo, _, rev = cfg["hf_hub_id"].partition("@")
        folder = _hub_cache() / f"models--{repo.replace('/', '--')}"
        rev = rev or "main"
        ref = folder / "refs" / rev
        commit = (
            rev if re.fullmatch(r"[0-9a-f]{40}", rev) else ref.read_text().strip() if ref.is_file() else None
        )
        names = (
            [cfg["hf_hub_filename"]]
            if cfg.get("hf_hub_filename")
            else ["model.safetensors", "pytorch_model.bin"]
        )
        if commit:
            files += [folder / "snapshots" / commit / n for n in names]
        places.append(f"{folder}/snapshots/{commit or f'(refs/{rev})'}/{' or '.join(names)}")
    if cfg.get("url"):
        files.append(Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(cfg["url"]).path))
        places.append(str(files[-1]))
    return next((p for p in files if p.is_file()), None), places


def pretrained(spec) -> tuple[nn.Module, dict]:
    """``--weights DEFAULT``: timm's pretrained weights from the local caches only; timm is handed the
    file (its config's URL and hub id dropped), so no download path can run."""
    name = spec.name[5:]
    if spec.weights != "DEFAULT":
        raise UsageError(
            f"timm:{name}: --weights takes DEFAULT (timm's own cache); for a file use --checkpoint"
        )
    timm = _check_name(name)
    cfg = timm.get_pretrained_cfg(name)
    cfg = cfg.to_dict() if cfg is not None and hasattr(cfg, "to_dict") else dict(cfg or {})
    path, looked = cached_weights(cfg)
    if path is None:
        where = ", then ".join(looked) if looked else "its config names no weights"
        raise UsageError(
            f"pretrained weights of timm:{name} are not in the local caches (nothing is "
            f"downloaded): looked for {where}; place the file there or pass --checkpoint FILE"
        )
    kwargs = {**(spec.args or {}), "num_classes": spec.num_classes, "in_chans": spec.in_channels}
    overlay = {"file": str(path), "url": None, "hf_hub_id": None, "hf_hub_filename": None, "source": None}
    try:
        with hub_offline(), _loads_recorded() as loads:
            model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    except TypeError as e:
        raise UsageError(f"timm:{name} does not take these --model-args ({str(e)[:200]})") from None
    except Exception as e:
        raise UsageError(
            f"{path} does not hold the weights of timm:{name} ({load_error(e)}); "
            "pass --checkpoint FILE instead"
        ) from None
    heads = cfg.get("classifier") or ()
    head = {f"{c}.{p}" for c in ((heads,) if isinstance(heads, str) else heads) for p in ("weight", "bias")}
    missing = [k for r in loads for k in r.missing_keys if k not in head]
    extra = [k for r in loads for k in r.unexpected_keys]
    if missing or extra:  # timm loads non-strictly when it drops the head, and only logs what did not fit
        raise UsageError(
            f"{path} does not hold the weights of timm:{name} ({differences(missing, extra, [])}); "
            "pass --checkpoint FILE instead"
        )
    check_finite(model.state_dict(), str(path))
    replaced = sorted(k for r in loads for k in r.missing_keys if k in head)
    return model, {"weights": "DEFAULT", "weights_file": str(path), "head_replaced": replaced}


@contextlib.contextmanager
def _loads_recorded():
    """What each ``load_state_dict`` left out while timm builds a pretrained model (its missing and
    unexpected keys): timm itself only logs them."""
    loads: list = []
    original = nn.Module.load_state_dict

    def load(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        loads.append(result)
        return result

    nn.Module.load_state_dict = load
    try:
        yield loads
    finally:
        nn.Module.load_state_dict = original
