"""One definition per option: every option of every group is a flag of each command that uses it (same
default, help text present), a valid sweep key and a Python keyword, all generated from the field."""

import dataclasses
import re

import pytest

from filterprune.cli import QUANT_KEYS, TRAIN_KEYS, build_parser
from filterprune.config import GROUPS, Bench, CompressConfig, all_keys
from filterprune.options import flag_of, key_of, options
from filterprune.sweep.grid import NOT_HASHED, load_sweep

FIELDS = [f for g in GROUPS.values() for f in options(g)]


def _actions(command: str) -> dict:
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    return {a.dest: a for a in sub._actions if a.dest != "help"}


def test_every_option_is_a_compress_flag_with_help_and_its_default_shown():
    actions = _actions("compress")
    assert {key_of(f) for f in FIELDS} == set(actions)
    for f in FIELDS:
        a = actions[key_of(f)]
        assert a.help and len(a.help) > 10, key_of(f)
        assert flag_of(f) in (a.option_strings or [a.dest]), (key_of(f), a.option_strings)
        if f.default not in (dataclasses.MISSING, None, False, True, ()):
            assert "default" in a.help, key_of(f)


def test_every_key_belongs_to_one_group():
    assert len(all_keys()) == len(FIELDS)


def test_defaults_parse_back_to_themselves():
    args = build_parser().parse_args(["compress", "resnet20", "--criterion", "l1"])
    for f in FIELDS:
        if f.default is not dataclasses.MISSING:
            assert getattr(args, key_of(f)) == f.default, key_of(f)


def test_compress_help_is_grouped_by_stage():
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["compress"]
    titles = [g.title for g in sub._action_groups if g._group_actions]
    assert {"model", "data", "baseline training", "finetuning", "pruning", "benchmark", "output"} <= set(
        titles
    )
    crit = _actions("compress")["criterion"]
    assert "l1" in crit.help or crit.choices is None  # listed by `filterprune list criteria`


def test_export_takes_compress_precision_and_calibration():
    export, compress = _actions("export"), _actions("compress")
    for k in QUANT_KEYS[:2]:
        assert export[k].default == compress[k].default and export[k].help == compress[k].help, k


def test_train_and_bench_take_the_same_definitions():
    compress = _actions("compress")
    train = _actions("train")
    for keys in TRAIN_KEYS.values():
        for k in keys:
            assert train[k].help == compress[k].help and train[k].default == compress[k].default, k
    bench = _actions("bench")
    for f in options(Bench):  # `filterprune bench --iters` is compress's --bench-iters
        k = key_of(f)
        if k in QUANT_KEYS[1:]:  # calibration and the int8 accuracy check: not bench's
            assert k not in bench and compress[k].default == f.default, k
            continue
        assert bench[k].default == compress[k].default == f.default, k
        assert "--" + f.name.replace("_", "-") in bench[k].option_strings


TARGETS = {
    "sparsity": 0.3,
    "target_macs": 0.5,
    "target_speedup": 2.0,
    "target_latency": 5.0,
}  # exactly one is set


@pytest.mark.parametrize(
    "field",
    [f for f in FIELDS if f.default is not dataclasses.MISSING and key_of(f) not in NOT_HASHED],
    ids=key_of,
)
def test_every_option_is_a_sweep_key_and_a_python_keyword(tmp_path, field):
    import yaml

    key = key_of(field)
    value = TARGETS.get(key, list(field.default) if isinstance(field.default, tuple) else field.default)
    base = {"model": "resnet20", "criterion": "l1", "dataset": "synthetic", key: value}
    if key not in TARGETS:
        base["sparsity"] = 0.4
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"base": base}))
    (run,) = load_sweep(path).runs
    assert run.config[key] == value
    cfg = CompressConfig.of(**{k: tuple(v) if isinstance(v, list) else v for k, v in base.items()})
    assert cfg.flat()[key] == (tuple(value) if isinstance(value, list) else value)


def test_library_errors_name_the_keyword_and_the_cli_the_flag(capsys):
    import filterprune
    from filterprune.cli import main
    from filterprune.errors import UsageError

    with pytest.raises(UsageError, match=r"^sparsity must be in \[0, 1\), got 2"):
        CompressConfig.of(model="resnet20", criterion="l1", sparsity=2).validate()
    with pytest.raises(UsageError, match="^layer_floor must"):
        filterprune.prune(
            __import__("torch").nn.Conv2d(3, 4, 3), __import__("torch").randn(1, 3, 8, 8), layer_floor=0
        )
    assert main(["compress", "resnet20", "--criterion", "l1", "--sparsity", "2"]) == 2
    assert "--sparsity must be in [0, 1), got 2" in capsys.readouterr().err


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
        assert (
            main(
                [
                    "compress",
                    "resnet20",
                    "--criterion",
                    "test-l2",
                    "--sparsity",
                    "0.5",
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
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        r = json.loads((out / "report.json").read_text())
        assert r["criterion"] == "test-l2" and r["layers"][0]["channels_after"] == 8
    finally:
        CRITERIA.unregister("test-l2")


def test_criterion_options_are_declared_by_the_criteria_that_read_them():
    """Each criterion-specific option is read by some criterion (``Criterion.reads``, next to its code),
    every key a criterion reads is such an option, its help (or its group's title) names exactly the
    criteria that read it, and one set for a criterion that ignores it is reported."""
    from filterprune.catalog import CRITERIA
    from filterprune.config import TITLES

    names = CRITERIA.names()
    readers: dict[str, set[str]] = {}
    for n in names:
        for key in CRITERIA.get(n).reads:
            readers.setdefault(key, set()).add(n)
    declared = {
        key_of(f): (f.metadata["help"] + " " + TITLES[g])
        for g, cls in GROUPS.items()
        for f in options(cls)
        if f.metadata["per_criterion"]
    }
    assert set(readers) == set(declared)
    for key, text in declared.items():
        named = {n for n in names if re.search(rf"\b{re.escape(n)}\b", text)}
        assert named == readers[key], (key, named, readers[key])
    cfg = CompressConfig.of(model="resnet20", criterion="l1", sparsity=0.3, imp_iterations=4, compression=1.0)
    assert cfg.ignored() == ["compression", "imp_iterations"]
    assert (
        CompressConfig.of(model="resnet20", criterion="imp", sparsity=0.3, imp_iterations=4).ignored() == []
    )
