"""One definition per option: every CompressConfig field is a `compress` flag with help text and a valid
sweep key, both generated from the field; parsing a field's default back gives the default."""
import dataclasses

import pytest

from filterprune.cli import TRAIN_OPTIONS, build_parser
from filterprune.config import CompressConfig
from filterprune.options import flag_of
from filterprune.sweep.grid import NOT_HASHED, load_sweep

FIELDS = dataclasses.fields(CompressConfig)


def _actions(command: str) -> dict:
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    return {a.dest: a for a in sub._actions if a.dest != "help"}


def test_every_field_is_a_compress_flag_with_help():
    actions = _actions("compress")
    assert {f.name for f in FIELDS} == set(actions)
    for f in FIELDS:
        a = actions[f.name]
        assert a.help and len(a.help) > 10, f.name
        assert flag_of(f) in (a.option_strings or [a.dest]), (f.name, a.option_strings)


def test_defaults_parse_back_to_themselves():
    args = build_parser().parse_args(["compress", "resnet20", "--criterion", "l1"])
    for f in FIELDS:
        if f.default is not dataclasses.MISSING:
            assert getattr(args, f.name) == f.default, f.name


def test_train_takes_the_same_definitions():
    actions, compress = _actions("train"), _actions("compress")
    for name in TRAIN_OPTIONS:
        assert actions[name].help == compress[name].help and actions[name].default == compress[name].default


TARGETS = {"sparsity": 0.3, "target_macs": 0.5, "target_speedup": 2.0, "target_latency": 5.0}  # exactly one is set


@pytest.mark.parametrize("field", [f for f in FIELDS if f.default is not dataclasses.MISSING
                                   and f.name not in NOT_HASHED], ids=lambda f: f.name)
def test_every_field_is_a_sweep_key(tmp_path, field):
    import yaml

    value = TARGETS.get(field.name, list(field.default) if isinstance(field.default, tuple) else field.default)
    base = {"model": "resnet20", "criterion": "l1", "dataset": "synthetic", field.name: value}
    if field.name not in TARGETS:
        base["sparsity"] = 0.4
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"base": base}))
    (run,) = load_sweep(path).runs
    assert run.config[field.name] == value


def test_a_criterion_added_from_outside_the_package_runs_the_pipeline(tmp_path):
    """README's recipe: one class that subclasses Criterion and registers itself; nothing else changes."""
    import json

    from filterprune.cli import main
    from filterprune.criteria import CRITERIA, Criterion, root_of

    @CRITERIA.register("test-l2", help="L2 norm of the conv's own filter (added by a test)")
    class L2(Criterion):
        name = "test-l2"

        def score(self, group):
            module, idxs = root_of(group)
            return module.weight.detach()[idxs].flatten(1).norm(dim=1)

    try:
        out = tmp_path / "run"
        assert main(["compress", "resnet20", "--criterion", "test-l2", "--sparsity", "0.5", "--dataset", "synthetic",
                     "--epochs", "0", "--finetune-epochs", "0", "--no-export", "--no-bench", "--out", str(out)]) == 0
        r = json.loads((out / "report.json").read_text())
        assert r["criterion"] == "test-l2" and r["layers"][0]["channels_after"] == 8
    finally:
        CRITERIA._items.pop("test-l2"), CRITERIA._help.pop("test-l2")
