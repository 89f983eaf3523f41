"""`filterprune report`: pivots against hand-made tables, settings never averaged together, the row
variable, figures from real compress runs, and one-line errors on bad folders."""

import json
import math
import shutil
import struct
import subprocess
import sys
import typing
from pathlib import Path

import pandas as pd
import pytest
from reports import BASE, MASKED, make_report

from filterprune.cli import main
from filterprune.errors import UsageError
from filterprune.reporting import collect, schema, tables
from filterprune.reporting.schema import SCHEMA_VERSION, read_report

BEFORE_SCHEMA = Path(__file__).parent / "fixtures" / "report-0.1.0.json"  # compress at 3e206b1 (0.1.0)


def fake_report(
    criterion,
    sparsity,
    seed,
    acc,
    dense_acc,
    *,
    ms=None,
    dense_ms=None,
    rss=None,
    config=None,
    compression=None,
    layers=None,
):
    """A report.json as compress writes it (tests/reports.py), with only the numbers a test sets."""
    rows = []
    for variant, p50 in (("dense", dense_ms), ("pruned", ms)):
        if p50 is not None:
            rows.append(
                {
                    "variant": variant,
                    "runtime": "onnxruntime",
                    "device": "cpu",
                    "batch_size": 32,
                    "p50_ms": p50,
                    "p90_ms": p50,
                    "cpu_peak_rss_mb": "" if rss is None else rss[variant],
                    "gpu_peak_allocated_mb": "",
                    "gpu_peak_reserved_mb": "",
                }
            )
    latency = (
        [
            {
                "runtime": "onnxruntime",
                "device": "cpu",
                "batch_size": 32,
                "dense_ms": dense_ms,
                "pruned_ms": ms,
                "dense_p90_ms": dense_ms,
                "pruned_p90_ms": ms,
                "speedup": dense_ms / ms,
            }
        ]
        if ms and dense_ms
        else []
    )
    cfg = {
        "model": "vgg16",
        "criterion": criterion,
        "sparsity": sparsity,
        "seed": seed,
        "epochs": 10,
        "compression": compression,
        "target_macs": None,
        "out": f"runs/{criterion}-{sparsity}-{seed}",
        **(config or {}),
    }
    masked = (
        {**MASKED, "compression": compression, "accuracy": acc - 0.01, "flop_fraction": 0.5}
        if compression
        else None
    )
    keep = 1 - (sparsity or 0.5)
    r = make_report(
        model="vgg16",
        criterion=criterion,
        sparsity=sparsity,
        seed=seed,
        dataset={"name": "cifar10"},
        dense={"accuracy": dense_acc},
        pruned={
            "params": int(2e6 * keep**2),
            "macs": int(3e8 * keep**2),
            "flops": int(3.1e8 * keep**2),
            "accuracy": acc,
        },
        masked=masked,
        channel_sparsity=sparsity,
        layers=layers or [],
        latency=latency,
        latency_rows=rows,
    )
    r["config"] = cfg
    return r


def write_runs(root, reports, sweep=True):
    base = root / "runs" if sweep else root
    for i, r in enumerate(reports):
        d = base / f"run{i:02d}"
        d.mkdir(parents=True)
        (d / "report.json").write_text(json.dumps(r))
    return root


def hand_made_runs():
    """2 criteria x 2 sparsities x 2 seeds; snip at 0.6 lost seed 1; l1 at 0.6 seed 1 ran twice."""
    return [
        fake_report("l1", 0.3, 0, 0.80, 0.92, ms=6.0, dense_ms=10.0),
        fake_report("l1", 0.3, 1, 0.84, 0.94, ms=8.0, dense_ms=12.0),
        fake_report("l1", 0.6, 0, 0.70, 0.92, ms=4.0, dense_ms=10.0),
        fake_report("l1", 0.6, 1, 0.74, 0.94, ms=5.0, dense_ms=12.0),
        fake_report("l1", 0.6, 1, 0.76, 0.94, ms=7.0, dense_ms=12.0),  # same seed again: averaged first
        fake_report("snip", 0.3, 0, 0.90, 0.92, ms=5.0, dense_ms=10.0),
        fake_report("snip", 0.3, 1, 0.88, 0.94, ms=5.0, dense_ms=12.0),
        fake_report("snip", 0.6, 0, 0.60, 0.92, ms=3.0, dense_ms=10.0),
    ]


def test_accuracy_pivot_matches_a_hand_made_table(tmp_path):
    root = write_runs(tmp_path / "sweep", hand_made_runs())
    assert main(["report", str(root)]) == 0
    out = root / "report"
    expected = pd.DataFrame(
        {
            "dense": ["93.00 ± 1.41", "93.00 ± 1.41"],
            "l1": ["82.00 ± 2.83", "72.50 ± 3.54"],  # 0.6: seeds 0.70 and mean(0.74, 0.76)
            "snip": ["89.00 ± 1.41", "60.00 (n=1)"],
        },
        index=pd.Index([0.3, 0.6], name="sparsity"),
    )
    df = collect.load_runs(root)
    cells, n = tables.formatted(
        tables.pivot(df, tables.METRIC_BY_KEY["accuracy"]), tables.METRIC_BY_KEY["accuracy"]
    )
    pd.testing.assert_frame_equal(cells, expected)
    assert n == 2
    assert (
        (out / "tables" / "accuracy.md")
        .read_text()
        .endswith(
            "| sparsity | dense | l1 | snip |\n|---|---:|---:|---:|\n"
            "| 0.3 | 93.00 ± 1.41 | 82.00 ± 2.83 | 89.00 ± 1.41 |\n"
            "| 0.6 | 93.00 ± 1.41 | 72.50 ± 3.54 | 60.00 (n=1) |\n"
        )
    )
    csv = pd.read_csv(out / "tables" / "accuracy.csv", index_col=0)
    assert list(csv.columns) == [f"{c} {s}" for c in ("dense", "l1", "snip") for s in ("mean", "std", "n")]
    assert csv.loc[0.6, "l1 mean"] == pytest.approx(72.5) and csv.loc[0.6, "l1 n"] == 2  # n counts seeds
    assert csv.loc[0.6, "snip n"] == 1 and pd.isna(csv.loc[0.6, "snip std"])


def test_test_time_speedup_and_memory_tables(tmp_path):
    runs = hand_made_runs()
    runs[0] = fake_report(
        "l1", 0.3, 0, 0.80, 0.92, ms=6.0, dense_ms=10.0, rss={"dense": 700.0, "pruned": 650.0}
    )
    root = write_runs(tmp_path / "sweep", runs)
    df = collect.load_runs(root)
    t = tables.pivot(df, tables.METRIC_BY_KEY["test_time_ms"])
    assert t.loc[0.3, ("l1", "mean")] == pytest.approx(7.0) and t.loc[
        0.3, ("dense", "mean")
    ] == pytest.approx(11.0)
    assert t.loc[0.6, ("l1", "mean")] == pytest.approx((4.0 + 6.0) / 2)  # seed 1's repeats averaged first
    s = tables.pivot(df, tables.METRIC_BY_KEY["speedup"])
    assert s.loc[0.3, ("snip", "mean")] == pytest.approx((10 / 5 + 12 / 5) / 2)
    m = tables.pivot(df, tables.METRIC_BY_KEY["cpu_peak_rss_mb"])
    assert list(m.columns.get_level_values(0).unique()) == ["dense", "l1"] and m.loc[0.3, ("l1", "n")] == 1
    assert tables.pivot(df, tables.METRIC_BY_KEY["gpu_peak_allocated_mb"]).empty  # CPU runs: not measured
    assert main(["report", str(root)]) == 0
    md = (root / "report" / "report.md").read_text()
    assert "GPU peak allocated" in md.split("## Tables")[0]  # listed as not measured, with why
    assert not (root / "report" / "tables" / "gpu_peak_allocated_mb.md").exists()
    assert (root / "report" / "tables" / "cpu_peak_rss_mb.csv").is_file()


def test_different_settings_are_never_averaged(tmp_path):
    runs = [
        fake_report("l1", 0.5, 0, 0.80, 0.9, ms=5.0, dense_ms=9.0),
        fake_report("l1", 0.5, 0, 0.60, 0.9, config={"epochs": 1}),
        fake_report("snip", 0.5, 0, 0.70, 0.9, ms=3.0, dense_ms=9.0),
    ]
    root = write_runs(tmp_path / "plain", runs, sweep=False)
    df = collect.load_runs(root)
    assert sorted(df["setting"].unique()) == ["vgg16 on cifar10, epochs=1", "vgg16 on cifar10, epochs=10"]
    acc = tables.pivot(df, tables.METRIC_BY_KEY["accuracy"])
    assert acc.index.names == ["setting", "sparsity"]
    assert acc.loc[("vgg16 on cifar10, epochs=1", 0.5), ("l1", "mean")] == pytest.approx(60.0)
    assert acc.loc[("vgg16 on cifar10, epochs=10", 0.5), ("l1", "mean")] == pytest.approx(80.0)
    assert df.set_index("criterion").loc["snip", "speedup"] == pytest.approx(3.0)
    assert main(["report", str(root)]) == 0  # a plain folder of compress outputs; report/ is not a run


def test_rows_follow_the_compression_when_only_it_varies(tmp_path):
    runs = [
        fake_report(c, 0.4, seed, 0.8 - cmp / 10, 0.9, compression=cmp)
        for c in ("snip", "mag")
        for cmp in (0.5, 1.0)
        for seed in (0, 1)
    ]
    df = collect.load_runs(write_runs(tmp_path / "s", runs))
    assert df["row_key"].iloc[0] == "compression" and df["setting"].nunique() == 1
    t = tables.pivot(df, tables.METRIC_BY_KEY["masked_accuracy"])
    assert list(t.index) == [0.5, 1.0] and t.loc[1.0, ("snip", "mean")] == pytest.approx(69.0)
    # a sparsity sweep whose compression follows the sparsity (the default) stays one setting, rows = sparsity
    runs = [
        fake_report("snip", s, 0, 0.8, 0.9, compression=-2 * math.log10(1 - s), config={"compression": None})
        for s in (0.3, 0.6)
    ]
    df = collect.load_runs(write_runs(tmp_path / "t", runs))
    assert df["row_key"].iloc[0] == "sparsity" and df["setting"].nunique() == 1
    # a mask study that sets the compression and derives the sparsity from it: rows = compression
    runs = [fake_report("snip", 1 - 10 ** (-c / 2), 0, 0.8, 0.9, compression=c) for c in (0.5, 1.0)]
    df = collect.load_runs(write_runs(tmp_path / "u", runs))
    assert df["row_key"].iloc[0] == "compression" and df["setting"].nunique() == 1


def test_defaults_and_measurement_options_do_not_split_settings_and_macs_targets_are_rows(tmp_path):
    runs = [
        fake_report("l1", None, 0, 0.8, 0.9, config={"target_macs": f, "steps": 1, "bench_iters": 50})
        for f in (0.3, 0.5)
    ]  # steps=1 is the default an older report lacks; bench_iters is no experiment
    runs += [fake_report("slimming", None, 0, 0.7, 0.9, config={"target_macs": f}) for f in (0.3, 0.5)]
    for r in runs:
        r["sparsity"] = 0.45 if r["criterion"] == "l1" else 0.5  # what each run found: not a row
    df = collect.load_runs(write_runs(tmp_path / "s", runs))
    assert df["row_key"].iloc[0] == "target_macs" and df["setting"].nunique() == 1
    assert list(tables.pivot(df, tables.METRIC_BY_KEY["accuracy"]).index) == [0.3, 0.5]


# ------------------------------------------------------------------------------------------ the schema
def test_a_report_from_before_the_schema_still_reads(tmp_path, capsys):
    """The previous release's report.json (mlp, l1 0.4, synthetic, --no-bench) has no schema_version."""
    r = read_report(BEFORE_SCHEMA)
    assert "schema_version" not in r and r["model"] == "mlp" and r["pruned"]["accuracy"] == 0.125
    run = tmp_path / "runs" / "old"
    run.mkdir(parents=True)
    shutil.copy(BEFORE_SCHEMA, run / "report.json")
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    row = pd.read_csv(tmp_path / "out" / "runs.csv").iloc[0]
    assert (row["criterion"], row["accuracy"], row["dense_params"]) == ("l1", 0.125, 348710)


def test_a_newer_minor_reads_and_a_newer_major_is_refused(tmp_path):
    (tmp_path / "report.json").write_text(json.dumps(make_report(schema_version="1.7", added_later={"x": 1})))
    assert read_report(tmp_path)["added_later"] == {"x": 1}
    (tmp_path / "report.json").write_text(json.dumps({**make_report(), "schema_version": "2.0"}))
    with pytest.raises(
        UsageError,
        match=r"report.json schema 2.0 is newer than this filterprune reads "
        r"\(1.x\); upgrade filterprune$",
    ):
        read_report(tmp_path / "report.json")


def test_the_test_report_covers_the_schema():
    """tests/reports.py has every key of report.json and no key the schema does not know, in every section."""
    assert list(BASE) == list(typing.get_type_hints(schema.Report))  # also the order compress writes

    def unknown(doc, kind, where):
        hints = typing.get_type_hints(kind)
        bad = [f"{where}{k}" for k in doc if k not in hints]
        for k, v in doc.items():
            kinds = (hints.get(k), *typing.get_args(hints.get(k)))  # a section, or a list or union of one
            sub = next((a for a in kinds if typing.is_typeddict(a)), None)
            items = v if isinstance(v, list) else [v] if isinstance(v, dict) else []
            if sub is not None:
                bad += [b for item in items for b in unknown(item, sub, f"{where}{k}.")]
        return bad

    assert unknown(BASE, schema.Report, "") == [] and unknown(MASKED, schema.Masked, "masked.") == []


def test_the_schema_is_cheap_to_import():
    code = (
        "import sys, filterprune.reporting.schema\n"
        "print(sorted({'torch', 'pandas', 'numpy'} & set(sys.modules)))"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------- real runs
@pytest.fixture(scope="module")
def real_sweep(tmp_path_factory):
    """Real compress runs: mlp on synthetic, 2 criteria x 2 sparsities x 2 seeds, timed (PyTorch, batch 1)."""
    root = tmp_path_factory.mktemp("sweep")
    for crit in ("l1", "snip"):
        for s in ("0.3", "0.6"):
            for seed in ("0", "1"):
                assert (
                    main(
                        [
                            "compress",
                            "mlp",
                            "--criterion",
                            crit,
                            "--sparsity",
                            s,
                            "--round-to",
                            "1",
                            "--seed",
                            seed,
                            "--dataset",
                            "synthetic",
                            "--epochs",
                            "0",
                            "--finetune-epochs",
                            "0",
                            "--no-export",
                            "--bench-iters",
                            "2",
                            "--bench-batch-sizes",
                            "1",
                            "--out",
                            str(root / "runs" / f"{crit}-{s}-{seed}"),
                        ]
                    )
                    == 0
                )
    return root


def _png_size(path):
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


def test_a_fresh_run_writes_the_schema_version_first(real_sweep):
    path = real_sweep / "runs" / "l1-0.3-0" / "report.json"
    assert next(iter(json.loads(path.read_text()))) == "schema_version"
    assert read_report(path)["schema_version"] == SCHEMA_VERSION


def test_report_of_real_runs(real_sweep, capsys):
    assert main(["report", str(real_sweep), "--runtime", "torch", "--batch-size", "1"]) == 0
    out = real_sweep / "report"
    assert capsys.readouterr().out.strip() == str(out / "report.md")
    plots = {p.name for p in (out / "plots").iterdir()}
    assert plots == {
        "accuracy_vs_macs.png",
        "accuracy_vs_params.png",
        "latency_vs_sparsity.png",
        "kept_channels.png",
        "weight_histograms-sparsity0.3.png",
        "weight_histograms-sparsity0.6.png",
    }
    for p in plots:
        w, h = _png_size(out / "plots" / p)
        assert w > 300 and h > 200
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 8 and set(runs["criterion"]) == {"l1", "snip"}
    params = pd.read_csv(out / "tables" / "params.csv", index_col=0)
    one = json.loads((real_sweep / "runs" / "l1-0.6-1" / "report.json").read_text())
    assert params.loc[0.6, "l1 mean"] == pytest.approx(
        one["pruned"]["params"] / 1e6
    )  # layerwise l1: seed-free
    assert params.loc[0.6, "l1 std"] == 0 and params.loc[0.6, "l1 mean"] < params.loc[0.3, "l1 mean"]
    t = pd.read_csv(out / "tables" / "test_time_ms.csv", index_col=0)
    assert (t[["dense n", "l1 n", "snip n"]] == 2).all().all() and (t["l1 mean"] > 0).all()
    assert "torch/cpu, batch 1" in (out / "report.md").read_text()
    # the report is regenerated in place (a sweep that resumed), the old one replaced whole
    (out / "stale.txt").write_text("x")
    assert main(["report", str(real_sweep), "--runtime", "torch", "--batch-size", "1"]) == 0
    assert not (out / "stale.txt").exists() and (out / "report.md").is_file()


def test_weight_histograms_count_what_the_mask_kept(real_sweep, tmp_path):
    """Histogram rows are the model's conv/linear layers; a kept fraction is the saved weights' share."""
    import numpy as np

    import filterprune
    from filterprune.reporting import plots

    df = collect.load_runs(real_sweep, collect.Timing("torch", "cpu", 1))
    model = filterprune.load(real_sweep / "runs" / "l1-0.3-0")
    ws = plots._weights(model)
    assert [n for n, _ in ws] == ["1", "3", "5", "7", "9", "11"]
    assert [w.size for _, w in ws][1] == 70 * 70  # layerwise s=0.3 keeps ceil(0.7 * 100) of 100 on both sides
    written = plots.weight_histograms(df, tmp_path, "t")
    assert [p.name for p in written] == [
        "weight_histograms-sparsity0.3.png",
        "weight_histograms-sparsity0.6.png",
    ]
    assert np.isfinite(np.concatenate([w for _, w in ws])).all()


def test_compress_bench_memory_records_cpu_peak_rss(tmp_path):
    out = tmp_path / "runs" / "a"
    assert (
        main(
            [
                "compress",
                "mlp",
                "--criterion",
                "l1",
                "--sparsity",
                "0.5",
                "--dataset",
                "synthetic",
                "--epochs",
                "0",
                "--finetune-epochs",
                "0",
                "--no-export",
                "--bench-iters",
                "1",
                "--bench-batch-sizes",
                "1",
                "--bench-memory",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rows = json.loads((out / "report.json").read_text())["latency_rows"]
    assert {r["variant"] for r in rows} == {"dense", "pruned"}
    assert all(isinstance(r["cpu_peak_rss_mb"], float) and r["cpu_peak_rss_mb"] > 50 for r in rows)
    df = collect.load_runs(tmp_path, collect.Timing("torch", "cpu", 1))
    by_variant = {r["variant"]: r["cpu_peak_rss_mb"] for r in rows}
    assert df.loc[0, "cpu_peak_rss_mb"] == by_variant["pruned"]
    assert df.loc[0, "dense_cpu_peak_rss_mb"] == by_variant["dense"]


# ---------------------------------------------------------------------------------------- bad input
def _one_error_line(capsys, needle):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("filterprune: error: ") and needle in err[0], err
    return err[0]


def _edited(*remove, **changes):
    """A damage: the report with ``changes`` and without the keys ``remove``."""

    def damage(p):
        doc = {k: v for k, v in json.loads(p.read_text()).items() if k not in remove}
        p.write_text(json.dumps({**doc, **changes}))

    return damage


@pytest.mark.parametrize(
    "damage,code,needle",
    [
        (lambda p: p.write_text('{"model": "vgg16", "crit'), 1, "unreadable or corrupt report"),
        (lambda p: p.write_text("[1, 2]"), 1, "not a filterprune compress report (a list"),
        (_edited(pruned={"params": 1, "macs": 2, "flops": 2, "top5": 1.0}), 1, "missing pruned.accuracy"),
        (_edited("latency_rows"), 1, "not a filterprune compress report (missing latency_rows)"),
        (_edited(dataset="cifar10"), 1, "(dataset is not an object)"),
        (lambda p: p.write_bytes(b"\xff\xfe\x00garbage"), 1, "unreadable or corrupt report"),
        (_edited(layers=[{"name": "a"}]), 1, "missing layers[0].channels_before"),
        (
            _edited(layers=[{"name": "a", "channels_before": 2, "channels_after": "1"}]),
            1,
            "layers are not channel counts",
        ),
        (_edited(seed="zero"), 1, "seed is not an integer"),
        (
            _edited(schema_version="2.0"),
            2,
            "report.json schema 2.0 is newer than this filterprune reads (1.x); upgrade filterprune",
        ),
        (_edited(schema_version="one"), 1, "(schema_version 'one' is not MAJOR.MINOR)"),
        (_edited(schema_version=None), 1, "(schema_version None is not MAJOR.MINOR)"),
    ],
)
def test_a_corrupt_or_too_new_report_is_one_line_and_writes_nothing(tmp_path, capsys, damage, code, needle):
    root = write_runs(tmp_path / "s", hand_made_runs())
    damage(root / "runs" / "run03" / "report.json")
    assert main(["report", str(root)]) == code
    assert "run03/report.json" in _one_error_line(capsys, needle)  # names the file
    assert not (root / "report").exists() and not list(root.glob(".report*"))


def test_bad_folders_and_flags(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    _one_error_line(capsys, "no finished runs in")
    assert main(["report", str(tmp_path / "missing")]) == 2
    _one_error_line(capsys, "not a folder")
    root = write_runs(tmp_path / "s", hand_made_runs())
    staging = root / "runs" / ".run09.partial-123"  # a compress still writing: never read
    staging.mkdir()
    (staging / "report.json").write_text("{")
    assert main(["report", str(root), "--batch-size", "7"]) == 2
    _one_error_line(capsys, "no run was timed on onnxruntime/cpu, batch 7; timed: onnxruntime batch 32")
    assert main(["report", str(root), "--runtime", "tensorflow"]) == 2
    _one_error_line(capsys, "unknown runtime 'tensorflow'")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert main(["report", str(root), "--out", str(foreign)]) == 2
    _one_error_line(capsys, "already exists and is not empty")
    assert (foreign / "notes.txt").read_text() == "keep me"
    for target in (root, root / "runs" / "run00"):
        assert main(["report", str(root), "--out", str(target), "--overwrite"]) == 2
        _one_error_line(capsys, "would replace the runs it reports on")
    assert len(list((root / "runs").iterdir())) == 9


def test_the_aggregate_report_keeps_the_runs_busy_machine_warnings(tmp_path):
    runs = hand_made_runs()
    runs[2]["latency_rows"][0]["machine_busy"] = "other processes used 1.4 of 2 cores"
    root = write_runs(tmp_path / "sweep", runs)
    assert main(["report", str(root)]) == 0
    head = (root / "report" / "report.md").read_text().split("## Tables")[0]
    assert "1 of 8 runs were timed while the machine was not quiet" in head
    assert "run02: other processes used 1.4 of 2 cores" in head
    quiet_root = write_runs(tmp_path / "quiet", hand_made_runs())
    assert main(["report", str(quiet_root)]) == 0
    assert "not quiet" not in (quiet_root / "report" / "report.md").read_text()
