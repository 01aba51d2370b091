"""The report recipes: each runs its tiny preset, shrunk, on small local text (two domain files),
returns every figure its report reads, and renders its tables from aggregated rows."""

import math

import pytest

from recipes import report_context_kv, report_designs, report_hsa, report_landmarks


def shrink(spec, corpus, tmp_path, **extra):
    data = dict(source=corpus, num_train=48, num_val=8, max_chars=20_000,
                tokenizer=dict(kind="bpe", vocab_size=300, cache_dir=str(tmp_path)))
    return spec.with_overrides(data={**spec.data.model_dump(), **data},
                               train={**spec.train.model_dump(), "max_epochs": 1, "batch_size": 16}, **extra)


def aggregated(figures: dict, **keys) -> dict:
    """A grid row from one trial's figures (mean = the value, std 0)."""
    row = {"seeds": 1, "failed": 0, **keys}
    for k, v in figures.items():
        if isinstance(v, (int, float)):
            row[f"{k}_mean"], row[f"{k}_std"] = float(v), 0.0
    return row


@pytest.mark.slow
def test_report_designs_runs_both_arms_and_puts_them_side_by_side(corpus, tmp_path):
    base = report_designs.tiny()
    spec = shrink(base, corpus, tmp_path, design="hierarchical",
                  reversal=dict(num_facts=8, num_both=4, repeats=2),
                  selection=dict(source_tokens=64, queries=3),
                  passkey={**base.passkey.model_dump(), "num_train": 32, "num_val": 4},
                  mqar={**base.mqar.model_dump(), "num_train": 32, "num_val": 8},
                  recall_train={**base.recall_train.model_dump(), "max_epochs": 1})
    assert spec.model.memory.hierarchy == "soft" and spec.model.memory.num_memories == 4
    out = report_designs.run(spec)
    for key in ["val_ppl", "best_epoch", "params", "memory_bytes", "sec_per_epoch", "tokens_per_s", "peak_mb",
                "pos_0-16", "pos_96-128", "rev_forward_acc", "rev_reverse_acc", "rev_logprob_gap",
                "rev_reports_forward_ppl", "rev_reports_backward_ppl", "selection_acc", "selection_psalms",
                "passkey_0", "passkey_100", "passkey_mean", "mqar_d1", "mqar_mean"]:
        assert key in out and isinstance(out[key], float | int) and not math.isnan(out[key]), key
    assert out["selection_chance"] == 0.5  # two domains, two of the four memories
    as_run = report_designs.run(spec.with_overrides(arm="as_run"))  # the reports' layer: no passkey, no MQAR
    assert "passkey_mean" not in as_run and "mqar_mean" not in as_run and as_run["val_ppl"] > 0
    assert as_run["rev_reports_backward_ppl"] > 0 and "selection_acc" in as_run
    rows = [aggregated(out, design="hierarchical", arm="careful"),
            aggregated({**out, "params": out["params"] - 100}, design="single", arm="careful"),
            aggregated(as_run, design="hierarchical", arm="as_run"),
            aggregated({**as_run, "rev_reports_backward_ppl": 2 * as_run["rev_reports_backward_ppl"]},
                       design="single", arm="as_run")]
    text = report_designs.report(rows, ["design", "arm"], spec)
    for title in ["Summary", "Reversal curse, the reports' variant", "Position-wise PPL", "Passkey", "MQAR",
                  "The report's claims, as run and careful", "Best PPL (as run)", "Best PPL (careful)"]:
        assert title in text, title
    assert "+100" in text  # extra params over single, in the careful arm
    assert "hierarchical -50.0%" in text  # backward PPL halved against single, as run


@pytest.mark.slow
def test_report_landmarks_and_hsa_tables_in_both_arms(corpus, tmp_path):
    base = report_hsa.tiny()
    spec = shrink(base, corpus, tmp_path, selection=dict(source_tokens=64, queries=3),
                  mqar={**base.mqar.model_dump(), "num_train": 32, "num_val": 8},
                  recall_train={**base.recall_train.model_dump(), "max_epochs": 1})
    hsa = spec.with_overrides(model={**spec.model.model_dump(), "memory": {**spec.model.memory.model_dump(),
                                                                             "landmark": "hsa"}})
    out = report_hsa.run(hsa)
    assert 0 <= out["selection_acc"] <= 1 and "mqar_mean" in out and "passkey_mean" not in out
    as_run = report_hsa.run(hsa.with_overrides(arm="as_run"))  # report 000's HSA: per-head encoders, Q_slc
    assert as_run["params"] > out["params"] and "mqar_mean" not in as_run
    rows = [aggregated(out, landmark="hsa", arm="careful"),
            aggregated({**out, "sec_per_epoch": out["sec_per_epoch"] / 2}, landmark="memory_norm", arm="careful"),
            aggregated(as_run, landmark="hsa", arm="as_run"),
            aggregated({**as_run, "params": as_run["params"] / 2}, landmark="memory_norm", arm="as_run")]
    text = report_hsa.report(rows, ["landmark", "arm"], spec)
    assert "The report's claims" in text and "+100%" in text  # careful: time per epoch doubled; as run: params
    text = report_landmarks.report(rows, ["landmark", "arm"], spec)
    assert "Memory selection accuracy" in text and "psalms (as run)" in text and "Passkey" not in text
    # one file is one domain: no selection figures (nothing to tell apart), the rest as usual
    one = spec.with_overrides(data={**spec.data.model_dump(), "source": corpus.split(",")[0]}, evals=["selection"])
    out = report_landmarks.run(one)
    assert "selection_acc" not in out and out["val_ppl"] > 0
    assert "Memory selection accuracy" not in report_landmarks.report([aggregated(out, landmark="x")], ["landmark"], one)


@pytest.mark.slow
def test_report_context_kv_runs_both_phases_and_recall_in_both_arms(corpus, tmp_path):
    base = report_context_kv.tiny()
    spec = shrink(base, corpus, tmp_path, oacd={**base.oacd.model_dump(), "max_iterations": 3},
                  recall={**base.recall.model_dump(), "num_train": 32, "num_val": 8},
                  recall_train={**base.recall_train.model_dump(), "max_epochs": 1})
    out = report_context_kv.run(spec)
    assert out["oacd_iterations"] <= 3 and 0 < out["trainable_share"] < 1
    assert "e1_val_ppl" in out and 0 <= out["recall_acc"] <= 1 and out["recall_chance"] == 1 / 16
    as_run = report_context_kv.run(spec.with_overrides(arm="as_run"))  # no attention between tokens, frozen embeddings
    assert as_run["params"] < out["params"] and as_run["trainable_share"] < out["trainable_share"]
    rows = [aggregated(as_run, arm="as_run"), aggregated(out, arm="careful")]
    text = report_context_kv.report(rows, ["arm"], spec)
    assert "Phase 1: OACD" in text and "Phase 2 (as_run)" in text and "| 1 |" in text
    assert "The report's claims" in text
    used = text[text.index("Is the memory used?"):]  # the context-KV read knocked out; it has no gate to force
    assert "read zeroed (as run)" in used and "gate" not in used and "memory share" not in used
    assert "| the preset |" in used  # one line, the two arms side by side
    # a key given one value (--space data.num_train=48) names no run apart: the same labels and lines
    fixed = report_context_kv.report([{**r, "data.num_train": 48} for r in rows], ["data.num_train", "arm"], spec)
    assert fixed == text


def test_the_arm_toggles_the_reports_code_both_ways():
    """A preset in one arm becomes the other by the grid's override alone: as_run fixes what the report's
    code did, careful gives memkit's defaults back."""
    from ablations.space import apply_overrides

    for module in (report_designs, report_landmarks, report_hsa):
        as_run = module.reports().system()
        assert (as_run.model.memory.segmentation, as_run.model.memory.memory_scope) == ("whole_call", "batch_shared")
        careful = apply_overrides(module.reports(), {"arm": "careful"}).system()
        assert (careful.model.memory.segmentation, careful.model.memory.memory_scope) == ("fixed", "sequence")
        assert careful.train.param_groups == "gates_apart" and as_run.train.param_groups == "one_group"
        assert (careful.model.documents, as_run.model.documents) == ("separate", "run_together")
        assert apply_overrides(module.tiny(), {"arm": "as_run"}).system().model.memory.bias is False
    hier = apply_overrides(report_designs.tiny(), {"arm": "as_run", "design": "hierarchical"}).system()
    multi = apply_overrides(report_designs.tiny(), {"arm": "as_run", "design": "multi"}).system()
    assert (hier.model.memory.shared_validation, multi.model.memory.shared_validation) == ("read_only", "writes")
    assert (hier.train.patience, report_landmarks.reports().system().train.patience) == (1, 5)
    hsa = apply_overrides(report_hsa.tiny(), {"arm": "as_run", "model.memory.landmark": "hsa"}).system()
    assert (hsa.model.memory.landmark, hsa.model.memory.selection_query, hsa.model.memory_residual) == (
        "hsa_last_keys", "projection", "sequential")
    kv = report_context_kv.reports().system()
    assert (kv.model.body, kv.oacd.phase1, kv.model.context.mask_padding) == ("kv_only", "parallel_fixed_point", False)
    careful_kv = apply_overrides(report_context_kv.reports(), {"arm": "careful"}).system()
    assert careful_kv.model.body == "neox"
    assert (careful_kv.model.documents, kv.model.documents) == ("separate", "run_together")


def test_grid_refuses_to_start_without_the_debian_texts(monkeypatch):
    """No trial starts (and none fails one by one) when the corpus is not on this machine."""
    from ablations import grid
    from memkit.data import debian_texts

    monkeypatch.setattr(debian_texts, "missing", lambda domains=debian_texts.DOMAINS: ["bible"])
    args = grid.build_parser().parse_args(["--recipe", "report_designs"])
    with pytest.raises(grid.UsageError, match="apt-get install bible-kjv.*source="):
        grid.check_inputs(args)
    args = grid.build_parser().parse_args(["--recipe", "report_designs", "--space", "source=/no/such.txt"])
    with pytest.raises(grid.UsageError, match="no such file '/no/such.txt'"):
        grid.check_inputs(args)


def test_a_failing_report_costs_only_report_md(tmp_path, capsys):
    from types import SimpleNamespace

    from ablations.grid import write_report

    def broken(rows, names, spec):
        raise KeyError("val_ppl_mean")

    module = SimpleNamespace(report=broken, presets={"tiny": dict})
    assert write_report(module, [], [], "tiny", tmp_path) is None
    assert "report() failed (KeyError" in capsys.readouterr().err and not (tmp_path / "report.md").exists()
    module.report = lambda rows, names, spec: "TABLE"
    assert write_report(module, [], [], "tiny", tmp_path) == "TABLE" and (tmp_path / "report.md").read_text() == "TABLE"
