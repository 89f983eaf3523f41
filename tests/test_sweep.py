"""filterprune sweep: grid expansion and run ids, the sweep folder, resume, bad sweep files, executors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from reports import MASKED, make_report

from filterprune.cli import main
from filterprune.errors import UsageError
from filterprune.sweep import executors, load_sweep, run_id, sweep
from filterprune.sweep.grid import digest
from filterprune.sweep.store import SweepStore, result_row

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "model": "mlp",
    "criterion": "l1",
    "dataset": "synthetic",
    "epochs": 0,
    "finetune_epochs": 0,
    "export": False,
    "bench": False,
}


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def tiny(
    tmp_path: Path, grid: str = "criterion: [l1, random]\n  sparsity: [0.25, 0.5]", name="s.yaml"
) -> Path:
    return write(tmp_path, f"name: tiny\nbase: {json.dumps(TINY)}\ngrid:\n  {grid}\n", name)


def in_process(calls: list):
    """An executor that runs each job in this process (no interpreter start per run) and records it."""
    from filterprune.sweep import runs

    def run(jobs, resources, done):
        for job in jobs:
            calls.append(job.run_id)
            runs.run(job.to_dict())
            done(executors.Outcome(job, 0, "", 0.0))

    return run


# ------------------------------------------------------------------------------- grid and ids
def test_digest_is_pinned():
    # the hash itself must never change: run folders of old sweeps are found by it
    assert digest({"model": "vgg16", "sparsity": 0.4, "bench_batch_sizes": [1, 32]}) == "f9c5451c759b"
    assert digest({"sparsity": 0.4, "model": "vgg16", "bench_batch_sizes": [1, 32]}) == "f9c5451c759b"


def test_grid_expands_product_linked_axes_and_include_in_order(tmp_path):
    s = load_sweep(
        write(
            tmp_path,
            """
        name: study
        base: {model: mlp, dataset: synthetic, epochs: 0, sparsity: 0.4}
        grid:
          task:                      # linked: both fields move together
            - {criterion: mag, compression: 0.5}
            - {criterion: snip, compression: 1}
          seed: [0, 1, 2]
        include:
          - {criterion: imp, imp_iterations: 3, compression: 1}
          - {criterion: mag, compression: 0.5, seed: 0}     # already in the grid: one run
        """,
        )
    )
    assert [r.label for r in s.runs] == [
        f"criterion={c}, compression={x}, seed={i}"
        for c, x in (("mag", 0.5), ("snip", 1.0))
        for i in (0, 1, 2)
    ] + ["include[0]: criterion=imp, imp_iterations=3, compression=1.0"]
    cfgs = [r.config for r in s.runs]
    assert [(c["criterion"], c["compression"], c["seed"]) for c in cfgs[:4]] == [
        ("mag", 0.5, 0),
        ("mag", 0.5, 1),
        ("mag", 0.5, 2),
        ("snip", 1.0, 0),
    ]
    assert cfgs[-1]["criterion"] == "imp" and cfgs[-1]["imp_iterations"] == 3 and cfgs[-1]["seed"] == 0
    assert all(c["model"] == "mlp" and c["sparsity"] == 0.4 for c in cfgs)  # base reaches every run
    assert "out" not in cfgs[0] and "overwrite" not in cfgs[0]
    assert len({r.run_id for r in s.runs}) == 7


def test_run_ids_are_stable_and_depend_on_values_only(tmp_path):
    a = load_sweep(
        write(
            tmp_path,
            """
        base: {model: mlp, criterion: l1, epochs: 0, finetune_lr: 1e-3, compression: 1}
        grid: {sparsity: [0.25, 0.5]}
        """,
            "a.yaml",
        )
    )
    b = load_sweep(
        write(
            tmp_path,
            """
        grid: {sparsity: [0.5, 0.25]}
        base: {compression: 1.0, finetune_lr: 0.001, epochs: 0, criterion: l1, model: mlp}
        """,
            "b.yaml",
        )
    )
    assert {r.run_id for r in a.runs} == {r.run_id for r in b.runs}  # order, 1e-3 vs 0.001, 1 vs 1.0
    assert a.sweep_id != b.sweep_id  # the name (the file's stem) is part of the sweep
    again = load_sweep(tmp_path / "a.yaml")
    assert [r.run_id for r in again.runs] == [r.run_id for r in a.runs] and again.sweep_id == a.sweep_id
    for r in a.runs:  # a reader recomputes the id from report.json["config"] (out/overwrite included there)
        assert run_id({**r.config, "out": "/x", "overwrite": True}) == r.run_id == digest(r.config)
    c = load_sweep(
        write(
            tmp_path,
            """
        base: {model: mlp, criterion: l1, epochs: 0, finetune_lr: 1e-3, compression: 1, seed: 1}
        grid: {sparsity: [0.25, 0.5]}
        """,
            "a.yaml",
        )
    )
    assert not {r.run_id for r in c.runs} & {r.run_id for r in a.runs}  # any value changes the id


# -------------------------------------------------------------------------------- bad sweep files
BAD = [  # (yaml, what the one-line error must say besides the file name)
    ("gird: {sparsity: [0.5]}", "unknown key 'gird' (did you mean 'grid'?)"),
    ("base: {critrion: l1}", "base: unknown key 'critrion' (did you mean 'criterion'?)"),
    ("grid: {criterion: [l1, l3]}", "grid.criterion[1]: unknown criterion 'l3'"),
    ("grid: {sparsity: [0.5, 1.5]}", "grid.sparsity[1]: sparsity must be in [0, 1)"),
    ("grid: {sparsty: [0.5]}", "grid.sparsty: unknown key 'sparsty' (did you mean 'sparsity'?)"),
    ("grid: {task: [{criterion: l1}, {scope: glob}]}", "grid.task[1].scope: unknown scope 'glob'"),
    ("grid: {task: [{criterion: l1, modle: vgg16}]}", "grid.task[0]: unknown key 'modle'"),
    ("base: {epochs: two}", "base.epochs: expected an integer, got 'two'"),
    ("base: {export: 1}", "base.export: expected true/false, got 1"),
    ("include: [{optimizer: adm}]", "include[0].optimizer: unknown optimizer 'adm'"),
    ("base: {out: x}", "base.out: 'out' is set by the sweep"),
    ("grid: {seed: [0, 1], t: [{seed: 2}]}", "grid.t: 'seed' is already an axis value in grid.seed"),
    ("grid: {sparsity: 0.5}", "grid.sparsity: expected a non-empty list of values"),
    ("resources: {gpus: 1}", "resources: unknown key 'gpus'"),
    ("grid: {mode: [masked]}", "run mode=masked: mode masked needs a mask criterion"),
    ("base: {sparsity_epochs: 2}", "run base: sparsity_epochs trains a given checkpoint"),
    ("grid: {criterion: [l1]\n", "not valid YAML"),
]


@pytest.mark.parametrize("extra,message", BAD, ids=[m for _, m in BAD])
def test_bad_sweep_file_names_file_and_key(tmp_path, capsys, extra, message):
    base = {"model": "mlp", "criterion": "l1", "sparsity": 0.5, "epochs": 0}
    text = (
        f"base: {json.dumps(base)}\n" + extra
        if not extra.startswith("base:")
        else "base: " + json.dumps({**base, **_inline(extra[5:])})
    )
    cfg = write(tmp_path, text)
    out = tmp_path / "sw"
    assert main(["sweep", str(cfg), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"filterprune: error: {cfg}: " in err and message in err, err
    assert not out.exists()


def _inline(text: str) -> dict:
    import yaml

    return yaml.safe_load(text)


def test_missing_required_field_and_missing_file(tmp_path, capsys):
    cfg = write(tmp_path, "grid: {sparsity: [0.5]}\nbase: {model: mlp}")
    assert main(["sweep", str(cfg)]) == 2
    assert "missing" in capsys.readouterr().err
    assert main(["sweep", str(tmp_path / "nope.yaml")]) == 2
    assert "sweep config not found" in capsys.readouterr().err


# --------------------------------------------------------------------------- store and resume
def test_resume_skips_exactly_the_finished_runs(tmp_path, monkeypatch, capsys):
    cfg, out = tiny(tmp_path), tmp_path / "sw"
    calls: list = []
    first = in_process(calls)

    def dies_after_two(jobs, resources, done):  # the sweep "dies" after two runs
        first(jobs[:2], resources, done)
        raise KeyboardInterrupt

    monkeypatch.setitem(executors.EXECUTORS, "local", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        sweep(cfg, out=out)
    s = load_sweep(cfg)
    ids = [r.run_id for r in s.runs]
    assert calls == ids[:2]
    before = {i: (out / "runs" / i / "report.json").stat().st_mtime_ns for i in ids[:2]}

    assert main(["sweep", str(cfg), "--out", str(out)]) == 2  # the same sweep again needs --resume
    assert "pass --resume" in capsys.readouterr().err
    calls.clear()
    monkeypatch.setitem(executors.EXECUTORS, "local", in_process(calls))
    sweep(cfg, out=out, resume=True)
    assert calls == ids[2:]  # exactly the two unfinished ones
    assert {i: (out / "runs" / i / "report.json").stat().st_mtime_ns for i in ids[:2]} == before
    calls.clear()
    sweep(cfg, out=out, resume=True)  # all finished: nothing runs
    assert calls == []

    meta = json.loads((out / "sweep.json").read_text())
    assert meta["sweep_id"] == s.sweep_id and meta["config_file"] == str(cfg)
    assert [r["run_id"] for r in meta["config"]["runs"]] == ids and meta["filterprune_version"]
    rows = (out / "results.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert len(rows) == 5
    assert {"run_id", "criterion", "sparsity", "pruned_accuracy", "pruned_macs"} <= set(header)
    by_id = {r.split(",")[0]: dict(zip(header, r.split(","))) for r in rows[1:]}
    for r in s.runs:
        report = json.loads((out / "runs" / r.run_id / "report.json").read_text())
        assert run_id(report["config"]) == r.run_id  # the folder is named by its own config
        assert float(by_id[r.run_id]["sparsity"]) == r.config["sparsity"]
        assert by_id[r.run_id]["scope"] == report["scope"] == "layerwise"


def test_a_report_of_a_newer_filterprune_stops_the_sweep_instead_of_being_redone(tmp_path):
    store = SweepStore(tmp_path)
    run = store.run_dir("abc")
    run.mkdir(parents=True)
    (run / "report.json").write_text(json.dumps({**make_report(), "schema_version": "2.0"}))
    with pytest.raises(UsageError, match="schema 2.0 is newer than this filterprune reads"):
        store.finished("abc")
    (run / "report.json").write_text("{")  # damaged: a run to redo
    assert not store.finished("abc")
    (run / "report.json").write_text(json.dumps(make_report()))
    assert store.finished("abc")


def test_results_row_from_a_report():
    row = result_row(make_report(masked=MASKED, config={"epochs": 3}), ["model", "epochs", "steps"])
    assert (row["model"], row["epochs"], row["steps"]) == ("mlp", 3, "")  # a config key it lacks: empty
    assert (row["pruned_accuracy"], row["masked_accuracy"], row["masked_flop_fraction"]) == (0.8, 0.85, 0.5)
    assert (row["onnxruntime_cpu_b32_speedup"], row["seconds"], row["compression"]) == (2.0, 6.6, 0.3)
    assert result_row(make_report(), [])["masked_accuracy"] == ""


def test_another_sweep_or_a_foreign_folder_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(executors.EXECUTORS, "local", in_process([]))
    out = tmp_path / "sw"
    sweep(tiny(tmp_path, "sparsity: [0.5]"), out=out)
    other = tiny(tmp_path, "sparsity: [0.25]", "other.yaml")
    for flags in ([], ["--resume"]):
        assert main(["sweep", str(other), "--out", str(out), *flags]) == 2
        err = capsys.readouterr().err
        assert "holds another sweep" in err and "refusing to mix" in err
    assert len(list((out / "runs").iterdir())) == 1
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("mine")
    assert main(["sweep", str(other), "--out", str(tmp_path / "junk")]) == 2
    assert "not a sweep folder" in capsys.readouterr().err


def test_a_running_sweep_locks_its_folder(tmp_path):
    s = load_sweep(tiny(tmp_path, "sparsity: [0.5]"))
    a, b = SweepStore(tmp_path / "sw"), SweepStore(tmp_path / "sw")
    a.open(s, resume=False)
    try:
        with pytest.raises(Exception, match="in use by another running sweep"):
            b.open(s, resume=True)
    finally:
        a.close()
    b.open(s, resume=True)
    b.close()


def test_local_executor_redoes_an_interrupted_run_and_ignores_its_leftovers(tmp_path, capsys):
    """A real worker process. The killed run left a staging folder with a report.json in it (compress
    writes report.json before it renames the folder into place) and, say, a run folder without
    report.json: neither is a result; the leftover is removed, the folder replaced, the run done again."""
    cfg, out = tiny(tmp_path, "sparsity: [0.5]"), tmp_path / "sw"
    s = load_sweep(cfg)
    rid = s.runs[0].run_id
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftover = out / "runs" / f".{rid}.partial-{dead.pid}"
    leftover.mkdir(parents=True)
    (leftover / "report.json").write_text("{}")
    (out / "runs" / rid).mkdir()
    (out / "runs" / rid / "model.onnx").write_text("half")
    (out / "sweep.json").write_text(json.dumps({"sweep_id": s.sweep_id}))  # as the killed sweep left it
    store = SweepStore(out)
    assert not store.finished(rid)

    assert main(["sweep", str(cfg), "--out", str(out), "--resume"]) == 0
    assert "0 already finished, 1 to run" in capsys.readouterr().err
    assert [p.name for p in (out / "runs").iterdir()] == [rid]
    assert store.finished(rid) and store.report(rid)["config"]["sparsity"] == 0.5
    assert not (out / "runs" / rid / "model.onnx").exists()
    log = store.log_path(rid).read_text()  # the run's own output is in its log
    assert log.startswith("=== ") and "[filterprune] done:" in log


def test_a_failing_run_is_reported_and_the_others_go_on(tmp_path, monkeypatch, capsys):
    calls: list = []
    good = in_process(calls)

    def one_fails(jobs, resources, done):
        done(executors.Outcome(jobs[0], 1, "filterprune: error: boom", 0.0))
        good(jobs[1:], resources, done)

    monkeypatch.setitem(executors.EXECUTORS, "local", one_fails)
    cfg, out = tiny(tmp_path, "sparsity: [0.25, 0.5]"), tmp_path / "sw"
    assert main(["sweep", str(cfg), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "FAILED (exit 1): filterprune: error: boom" in "\n".join(err)
    assert err[-1].startswith("filterprune: error: 1 of 2 runs failed") and "--resume retries" in err[-1]
    assert len((out / "results.csv").read_text().splitlines()) == 2  # the other run is in the table


def test_dry_run_lists_runs_and_writes_nothing(tmp_path, capsys):
    cfg, out = tiny(tmp_path), tmp_path / "sw"
    assert main(["sweep", str(cfg), "--out", str(out), "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("[filterprune] sweep: tiny ("), captured.err  # the library's one channel
    lines = captured.out.strip().splitlines()
    assert [ln.split()[0] for ln in lines] == [r.run_id for r in load_sweep(cfg).runs]
    assert all("to run" in ln for ln in lines) and not out.exists()


# ------------------------------------------------------------------------------------ configs/
@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_expands_and_validates(path):
    s = load_sweep(path)
    assert s.runs and len({r.run_id for r in s.runs}) == len(s.runs)
    assert {r.config["data_root"] for r in s.runs} <= {"data"}  # found as compress finds it; --set moves it


def test_seed_study_configs_have_the_seed_grids():
    def runs(name):
        return [r.config for r in load_sweep(ROOT / "configs" / f"{name}.yaml").runs]

    lajic = runs("lajic")
    assert len(lajic) == 3 * 2 * 3 and {c["sparsity"] for c in lajic} == {0.4}
    assert {(c["recipe"], c["distill"], c["val_fraction"]) for c in lajic} == {("lajic", "off", 0)}
    from filterprune.api import CompressConfig

    finetunes = {
        (c["dataset"], CompressConfig.of(**c).finetune_config(100 if c["dataset"] == "cifar100" else 10))
        for c in lajic
    }
    assert {
        (d, f.epochs, f.optimizer, f.lr, f.schedule, f.batch_size, f.crop, f.distill_alpha)
        for d, f in finetunes
    } == {
        ("cifar10", 10, "sgd", 1e-3, "step", 32, False, 0.0),
        ("cifar100", 20, "sgd", 1e-3, "step", 32, False, 0.0),
    }
    zhao = runs("zhao")
    assert len(zhao) == (5 + 3) * 6
    assert sorted({c["compression"] for c in zhao}) == [0.05, 0.1, 0.2, 0.5, 1.0, 2.0]
    assert sorted(c["imp_iterations"] for c in zhao if c["criterion"] == "imp") == [2] * 6 + [3] * 6 + [4] * 6
    assert {(c["optimizer"], c["lr"], c["batch_size"]) for c in zhao} == {("adam", 1e-3, 256)}
    butler = runs("butler")
    assert {(c["model"], c["dataset"]) for c in butler} == {
        ("vgg16-lottery", "cifar10"),
        ("vgg16-lottery", "cifar100"),
        ("mlp", "mnist"),
    }
    shrink = runs("shrinkbench")
    assert {c["seed"] for c in shrink} == {0, 1, 2}
    assert {(c["scope"], c["mask_scope"]) for c in shrink} == {
        ("global", "global"),
        ("layerwise", "layerwise"),
    }


# ----------------------------------------------------------------------------------------- ray
def test_ray_executor_without_ray_is_a_usage_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert main(["sweep", str(tiny(tmp_path)), "--out", str(tmp_path / "sw"), "--executor", "ray"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--executor ray needs Ray: pip install 'filterprune[ray]'" in err
    assert not (tmp_path / "sw").exists()


@pytest.mark.slow  # starting a local Ray cluster takes 20 s to minutes on a loaded 2-core machine
def test_ray_executor_runs_a_two_run_sweep_on_a_local_cluster(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    cfg, out = tiny(tmp_path, "sparsity: [0.25, 0.5]"), tmp_path / "sw"
    assert main(["sweep", str(cfg), "--out", str(out), "--executor", "ray"]) == 0
    s = load_sweep(cfg)
    store = SweepStore(out)
    assert all(store.finished(r.run_id) for r in s.runs)
    assert len((out / "results.csv").read_text().splitlines()) == 3
    reports = [store.report(r.run_id) for r in s.runs]
    assert [r["config"]["sparsity"] for r in reports] == [0.25, 0.5]


# ------------------------------------------------------------------------------- --set, data, takeover
def test_set_overrides_base_keys_and_refuses_grid_axes(tmp_path, capsys):
    cfg = tiny(tmp_path)
    base = load_sweep(cfg)
    over = load_sweep(cfg, {"layer_floor": 0.2, "bench_batch_sizes": [1, 8]})
    assert {r.config["layer_floor"] for r in over.runs} == {0.2} and over.sweep_id != base.sweep_id
    assert {tuple(r.config["bench_batch_sizes"]) for r in over.runs} == {(1, 8)}
    with pytest.raises(UsageError, match=r"--set 'sparsity': .* varies it along a grid axis"):
        load_sweep(cfg, {"sparsity": 0.1})
    with pytest.raises(UsageError, match=r"--set: unknown key 'layer_flor' \(did you mean 'layer_floor'"):
        load_sweep(cfg, {"layer_flor": 0.2})
    assert (
        main(["sweep", str(cfg), "--dry-run", "--set", "layer_floor=0.2", "--out", str(tmp_path / "o")]) == 0
    )
    assert main(["sweep", str(cfg), "--dry-run", "--set", "layer_floor", "--out", str(tmp_path / "o")]) == 2
    assert "--set expects key=value" in capsys.readouterr().err


def test_dry_run_checks_that_the_data_is_there(tmp_path, capsys):
    cfg = write(
        tmp_path,
        f"base: {json.dumps({**TINY, 'dataset': 'cifar10', 'data_root': str(tmp_path / 'no'), 'sparsity': 0.4})}\n",
    )
    assert main(["sweep", str(cfg), "--dry-run", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cifar10 not found under" in err[0] and "--set data_root=DIR" in err[0]
    folder = write(
        tmp_path,
        f"base: {json.dumps({**TINY, 'dataset': 'imagefolder:' + str(tmp_path / 'x'), 'sparsity': 0.4})}\n",
        "f.yaml",
    )
    assert main(["sweep", str(folder), "--dry-run", "--out", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err


def test_resume_takes_over_a_folder_where_nothing_finished(tmp_path, monkeypatch):
    """A sweep whose every run failed (e.g. a wrong data path), fixed and resumed into the same folder: its
    config changed, so it is another sweep id, but nothing of the old one is lost by starting over."""
    out = tmp_path / "out"
    first = tiny(tmp_path, "sparsity: [0.5]")
    store = SweepStore(out)
    store.open(load_sweep(first), resume=False)
    store.close()
    fixed = load_sweep(first, {"layer_floor": 0.2})
    calls: list = []
    monkeypatch.setitem(executors.EXECUTORS, "local", in_process(calls))
    assert sweep(first, out=out, resume=True, overrides={"layer_floor": 0.2}) == out
    assert json.loads((out / "sweep.json").read_text())["sweep_id"] == fixed.sweep_id and len(calls) == 1
    with pytest.raises(UsageError, match="holds another sweep"):  # now a run finished there: refused
        sweep(first, out=out, resume=True)
