"""Fuzzing the command line with hypothesis: whatever the arguments, the user sees exit 0, 1 or 2 and at
most one error line, never a traceback or an "internal error".

Two bounded runs. ``shallow``: any argv built from real and junk flags, names and values, stopped
where the pipeline would start loading data (everything before that — parsing, validation, output
checks — runs for real). ``deep``: the pruning flags on small models run to the end on synthetic data
(no training, no export). ``FUZZ_EXAMPLES=N`` scales both (benchmarks/BENCHMARKS.md records a long run).
"""

import contextlib
import io
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from filterprune import inputs, pipeline
from filterprune.cli import main
from filterprune.errors import FilterpruneError

N = int(os.environ.get("FUZZ_EXAMPLES", "0"))


class _ReachedData(FilterpruneError):
    exit_code = 99


def _stop(*a, **k):
    raise _ReachedData("validation passed")


NUMBERS = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["0", "1", "-1", "0.4", "1e309", "-0", "0x10", "1_000", "", " ", "nan"]),
)
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
NAMES = st.sampled_from(
    [
        "resnet20",
        "vgg11",
        "mlp",
        "vgg16-lottery",
        "tv:",
        "tv:nope",
        "npz:",
        "npz:/nonexistent",
        "imagefolder:/",
        "digits",
        "synthetic",
        "l1",
        "slimming",
        "random",
        "magnitude",
        "cuda",
        "cpu",
        "auto",
        "global",
        "layerwise",
        "/dev/null",
        "/",
        ".",
        "-",
        "--",
    ]
)
FLAGS = st.sampled_from(
    [
        "--criterion",
        "--sparsity",
        "--dataset",
        "--data-root",
        "--epochs",
        "--batch-size",
        "--optimizer",
        "--lr",
        "--schedule",
        "--sparsity-reg",
        "--device",
        "--seed",
        "--checkpoint",
        "--finetune-epochs",
        "--finetune-lr",
        "--scope",
        "--round-to",
        "--layer-floor",
        "--calib-batches",
        "--out",
        "--overwrite",
        "--no-export",
        "--no-bench",
        "--bench-batch-sizes",
        "--bench-iters",
        "-h",
        "--version",
        "--sparstiy",
        "-x",
        "--=",
        "---",
    ]
)
TOKENS = st.one_of(FLAGS, NAMES, NUMBERS, TEXT)
ARGV = st.tuples(
    st.sampled_from(["compress", "train", "list", "models", "", "-h"]), st.lists(TOKENS, max_size=14)
).map(lambda t: [t[0], *t[1]] if t[0] else t[1])


def _check(argv) -> int:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    text = err.getvalue()
    assert code in (0, 1, 2, 99), (argv, code, text)
    assert "Traceback" not in text and "internal error" not in text, (argv, text)
    if code:
        errors = [ln for ln in text.splitlines() if ln.startswith("filterprune: error:")]
        assert len(errors) == 1 and text.strip().splitlines()[-1] == errors[0], (argv, text)
    return code


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an --out that validation accepts must land here
    return tmp_path


@settings(max_examples=N or 300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=ARGV)
def test_shallow_fuzz_never_shows_a_traceback(argv, in_tmp, monkeypatch):
    monkeypatch.setattr(inputs, "load_data", _stop)  # compress
    monkeypatch.setattr(pipeline, "load_data", _stop)  # train
    _check(argv)
    assert not [p for p in in_tmp.iterdir() if p.name not in ("cache",)]  # nothing written before the data


@settings(
    max_examples=max(N // 20, 8), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    model=st.sampled_from(["resnet20", "vgg11", "mlp", "vgg16-lottery"]),
    criterion=st.sampled_from(["l1", "magnitude", "slimming", "random", "l2"]),
    sparsity=st.one_of(st.floats(-0.5, 1.5), st.sampled_from([0.0, 0.99, 0.999999])),
    scope=st.sampled_from([[], ["--scope", "global"], ["--scope", "layerwise"]]),
    round_to=st.integers(-2, 80),
    floor=st.one_of(st.floats(-0.5, 1.5), st.just(1.0)),
    seed=st.integers(-(2**70), 2**70),
)
def test_deep_fuzz_of_pruning_flags(model, criterion, sparsity, scope, round_to, floor, seed, in_tmp):
    argv = [
        "compress",
        model,
        "--criterion",
        criterion,
        "--sparsity",
        repr(sparsity),
        *scope,
        "--round-to",
        str(round_to),
        "--layer-floor",
        repr(floor),
        "--seed",
        str(seed),
        "--dataset",
        "synthetic",
        "--epochs",
        "0",
        "--finetune-epochs",
        "0",
        "--no-export",
        "--no-bench",
        "--out",
        "run",
        "--overwrite",
    ]
    if _check(argv) == 0:
        assert (in_tmp / "run" / "report.json").is_file()


# ------------------------------------------------------------------ sweep files (issue 16)
SCALARS = st.one_of(
    st.integers(-(10**40), 10**40),
    st.floats(allow_nan=True),
    TEXT,
    st.booleans(),
    st.none(),
    st.sampled_from(["mlp", "l1", "synthetic", "resnet20", "0.4", "1e-3"]),
)
VALUES = st.recursive(
    SCALARS, lambda c: st.lists(c, max_size=4) | st.dictionaries(TEXT, c, max_size=3), max_leaves=8
)
FIELDS = st.sampled_from(
    [
        "model",
        "criterion",
        "sparsity",
        "seed",
        "epochs",
        "dataset",
        "round_to",
        "bench_batch_sizes",
        "calib_batches",
        "nope",
        "out",
        "task",
    ]
)
SWEEP_DOCS = st.fixed_dictionaries(
    {},
    optional={
        "name": VALUES,
        "base": st.dictionaries(FIELDS, VALUES, max_size=5) | VALUES,
        "grid": st.dictionaries(FIELDS, st.lists(SCALARS, min_size=1, max_size=12) | VALUES, max_size=7),
        "include": st.lists(st.dictionaries(FIELDS, VALUES, max_size=3), max_size=3),
        "resources": VALUES,
    },
)
BASE = {"model": "mlp", "criterion": "l1", "sparsity": 0.4, "epochs": 0, "dataset": "synthetic"}


@settings(
    max_examples=max(N // 20, 40), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    doc=SWEEP_DOCS,
    valid_base=st.booleans(),
    bomb=st.sampled_from([None, "name", "base", "grid", "include"]),
    levels=st.integers(1, 14),
    width=st.integers(1, 14),
)
def test_sweep_files_never_show_a_traceback_and_stay_bounded(doc, valid_base, bomb, levels, width, in_tmp):
    """Any sweep file, alias bombs of any shape included: exit 0 or 2, one error line, a few seconds."""
    import time

    import yaml

    if valid_base:
        doc = {**doc, "base": BASE}
    text = yaml.safe_dump({k: v for k, v in doc.items() if k != bomb}, allow_unicode=True)
    if bomb:  # levels anchors, each a list of width aliases of the one before
        chain = ["&a0 [" + ", ".join(["lol"] * width) + "]"] + [
            f"&a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)
        ]
        text += (
            f"{bomb}: [{', '.join(chain)}]\n" if bomb != "grid" else f"grid:\n  seed: [{', '.join(chain)}]\n"
        )
    (in_tmp / "s.yaml").write_text(text)
    start = time.perf_counter()
    code = _check(["sweep", str(in_tmp / "s.yaml"), "--dry-run"])
    assert code in (0, 2) and time.perf_counter() - start < 20, (text[:300], code)
