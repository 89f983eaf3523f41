"""Pickle-free checkpoints: exact rebuild, refusal of malicious or foreign files, clear mismatch messages."""

import json
import os
import pickle

import pytest
import torch

import filterprune
from filterprune import serialization as ckpt
from filterprune.criteria import PruneContext, make_criterion
from filterprune.errors import RunError, UsageError
from filterprune.models import ModelSpec, build_model
from filterprune.pruning import PlanConfig, prune


def _pruned_resnet(tmp_path):
    spec = ModelSpec("resnet20")
    torch.manual_seed(0)
    model = build_model(spec)
    res = prune(model, make_criterion("l1"), PlanConfig(0.4), PruneContext(torch.randn(1, 3, 32, 32)), 10)
    ckpt.save(model, tmp_path / "pruned", spec, res.history, {"criterion": "l1"})
    return model.eval()


def test_load_rebuilds_the_pruned_model_exactly(tmp_path):
    model = _pruned_resnet(tmp_path)
    again = filterprune.load(tmp_path)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    assert json.loads((tmp_path / "pruned.json").read_text())["history"]  # replayable, JSON only


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_malicious_pickle_runs_no_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open("evil.pt", "wb") as f:
        pickle.dump({"conv.weight": _Evil()}, f)
    with pytest.raises(RunError, match="unreadable or unsafe"):
        ckpt.read_state_dict(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    _pruned_resnet(tmp_path)
    blob = (tmp_path / "pruned.safetensors").read_bytes()
    (tmp_path / "pruned.safetensors").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(RunError, match="unreadable|do not match the digest"):
        filterprune.load(tmp_path)


def test_checkpoint_of_another_architecture_names_the_keys(tmp_path):
    torch.save(build_model(ModelSpec("resnet20")).state_dict(), tmp_path / "r20.pt")
    with pytest.raises(UsageError, match="does not match.*(missing|unexpected)"):
        ckpt.load_weights(
            build_model(ModelSpec("vgg11")), ckpt.read_state_dict(tmp_path / "r20.pt"), "r20.pt"
        )


def test_tampered_history_is_refused(tmp_path):
    _pruned_resnet(tmp_path)
    doc = json.loads((tmp_path / "pruned.json").read_text())
    doc["history"][0][2] = ["rm -rf /"]
    (tmp_path / "pruned.json").write_text(json.dumps(doc))
    with pytest.raises(RunError, match="malformed pruning history"):
        filterprune.load(tmp_path)


def test_weights_only_pt_state_dict_loads(tmp_path):
    m = build_model(ModelSpec("resnet20"))
    torch.save({"state_dict": m.state_dict()}, tmp_path / "w.pth")
    state = ckpt.read_state_dict(tmp_path / "w.pth")
    fresh = build_model(ModelSpec("resnet20"))
    ckpt.load_weights(fresh, state, "w.pth")
    assert torch.equal(fresh.conv1.weight, m.conv1.weight)
