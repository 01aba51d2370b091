"""Report tables with two arms: side by side, and the claims' verdicts from hand-made aggregated rows."""

from recipes._arms import Claim, claims_table, difference, lower, relative_change, side_by_side


def row(design, arm, mean, lo, hi, seeds=3, capped=0, metric="val_ppl"):
    return {"design": design, "arm": arm, "seeds": seeds, "failed": 0, "capped": capped,
            f"{metric}_mean": mean, f"{metric}_std": 1.0, f"{metric}_lo": lo, f"{metric}_hi": hi}


def test_a_gap_is_real_only_when_the_intervals_are_apart():
    a, b = row("a", "careful", 10.0, 9.0, 11.0), row("b", "careful", 13.0, 12.0, 14.0)
    assert difference(a, b, "val_ppl") == (-3.0, "beyond noise")
    b_close = row("b", "careful", 11.5, 10.5, 12.5)  # overlaps [9, 11]
    assert difference(a, b_close, "val_ppl") == (-1.5, "within noise")
    assert difference(a, row("b", "careful", 13.0, 13.0, 13.0, seeds=1), "val_ppl")[1] == "one seed"
    assert difference(a, row("b", "careful", 13.0, 12.0, 14.0, capped=1), "val_ppl")[1] == "capped"
    assert difference(a, {"design": "c"}, "val_ppl") is None


def test_claim_verdicts_say_holds_within_noise_or_not():
    rows = {"hierarchical": row("hierarchical", "as_run", 10.0, 9.0, 11.0),
            "single": row("single", "as_run", 20.0, 19.0, 21.0)}
    assert lower(rows, "val_ppl", "hierarchical", "single")[1] == "holds"
    assert lower(rows, "val_ppl", "single", "hierarchical")[1] == "does not hold"
    rows["single"] = row("single", "as_run", 10.5, 9.5, 11.5)
    assert lower(rows, "val_ppl", "hierarchical", "single")[1] == "holds, within noise"
    change, noise = relative_change(rows, "val_ppl", "hierarchical", "single")
    assert round(change, 2) == round(100 * (10.0 - 10.5) / 10.5, 2) and noise == "within noise"


def test_side_by_side_and_claims_put_the_arms_in_columns():
    rows = [row("single", "as_run", 20.0, 19.0, 21.0), row("hierarchical", "as_run", 10.0, 9.0, 11.0, capped=2),
            row("single", "careful", 15.0, 14.0, 16.0), row("hierarchical", "careful", 14.5, 14.0, 15.0)]
    text = side_by_side("Summary", rows, "design", [("Best PPL", "val_ppl", 1)])
    assert "| design | Best PPL (as run) | Best PPL (careful) | capped (as run) | capped (careful) |" in text
    assert "| hierarchical | 10.0 [9.0, 11.0] | 14.5 [14.0, 15.0] | 2/3 | 0/3 |" in text
    same = [row("single", "as_run", 7.0, 7.0, 7.0), {**row("hierarchical", "as_run", 9.0, None, None), "val_ppl_std": 0.5}]
    text = side_by_side("Params", same, "design", [("Params", "val_ppl", 0)])
    assert "| single | 7 |" in text and "| hierarchical | 9 ± 0 |" in text  # one value at every seed; no interval
    same[1]["val_ppl_std"] = 0.0
    assert "| hierarchical | 9 |" in side_by_side("Params", same, "design", [("Params", "val_ppl", 0)])
    claim = Claim("hierarchical beats single", "x", lambda r: lower(r, "val_ppl", "hierarchical", "single"))
    text = claims_table([claim], rows, "design")
    assert "hierarchical 10.0 vs single 20.0: **not ranked: trials capped while improving**" in text
    assert "hierarchical 14.5 vs single 15.0: **holds, within noise**" in text
    assert "| the report's claim | the report's figures | as run | careful |" in text


def test_with_per_seed_values_the_verdict_is_paired():
    """Two points whose intervals overlap, but every seed of a beats its own seed of b: the paired
    difference (-1, -1, -1 with 3 seeds) excludes 0."""
    a, b = row("a", "careful", 10.0, 8.0, 12.0), row("b", "careful", 11.0, 9.0, 13.0)
    assert difference(a, b, "val_ppl")[1] == "within noise"  # intervals overlap
    a["_seeds"], b["_seeds"] = {"val_ppl": {0: 8.0, 1: 10.0, 2: 12.0}}, {"val_ppl": {0: 9.0, 1: 11.0, 2: 13.0}}
    assert difference(a, b, "val_ppl") == (-1.0, "beyond noise")
    b["_seeds"] = {"val_ppl": {0: 9.0, 1: 9.5, 2: 13.0}}  # seed 1 goes the other way
    assert difference(a, b, "val_ppl")[1] == "within noise"


def test_the_memory_use_table_puts_knock_outs_per_arm_and_is_absent_without_a_memory():
    from recipes._arms import memory_use_table

    def used(design, arm, read, gate):
        return {"design": design, "arm": arm, "seeds": 1, "val_ppl_mean": 46.0, "ko_read_val_ppl_change_mean": read,
                "ko_gate_val_ppl_change_mean": gate, "gate_mean_mean": 0.41, "mem_share_mean_mean": 0.3}

    text = memory_use_table([used("multi", "as_run", 0.00006, 0.14), used("multi", "careful", 0.047, 0.215)],
                            "design")
    assert "| design | val PPL (as run) | val PPL (careful) | read zeroed (as run) | read zeroed (careful) |" in text
    assert "| multi | 46.0 | 46.0 | +0.01% | +4.70% | +14.0% | +21.5% | 0.41 | 0.41 | 0.300 | 0.300 |" in text
    assert memory_use_table([{"design": "x", "arm": "careful", "seeds": 1, "val_ppl_mean": 9.0}], "design") == ""


def test_a_memory_without_a_gate_gets_its_knock_out_alone_on_one_line():
    """Report 004: one design in two arms (the table keyed by the arm), a context-KV read with no gate: the gate and
    share columns are left out, not shown empty, and the arms sit side by side on one line."""
    from recipes._arms import memory_use_table

    def kv(arm, read):
        return {"arm": arm, "seeds": 1, "val_ppl_mean": 300.0, "ko_read_val_ppl_change_mean": read}

    text = memory_use_table([kv("as_run", 0.5), kv("careful", 0.02)], "arm")
    assert "(knock-outs of val PPL)" in text and "gate" not in text and "share" not in text
    assert "| the preset | 300.0 | 300.0 | +50.00% | +2.00% |" in text
