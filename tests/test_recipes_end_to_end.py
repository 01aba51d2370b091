"""Every recipe, every arm, end to end at a micro size: the grid's own path (``run_point`` with dotted overrides
on the recipe's ``tiny`` preset), training and then every figure the recipe reports. The report recipes' memory
layers take fewer positions (64) than a domain source holds (160 tokens), as at the real sizes, so a piece rule
that stops fitting goes red here. A trial's checkpoint (written as the grid writes it) reproduces its ``val_ppl``
through ``memkit.evaluate``, with the tokenizer and data settings saved beside it."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ablations.trial import run_point
from memkit.models.checkpoint import save_model
from memkit.training.trainer import EpochHook


class KeepBest(EpochHook):
    """What the grid's Tune hook does with a trial's model, without Ray: the best epoch's weights and whatever the
    recipe asks to keep beside them, written to ``folder`` after every epoch."""

    def __init__(self, folder: Path):
        self.folder, self.beside, self.rows = folder, [], []

    def __call__(self, row: dict) -> None:
        self.rows.append(row)

    def save_state(self, state, model) -> None:
        save_model(model, self.folder, state.best_state, beside=self.beside, shared_memory=state.best_shared)

    def keep_beside_model(self, write) -> None:
        self.beside.append(write)


def text_micro(corpus: str, tmp_path: Path) -> dict:
    """The text report recipes' tiny preset at a micro size; the model holds 64 positions, a source 160 tokens."""
    return {
        "data.source": corpus, "data.num_train": 48, "data.num_val": 8, "data.max_chars": 20_000, "data.seq_len": 32,
        "data.tokenizer.vocab_size": 300, "data.tokenizer.cache_dir": str(tmp_path),
        "model.hidden_size": 32, "model.intermediate_size": 64, "model.max_position_embeddings": 64,
        "model.memory.segment_len": 8, "train.max_epochs": 2, "train.batch_size": 16,
        "selection.source_tokens": 160, "selection.queries": 2,
        "reversal.num_facts": 6, "reversal.num_both": 3, "reversal.repeats": 1,
        "passkey.seq_len": 64, "passkey.num_train": 16, "passkey.num_val": 2,
        "mqar.num_train": 16, "mqar.num_val": 4, "recall_train.max_epochs": 1, "recall_train.batch_size": 16,
    }


def finite(out: dict, keys: list[str]) -> None:
    for key in keys:
        assert key in out and isinstance(out[key], float | int) and math.isfinite(out[key]), (key, out.get(key))


TEXT_FIGURES = ["val_ppl", "best_epoch", "params", "memory_bytes", "sec_per_epoch", "peak_mb"]
# is the memory used? (memkit.eval.memory_use) in every trial whose model has a memory
MEMORY_USE = ["ko_read_val_ppl", "ko_read_val_ppl_change", "ko_gate_val_ppl_change", "gate_h0", "gate_mean",
              "mem_share_h0", "mem_share_mean"]
# what each evaluation a text trial runs (its spec's ``evals``, the arm applied) must report
EVAL_FIGURES = {"position": ["pos_0-16", "pos_16-32"], "reversal": ["rev_forward_acc", "rev_reports_backward_ppl"],
                "selection": ["selection_acc", "selection_psalms", "selection_code"],
                "passkey": ["passkey_mean"], "mqar": ["mqar_mean"]}

TEXT_TRIALS = ([("report_designs", {"design": d}) for d in ("single", "multi", "hierarchical")]
               + [("report_landmarks", {"landmark": lm}) for lm in ("memory_norm", "learned", "mean_k")]
               + [("report_hsa", {"landmark": lm}) for lm in ("hsa", "memory_norm")])


@pytest.mark.slow
@pytest.mark.parametrize("arm", ["as_run", "careful"])
@pytest.mark.parametrize("recipe,design", TEXT_TRIALS, ids=[f"{r}-{next(iter(d.values()))}" for r, d in TEXT_TRIALS])
def test_each_text_report_arm_trains_then_reports_every_figure(recipe, design, arm, corpus, tmp_path):
    from ablations.space import apply_overrides
    from ablations.trial import load_recipe

    module = load_recipe(recipe)
    point = {**text_micro(corpus, tmp_path), **{module.ALIASES[k]: v for k, v in design.items()}, "arm": arm}
    system = apply_overrides(module.PRESETS["tiny"](), point).system()
    hook = KeepBest(tmp_path / "model")
    out = run_point(recipe, "tiny", point, on_epoch=hook)
    evals = [e for e in system.evals if e != "selection" or system.model.memory.num_memories > 1]
    assert evals, "a trial with no evaluation beside perplexity tests less than it should"
    finite(out, TEXT_FIGURES + MEMORY_USE + [f for e in evals for f in EVAL_FIGURES[e]])
    if "position" in evals:
        finite(out, ["ko_gain_pos_0-16"])
    if system.model.memory.num_memories > 1 and arm == "careful":  # per-token selection, recorded read by read
        finite(out, ["sel_entropy", "sel_entropy_max", "read_share_m0"])
    # the passkey and MQAR models' own knock-outs (a change is nan where the intact figure is 0)
    finite(out, [f"ko_read_{e}_mean" for e in ("passkey", "mqar") if e in evals])
    epochs = [r for r in hook.rows if "gate_mean" in r]
    assert len(epochs) == len(hook.rows) > 0  # the gate's path, epoch by epoch
    if arm == "as_run":  # as run, a call is one segment: attention alone answers passkey and MQAR
        assert not {"passkey_mean", "mqar_mean"} & set(out)


@pytest.mark.slow
@pytest.mark.parametrize("layer", ["deltanet", "gated_deltanet", "sliding_window", "full_attention"])
def test_a_baseline_in_the_memory_place_runs_a_text_trial(layer, corpus, tmp_path):
    """The designs the field uses, in the same harness: trained and measured; no memory-use figures (no gate)."""
    point = {**text_micro(corpus, tmp_path), "model.design.name": layer, "model.memory.num_memories": 1,
             "design": "single", "evals": ["position", "reversal"]}
    out = run_point("report_designs", "tiny", point)
    finite(out, ["val_ppl", "params", "pos_0-16", "rev_forward_acc"])
    assert "ko_read_val_ppl" not in out and "gate_mean" not in out


@pytest.mark.slow
@pytest.mark.parametrize("arm", ["as_run", "careful"])
def test_report_context_kv_arm_trains_then_reports_every_figure(arm, corpus, tmp_path):
    base = text_micro(corpus, tmp_path)
    point = {k: v for k, v in base.items() if k.startswith(("data.", "train."))}
    point.update({"arm": arm, "oacd.max_iterations": 2, "recall.num_train": 16, "recall.num_val": 4,
                  "recall_train.max_epochs": 1, "recall_train.batch_size": 16})
    out = run_point("report_context_kv", "tiny", point, on_epoch=KeepBest(tmp_path / "model"))
    finite(out, ["val_ppl", "oacd_iterations", "trainable_share", "e1_val_ppl", "recall_acc", "params",
                 "ko_read_val_ppl", "ko_read_val_ppl_change"])
    assert "ko_gate_val_ppl" not in out and "gate_mean" not in out  # the context-KV read has no gate


@pytest.mark.slow
def test_infini_pythia_and_context_kv_train_then_report(tmp_path):
    hook = KeepBest(tmp_path / "infini")
    out = run_point("infini_pythia", "tiny", {"train.max_epochs": 2, "train.min_epochs": 1, "task.num_train": 64,
                                              "task.num_val": 16, "task.num_test": 16}, on_epoch=hook)
    finite(out, ["recall_acc", "test_ppl", "val_acc", "params", "memory_bytes", "ko_read_recall_acc",
                 "ko_gate_recall_acc", "ko_read_test_ppl_change", "gate_mean", "mem_share_mean"])
    saved = json.loads((tmp_path / "infini" / "memkit_data.json").read_text())
    assert saved["kind"] == "mqar" and saved["fields"]["num_values"] == 64  # the task it was trained on
    out = run_point("context_kv", "tiny", {"train.max_epochs": 1, "oacd.max_iterations": 2, "task.num_train": 32,
                                           "task.num_val": 8}, on_epoch=KeepBest(tmp_path / "kv"))
    finite(out, ["val_ppl", "recall_acc", "params", "trainable_share", "effective_rank", "ko_read_recall_acc",
                 "ko_read_recall_acc_change", "ko_read_val_ppl"])


@pytest.mark.slow
def test_retrofit_trains_then_reports(corpus, tmp_path):
    point = {"data.source": corpus, "data.num_train": 48, "data.num_val": 8, "data.max_chars": 20_000,
             "data.seq_len": 32, "data.tokenizer.vocab_size": 300, "data.tokenizer.cache_dir": str(tmp_path),
             "base_model.hidden_size": 32, "base_model.intermediate_size": 64, "memory.segment_len": 8,
             "pretrain.max_epochs": 1, "pretrain.batch_size": 16, "train.max_epochs": 1, "train.batch_size": 16}
    hook = KeepBest(tmp_path / "model")
    out = run_point("retrofit", "tiny", point, on_epoch=hook)
    finite(out, ["base_val_ppl", "start_val_ppl", "val_ppl", "gate_mean", "memory_bytes", "ko_read_val_ppl_change",
                 "mem_share_mean"])
    assert (tmp_path / "model" / "tokenizer.json").is_file()


def evaluate_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "memkit.evaluate", *args], capture_output=True, text=True,
                          timeout=300)


def reproduce_point(case: str, corpus: str, tmp_path: Path) -> dict:
    """The micro point of each arm the reproduce test runs."""
    base = text_micro(corpus, tmp_path)
    if case == "report_designs-careful":
        return {**base, "model.memory.num_memories": 2, "arm": "careful", "evals": ["reversal"]}
    if case == "report_hsa-as_run":  # its memory is batch-shared, reset once: validation reads what training wrote
        return {**base, "landmark": "memory_norm", "arm": "as_run", "evals": ["reversal"]}
    # report_context_kv as run: parallel fixed-point contexts from a random start
    point = {k: v for k, v in base.items() if k.startswith(("data.", "train."))}
    return {**point, "arm": "as_run", "oacd.max_iterations": 2, "recall.num_train": 16, "recall.num_val": 4,
            "recall_train.max_epochs": 1, "recall_train.batch_size": 16}


@pytest.mark.slow
@pytest.mark.parametrize("case", ["report_designs-careful", "report_hsa-as_run", "report_context_kv-as_run"])
def test_evaluate_on_a_trials_checkpoint_reproduces_its_val_ppl(case, corpus, tmp_path):
    """The checkpoint carries its tokenizer (trained on the recipe's text plus its reversal facts), its data
    settings and, for a batch-shared memory kept across validations, that memory as the best epoch's validation
    read it: ``memkit.evaluate DIR --task ppl`` with no data flags prints the trial's own val_ppl (also for
    contexts drawn at random, seeded in evaluation); another tokenizer is refused, naming both vocabularies."""
    from ablations.trial import load_recipe

    folder = tmp_path / "model"
    recipe = case.split("-")[0]
    point = reproduce_point(case, corpus, tmp_path)
    aliases = getattr(load_recipe(recipe), "ALIASES", {})
    point = {aliases.get(k, k): v for k, v in point.items()}
    out = run_point(recipe, "tiny", point, on_epoch=KeepBest(folder))
    assert (folder / "tokenizer.json").is_file() and (folder / "memkit_data.json").is_file()
    assert (folder / "shared_memory.pt").is_file() == (case == "report_hsa-as_run")
    run = evaluate_cli(str(folder), "--task", "ppl", "--batch-size", "16")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["val_ppl"] == pytest.approx(out["val_ppl"], rel=1e-6)
    if case != "report_designs-careful":
        return
    # a BPE of another size over the same text: refused, naming both vocabularies
    other = evaluate_cli(str(folder), "--task", "ppl", "--tokenizer", "bpe", "--vocab", "280")
    assert other.returncode == 2 and "vocabulary of 280" in other.stderr and f"one of {out_vocab(folder)}" in other.stderr
    assert "Traceback" not in other.stderr


def out_vocab(folder: Path) -> int:
    return json.loads((folder / "memkit_data.json").read_text())["vocab_size"]


def test_evaluate_uses_a_checkpoints_saved_data_settings_unless_a_flag_says_otherwise():
    """The data flags fall back to the checkpoint's settings, then to the defaults; a flag given wins."""
    from memkit.cli.evaluate import data_fields, parser

    saved = {"kind": "text", "fields": {"source": "a.txt,b.txt", "seq_len": 32, "num_val": 8, "max_chars": 20_000,
                                        "split_seed": 3, "num_train": 48, "tokenizer": {"kind": "bpe"}}}
    args = parser().parse_args(["DIR", "--task", "ppl"])
    fields = data_fields(args, saved)
    assert (fields["source"], fields["seq_len"], fields["num_val"], fields["split_seed"]) == ("a.txt,b.txt", 32, 8, 3)
    assert "tokenizer" not in fields
    args = parser().parse_args(["DIR", "--task", "ppl", "--seq-len", "64", "--source", "c.txt"])
    fields = data_fields(args, saved)
    assert (fields["source"], fields["seq_len"], fields["num_val"]) == ("c.txt", 64, 8)
    fields = data_fields(parser().parse_args(["DIR", "--task", "ppl"]), None)  # a model saved by hand
    assert (fields["source"], fields["seq_len"], fields["num_val"], fields["split_seed"]) == ("debian", 128, 200, 0)
    mqar = {"kind": "mqar", "fields": {"num_values": 64}}
    assert data_fields(parser().parse_args(["DIR", "--task", "ppl"]), mqar)["seq_len"] == 128


def test_the_selection_evaluation_fits_a_whole_call_layer_past_its_positions():
    """The as-run selection path alone (no training): domain memories from sources longer than the model's
    positions, built in calls of the training length."""
    from memkit.eval.tasks.selection import selection_accuracy
    from memkit.models.memory_lm import MemoryLMSpec
    from recipes._as_run import AS_RUN_LAYER

    torch.manual_seed(0)
    model = MemoryLMSpec.create(vocab_size=64, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
                                max_position_embeddings=32, local_window="full", documents="run_together",
                                memory={**AS_RUN_LAYER, "segment_len": 8, "num_memories": 2}).build()
    g = torch.Generator().manual_seed(0)
    sources = [torch.randint(0, 64, (100,), generator=g) for _ in range(2)]
    queries = [(i, torch.randint(0, 64, (8,), generator=g)) for i in (0, 1)]
    res = selection_accuracy(model, sources, queries, call_tokens=16)
    assert res["chance"] == 0.5 and len(res["choices"]) == 2
