"""Statistics of the grid's table and summary, against values worked out by hand."""

import csv

import pytest

from ablations.results import Layout, aggregate, curve, display_rows, seed_values, summary
from memkit.eval.stats import bootstrap_ci, paired_difference, solve_stats


def test_bootstrap_interval_by_hand():
    # [0, 0, 0, 4]: a resample's mean is K, K ~ Binomial(4, 1/4) draws of the 4.
    # P(K=0) = 81/256 >= 2.5%, so the low end is 0; P(K<=2) = 243/256 = 94.9% < 97.5% <= P(K<=3) = 255/256.
    assert bootstrap_ci([0, 0, 0, 4]) == (0, 3)
    # [1, 2, 3]: P(mean = 1) = 1/27 = 3.7% >= 2.5%, P(mean < 3) = 26/27 = 96.3% < 97.5%
    assert bootstrap_ci([1, 2, 3]) == (1, 3)
    assert bootstrap_ci([0.5]) == (0.5, 0.5) and bootstrap_ci([]) is None


def test_paired_difference_by_hand():
    # differences [1, 1, 1, -1]: mean 0.5; a resample with K of the -1 has mean 1 - K/2;
    # P(K>=3) = 13/256 = 5.1% >= 2.5% > P(K=4) = 1/256, so the low end is -0.5: the interval holds 0
    a, b = {0: 2, 1: 3, 2: 4, 3: 0}, {0: 1, 1: 2, 2: 3, 3: 1}
    assert paired_difference(a, b) == {"mean": 0.5, "low": -0.5, "high": 1, "n": 4, "excludes_zero": False}
    # differences [1, 1, 1, 0]: resample mean (4 - K)/4, P(K=4) = 1/256 < 2.5% <= P(K>=3): low end 0.25 > 0
    d = paired_difference({0: 1, 1: 1, 2: 1, 3: 1}, {0: 0, 1: 0, 2: 0, 3: 1, 9: 5})  # seed 9: not paired
    assert (d["mean"], d["low"], d["high"], d["n"], d["excludes_zero"]) == (0.75, 0.25, 1, 4, True)
    assert paired_difference({0: 1}, {1: 1}) is None


def test_solve_rate_and_bimodal_seeds():
    s = solve_stats([0.06, 1.0, 1.0], 0.9)
    assert s == {"solve_rate": pytest.approx(2 / 3), "solved_mean": 1.0, "bimodal": True}
    s = solve_stats([0.89, 0.91, 0.90], 0.9)  # straddles the threshold, but one cluster
    assert s["solve_rate"] == pytest.approx(2 / 3) and not s["bimodal"]
    assert solve_stats([0.2, 0.3], 0.9) == {"solve_rate": 0.0, "solved_mean": None, "bimodal": False}


KEYS = [("memories", "m"), ("seed", "s")]


def trial(m, s, acc, capped=False, solve_at=0.9):
    return {"point": {"m": m, "s": s}, "status": "ok", "recall_acc": acc, "capped": capped, "solve_at": solve_at}


def test_table_and_summary_flag_bimodal_and_capped_points_and_name_the_paired_winner():
    trials = [trial(1, s, a) for s, a in enumerate([0.06, 1.0, 1.0])]  # bimodal
    trials += [trial(4, s, a, capped=s == 2) for s, a in enumerate([0.5, 0.6, 0.7])]  # one seed capped
    trials += [trial(8, s, a) for s, a in enumerate([0.95, 0.96, 0.97])]
    rows = aggregate(trials, KEYS, "s", ["recall_acc"], recall=["recall_acc"])
    by = {r["memories"]: r for r in rows}
    assert by[1]["recall_acc_bimodal"] and by[1]["recall_acc_solve_rate"] == pytest.approx(2 / 3)
    assert (by[1]["recall_acc_lo"], by[1]["recall_acc_hi"]) == (0.06, 1.0)  # 3 seeds: [min, max]
    assert by[4]["capped"] == 1 and by[8]["capped"] == 0
    cols, cells = display_rows(rows, ["memories"], ["recall_acc"])
    cell = dict(zip(cols, cells[0]))
    assert cell["recall_acc solved"] == "2/3 (1) !" and cell["capped"] == "0/3"
    assert dict(zip(cols, cells[1]))["capped"] == "1/3"
    lines = summary(rows, ["memories"], ["recall_acc"], {"recall_acc": seed_values(trials, KEYS, "s", "recall_acc")},
                    ["recall_acc"])
    verdict = lines[0]
    # 8 beats 1 on every seed? no: seeds 1, 2 give -0.04, -0.03, seed 0 +0.89: the interval holds 0
    assert verdict.startswith("recall_acc: memories=8 is best (0.96, 95% CI 0.95 to 0.97, 3 seeds)")
    assert "includes 0" in verdict and "memories=4 (1 of 3 seeds)" in verdict and "not ranked" in verdict
    assert "ahead of memories=4" not in verdict  # a capped point is named, never ranked
    assert any(line.startswith("warning: recall_acc at memories=1 is bimodal") for line in lines)
    assert not any("never left chance" in line for line in lines)
    # a figure where lower is better: the best is "below" the others, by a negative paired difference
    ppl = [t | {"val_ppl": 10.0 + t["point"]["m"] + t["point"]["s"] * 0.1} for t in trials]
    rows_ppl = aggregate(ppl, KEYS, "s", ["val_ppl"])
    line = summary(rows_ppl, ["memories"], ["val_ppl"], {"val_ppl": seed_values(ppl, KEYS, "s", "val_ppl")})[0]
    assert line.startswith("val_ppl: memories=1 is best") and "below memories=8 (18.1) by -7 paired" in line
    # a cost is ranked whether or not training was capped: memories=4 (one seed capped) has the smallest memory
    costs = [t | {"memory_bytes": 100.0 * t["point"]["m"]} for t in trials]
    rows_cost = aggregate(costs, KEYS, "s", ["memory_bytes"])
    line = summary(rows_cost, ["memories"], ["memory_bytes"], {"memory_bytes": seed_values(costs, KEYS, "s", "memory_bytes")})[0]
    assert line.startswith("memory_bytes: memories=1 is best") and "below memories=4 (400)" in line
    assert "not ranked" not in line
    rows[2]["epochs_to_50_never"] = 3  # memories=8: every seed still on its plateau
    lines = summary(rows, ["memories"], ["recall_acc"], {}, ["recall_acc"])
    assert lines[-1].startswith("warning: never left chance") and "memories=8" in lines[-1]


def test_capacity_curve_csv_has_one_row_per_design_and_load(tmp_path):
    trials = [trial(m, s, a) | {"point": {"m": m, "p": p, "s": s}}
              for m, accs in [(1, {16: [0.9, 1.0], 64: [0.2, 0.4]}), (4, {16: [1.0, 1.0], 64: [0.9, 0.95]})]
              for p, vals in accs.items() for s, a in enumerate(vals)]
    keys = [("memories", "m"), ("pairs", "p"), ("seed", "s")]
    rows = aggregate(trials, keys, "s", ["recall_acc"], recall=["recall_acc"])
    path = curve(tmp_path, rows, "pairs", "recall_acc", ["memories", "pairs"])
    assert path.stat().st_size > 0
    got = list(csv.DictReader((tmp_path / "curve_pairs.csv").open()))
    assert [(r["design"], r["pairs"]) for r in got] == [("memories=1", "16"), ("memories=1", "64"),
                                                        ("memories=4", "16"), ("memories=4", "64")]
    one_64 = got[1]  # seeds 0.2 and 0.4: mean 0.3, interval [0.2, 0.4], none solved at 0.9
    assert (float(one_64["mean"]), float(one_64["ci_low"]), float(one_64["ci_high"])) == pytest.approx((0.3, 0.2, 0.4))
    assert float(one_64["solve_rate"]) == 0.0 and one_64["seeds"] == "2"
    assert float(got[0]["solve_rate"]) == 1.0 and float(got[3]["solve_rate"]) == 1.0


def test_layout_writes_every_file(tmp_path):
    from ablations.results import write_all

    trials = [trial(m, s, a) | {"trial": f"m={m}", "history": [{"epoch": 1, "val_acc": a, "val_ppl": 2.0}]}
              for m, a in [(1, 0.5), (4, 0.9)] for s in range(2)]
    rows = aggregate(trials, KEYS, "s", ["recall_acc"], recall=["recall_acc"])
    lines = write_all(tmp_path, trials, rows, Layout(keys=["memories"], metrics=["recall_acc"], recall=["recall_acc"],
                                                     notes=["A NOTE"], values={"recall_acc": seed_values(
                                                         trials, KEYS, "s", "recall_acc")}))
    md = (tmp_path / "results.md").read_text()
    assert md.startswith("A NOTE") and lines[0] in md and "excludes 0" in lines[0]
    assert {"results.csv", "results_raw.csv", "results.json", "metric_vs_memories.png"} <= {
        p.name for p in tmp_path.iterdir()}
