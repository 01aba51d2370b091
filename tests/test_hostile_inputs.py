"""Hostile inputs (issue 23): every bad input a user can give the command lines or the specs is one line naming
what is wrong and what is allowed, with exit status 2 (or the behaviour asked for); nothing hangs; a broken
checkpoint says which file and what is wrong with it. The tables run in-process (fast); a handful of cases run as
the user does, in a subprocess; hypothesis fuzzes the parsers and validators for tracebacks."""

import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

import memkit
from ablations import grid as grid_cli
from ablations.results import aggregate, display_rows, summary
from ablations.space import SpaceError, grid_points, leaf_fields, parse_space
from ablations.tracking import logger_callbacks, quiet_tune_loggers, worker_env
from memkit import (
    ContextKVLMSpec,
    MemoryAttentionSpec,
    MemoryBuilder,
    MemoryLMSpec,
    MemoryStoreSpec,
    TextDataSpec,
    TrainSpec,
)
from memkit.cli import evaluate as evaluate_cli
from memkit.cli import generate as generate_cli
from memkit.cli import run
from memkit.data import debian_texts
from memkit.eval.tasks.passkey import PasskeyTask
from memkit.eval.tasks.recall import RecallTask
from memkit.models.pretrained import CheckpointError
from memkit.spec import SpecError
from memkit.training.trainer import train
from recipes import infini_pythia

ROOT = Path(__file__).resolve().parent.parent
TEXT = "\n\n".join(f"Paragraph {i}: the river runs past the mill and the miller counts {i * 7} sacks." for i in range(60))


def memkit_model(path, num_memories=2):
    torch.manual_seed(0)
    model = MemoryLMSpec.create(vocab_size=257, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
                                max_position_embeddings=64,
                                memory=dict(segment_len=8, num_memories=num_memories)).build().eval()
    model.save_pretrained(path)
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Saved models, whole and broken, and memory files, as a user would have them on disk."""
    root = tmp_path_factory.mktemp("hostile")
    model = memkit_model(root / "m")
    GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=257, hidden_size=16, num_attention_heads=2, num_hidden_layers=1,
                                     intermediate_size=32, max_position_embeddings=16)).save_pretrained(root / "neox")
    for name, file in (("badcfg", "config.json"), ("badst", "model.safetensors"), ("noweights", None)):
        memkit_model(root / name)
        if file is None:
            (root / name / "model.safetensors").unlink()
        else:
            data = (root / name / file).read_bytes()
            (root / name / file).write_bytes(data[: len(data) // 2])  # truncated, as by a full disk or a lost copy
    MemoryBuilder.save(MemoryBuilder(model).build(["the miller counts sacks", "def f(x): return x"]), root / "mem.pt")
    MemoryStoreSpec(num_heads=2, head_dim=8).build().init_state(batch_size=1).save(root / "store.pt")
    other = memkit_model(root / "m4", num_memories=4)
    MemoryBuilder.save(MemoryBuilder(other).build(["a" * 16, "b" * 16]), root / "mem4.pt")
    (root / "text.txt").write_text(TEXT)
    return root


def one_line(capsys) -> tuple[str, str]:
    out = capsys.readouterr()
    return out.out, out.err


# (command, argv with {d} for the fixture's folder, words the one line must hold)
CLI_CASES = [
    ("generate", "{d}/m --prompt hi --memories {d}/m/config.json", ["memories: ", "config.json' is not a saved memory"]),
    ("generate", "{d}/m --prompt hi --memories {d}/store.pt", ["bare MemoryStore state", "MemoryBuilder.save"]),
    ("generate", "{d}/m --prompt hi --memories {d}/mem4.pt", ["--memories", "[4, 2, 8, 8]", "[2, 2, 8, 8]"]),
    ("generate", "{d}/badcfg --prompt hi", ["badcfg/config.json' is not valid JSON", "truncated"]),
    ("generate", "{d}/badst --prompt hi", ["badst/model.safetensors' cannot be read as safetensors", "truncated"]),
    ("generate", "{d}/noweights --prompt hi", ["noweights", "cannot be loaded"]),
    ("evaluate", "{d}/badcfg --task passkey", ["badcfg/config.json' is not valid JSON"]),
    ("evaluate", "{d}/badst --task passkey", ["badst/model.safetensors' cannot be read as safetensors"]),
    ("evaluate", "{d}/m --task ppl --source {d}/text.txt --tokenizer bytes --seq-len 16 --batch-size 0",
     ["--batch-size: 0", "at least 1"]),
    ("evaluate", "{d}/m --task ppl --source {d}/text.txt --tokenizer bytes --seq-len 16 --batch-size -1",
     ["--batch-size: -1"]),
    ("evaluate", "{d}/m --task ppl --source {d}/text.txt --tokenizer bytes --seq-len 0", ["--seq-len: 0"]),
    ("generate", "{d}/m --prompt hi --top-p 1.5", ["--top-p: 1.5", "0 < top_p <= 1"]),
    ("generate", "{d}/m --prompt hi --top-p 0.9 --temperature 0.5", ["--temperature, --top-p", "only with --sample"]),
    ("generate", "{d}/neox --prompt " + "x" * 20, ["70 tokens", "max_position_embeddings (16)"]),  # 50 new ones
    ("generate", "{d}/neox --prompt hello --max-new-tokens 12", ["17 tokens", "max_position_embeddings (16)"]),
    ("evaluate", "{d}/neox --task ppl --source {d}/text.txt --tokenizer bytes --seq-len 32 --val-samples 2",
     ["32 tokens", "max_position_embeddings (16)"]),
]


@pytest.mark.parametrize("command, argv, words", CLI_CASES)
def test_command_line_mistakes_are_one_line_and_exit_2(saved, capsys, command, argv, words):
    cli = generate_cli if command == "generate" else evaluate_cli
    assert run(cli.main, argv.format(d=saved).split()) == 2
    out, err = one_line(capsys)
    assert out == "" and err.startswith("error: ") and err.count("\n") == 1, err
    assert all(w in err for w in words), err


def test_sampling_settings_apply_with_sample_and_figures_are_valid_json(saved, capsys):
    """With --sample the same settings run; evaluate's output is strict JSON (no NaN)."""
    assert run(generate_cli.main, [str(saved / "m"), "--prompt", "hi", "--sample", "--top-p", "0.9",
                                   "--max-new-tokens", "3"]) == 0
    one_line(capsys)
    assert run(evaluate_cli.main, [str(saved / "m"), "--task", "ppl", "--source", str(saved / "text.txt"),
                                   "--tokenizer", "bytes", "--seq-len", "16", "--val-samples", "2"]) == 0
    out = one_line(capsys)[0]
    json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert evaluate_cli.finite_or_null({"a": float("nan"), "b": 1.5, "c": "x"}) == {"a": None, "b": 1.5, "c": "x"}


def test_memkit_load_names_the_broken_file(saved, tmp_path):
    for name, words in (("badcfg", "config.json' is not valid JSON"), ("badst", "model.safetensors' cannot be read")):
        with pytest.raises(CheckpointError, match=words):
            memkit.load(saved / name)
    with pytest.raises(CheckpointError, match="no model at"):
        memkit.load(tmp_path)
    spec_saved = tmp_path / "grid_model"  # the form a non-transformers model is saved in
    spec_saved.mkdir()
    (spec_saved / "spec.json").write_text('{"spec": "memkit.models.memory_lm.MemoryLMSp')
    (spec_saved / "model.pt").write_bytes(b"\x80")
    with pytest.raises(CheckpointError, match="spec.json' names no spec"):
        memkit.load(spec_saved)
    with pytest.raises(CheckpointError, match="is not a saved memory state"):
        MemoryBuilder.load(saved / "m" / "config.json")


def no_corpus(monkeypatch):
    monkeypatch.setattr(debian_texts, "missing", lambda domains=debian_texts.DOMAINS: list(domains))


def test_a_missing_corpus_gives_the_hint_of_the_command_in_use(saved, capsys, monkeypatch):
    no_corpus(monkeypatch)
    assert run(evaluate_cli.main, [str(saved / "m"), "--task", "ppl", "--tokenizer", "bytes"]) == 2
    err = one_line(capsys)[1]
    assert "apt-get install" in err and "--source <your files>" in err and "--space" not in err, err
    assert grid_cli.main(["--recipe", "report_hsa", "--results", str(saved / "res")]) == 2
    err = one_line(capsys)[1]
    assert err.count("\n") == 1 and "apt-get install" in err and "--space source=<your files>" in err, err
    from recipes import report_hsa, retrofit

    for recipe, main in (("report_hsa", report_hsa.main), ("retrofit", retrofit.main)):
        with pytest.raises(SystemExit) as done:
            main(["--preset", "tiny"])
        err = one_line(capsys)[1]
        assert done.value.code == 2 and err.count("\n") == 1, err
        assert f"python -m ablations.grid --recipe {recipe} --space source=<your files>" in err, err


GRID_CASES = [
    ("--space memories=1 --results /proc/x", ["--results '/proc/x'", "cannot write there"]),
    ("--space memories=1 --num-cpus 0", ["--num-cpus must be >= 1"]),
    ("--space memories=1 --cpus-per-trial 4 --num-cpus 1", ["--cpus-per-trial 4", "could never start", "--num-cpus 1"]),
    ("--space memories=1 --cpus-per-trial 100000", ["--cpus-per-trial 100000", "this machine has"]),
    ("--space memories=1 --num-gpus -1", ["--num-gpus must be >= 0"]),
    ("--space memories=1 --address auto --num-cpus 2", ["--num-cpus and --num-gpus size a local Ray"]),
    ("--search optuna --space lr=1e-4:1e-2:log3 --num-samples 0", ["--num-samples must be in 1..100000, got 0"]),
    ("--space min_epochs=30 --space epochs=3", ["min_epochs=30", "max_epochs (3)", "could stop as converged"]),
    ("--space memories=-1", ["num_memories must be >= 0", "0: no memory layer"]),
    ("--space memories=true", ["memories", "not an integer"]),
    ("--space model.memory.hidden_size=64", ["memory.hidden_size (64) differs from the model's hidden_size (32)"]),
    (f"--recipe report_landmarks --space data.tokenizer.kind=file --space data.tokenizer.path={__file__}",
     ["data.tokenizer: path:", "is not a tokenizer.json"]),  # read before any trial, not in one after Ray started
]


@pytest.mark.parametrize("argv, words", GRID_CASES)
def test_grid_mistakes_are_refused_before_ray_starts(tmp_path, capsys, argv, words):
    argv = argv if "--results" in argv else argv + f" --results {tmp_path}"
    assert grid_cli.main(argv.split()) == 2
    out, err = one_line(capsys)
    assert err.startswith("error: ") and err.count("\n") == 1 and all(w in err for w in words), err
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()
    assert not (tmp_path / "infini_pythia-tiny").exists() and "grid:" not in out  # nothing ran


@pytest.mark.parametrize("argv", [["--space", "memories=1", "--num-cpus", "0"],
                                  ["--space", "memories=1", "--cpus-per-trial", "4", "--num-cpus", "1"]])
def test_the_hangs_return_within_seconds_as_the_user_runs_them(tmp_path, argv):
    """These printed the resources line and waited forever for a trial Ray could never place."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ablations.grid", "--no-dashboard", *argv, "--results", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert "resources per trial" not in done.stdout and time.perf_counter() - t0 < 60


@pytest.mark.parametrize("module, args", [("memkit.generate", ["badst", "--prompt", "hi"]),
                                          ("memkit.evaluate", ["badcfg", "--task", "ppl"])])
def test_a_broken_checkpoint_is_one_line_from_python_dash_m(saved, module, args):
    done = subprocess.run([sys.executable, "-m", module, str(saved / args[0]), *args[1:]], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


# specs -----------------------------------------------------------------------------------------------------------


def test_the_plain_constructor_raises_the_same_one_line_error_as_create():
    for make in (MemoryAttentionSpec, MemoryAttentionSpec.create):
        with pytest.raises(SpecError) as err:
            make(hidden_size=30, num_heads=4)
        assert str(err.value) == "MemoryAttentionSpec: hidden_size (30) must be divisible by num_heads (4)"
    with pytest.raises(SpecError, match=r"^memory\.segment_len: .*\(got 0\)$"):
        MemoryLMSpec(memory=dict(segment_len=0))  # a nested field keeps its dotted path


def test_a_bool_is_not_a_number_and_the_memory_shape_is_the_models():
    for make in (lambda: MemoryAttentionSpec(num_memories=True), lambda: MemoryLMSpec(memory=dict(num_memories=True)),
                 lambda: TrainSpec(lr=True)):
        with pytest.raises(SpecError, match="give a number, not true/false"):
            make()
    assert MemoryAttentionSpec(key_shift=True).key_shift is True  # a bool field still takes bools
    for memory in (dict(hidden_size=32), MemoryAttentionSpec(hidden_size=32, num_heads=4)):
        with pytest.raises(SpecError, match=r"memory.hidden_size \(32\) differs from the model's hidden_size \(64\)"):
            MemoryLMSpec(hidden_size=64, num_heads=4, memory=memory)
    spec = MemoryLMSpec(hidden_size=64, num_heads=4, memory=MemoryAttentionSpec(segment_len=16))  # defaults: derived
    assert (spec.memory.hidden_size, spec.memory.num_heads, spec.memory.segment_len) == (64, 4, 16)
    wider = spec.with_overrides(hidden_size=128, num_heads=8)  # a dump changed and validated again derives afresh
    assert (wider.memory.hidden_size, wider.memory.num_heads) == (128, 8)


# training ---------------------------------------------------------------------------------------------------------


class Breaks(nn.Module):
    """A bigram model whose loss (``what="loss"``) or gradient (``what="grad"``) stops being finite at call ``at``."""

    def __init__(self, what: str, at: int):
        super().__init__()
        self.emb, self.w = nn.Embedding(8, 8), nn.Parameter(torch.zeros(()))
        self.what, self.at, self.calls = what, at, 0

    def forward(self, ids):
        self.calls += self.training  # training steps only, not validation
        logits = self.emb(ids)
        if self.training and self.calls == self.at:
            # sqrt at 0: a finite value (0) whose gradient is infinite
            logits = logits * float("nan") if self.what == "loss" else logits + torch.sqrt(self.w - self.w.detach())
        return logits, None


@pytest.mark.parametrize("what, words", [("loss", "loss is not finite (nan)"), ("grad", "gradient is not finite")])
def test_training_stops_at_the_first_non_finite_step_and_says_where(what, words):
    ids = torch.randint(0, 8, (64, 6))
    model = Breaks(what, at=7)  # 4 steps an epoch: the 7th call is epoch 2, step 3
    with pytest.raises(FloatingPointError, match=re.escape(words) + ".* at epoch 2, step 3 of 4"):
        train(model, (ids, ids), (ids[:8], ids[:8]), TrainSpec(batch_size=16, max_epochs=5, warmup_steps=0))
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the bad step was never applied


# the grid's table, loggers and history -------------------------------------------------------------------------------


def trial(seed, epochs, capped):
    return {"point": {"train.max_epochs": 3, "seed": seed}, "status": "ok", "epochs": epochs, "capped": capped,
            "epochs_to_50": math.inf, "recall_acc": 0.02}


def test_the_epochs_run_are_told_apart_from_the_cap_and_the_advice_fits_how_trials_stopped():
    keys, names = [("epochs", "train.max_epochs"), ("seed", "seed")], ["epochs"]
    for capped, advice in ((True, "raise the cap (max_epochs, alias epochs)"), (False, "raise min_epochs")):
        rows = aggregate([trial(s, 3, capped) for s in range(2)], keys, "seed", ["recall_acc", "epochs",
                                                                                  "epochs_to_50"])
        cols, _ = display_rows(rows, names, ["recall_acc", "epochs"])
        assert cols[:3] == ["epochs", "recall_acc", "epochs run"]
        [warning] = [line for line in summary(rows, names, ["recall_acc"]) if "never left chance" in line]
        assert advice in warning, warning


def test_loggers_write_only_what_was_asked_and_wandb_workers_are_offline(monkeypatch):
    pytest.importorskip("ray")
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", raising=False)
    quiet_tune_loggers()  # Tune adds no TensorBoard logger of its own, also for a restored Tuner
    import os

    assert os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] == "1"
    for names, tensorboard in (([], False), (["tensorboard"], True)):
        kinds = {type(c) for c in logger_callbacks(names, Path("."), "x")}
        assert {CSVLoggerCallback, JsonLoggerCallback} <= kinds and (TBXLoggerCallback in kinds) == tensorboard
    assert worker_env(["wandb"]) == {"WANDB_MODE": "offline"} and worker_env(["mlflow"]) == {}
    args = SimpleNamespace(recipe_name="infini_pythia", logger=["wandb"])
    assert grid_cli.runtime_env(args)["env_vars"]["WANDB_MODE"] == "offline"


def test_a_resumed_trials_history_holds_its_epochs_from_before_the_restart(tmp_path):
    pytest.importorskip("ray")
    point = {"x": 1}
    label = "x=1"
    with (tmp_path / "epochs.jsonl").open("w") as f:  # what the interrupted run wrote, epochs 1 and 2
        for e in (1, 2):
            f.write(json.dumps({"trial": label, "epoch": e, "val_ppl": 10.0 - e}) + "\n")
        f.write(json.dumps({"trial": "x=2", "epoch": 1, "val_ppl": 1.0}) + "\n")
    from ablations.progress import Progress

    callback = Progress({json.dumps(point, sort_keys=True): label}, 1, tmp_path, ["val_ppl"])
    restored = SimpleNamespace(trial_id="t1", config={"point": point}, checkpoint=None)
    for e in (3, 4):
        callback.on_trial_result(0, [], restored, {"epoch": e, "val_ppl": 10.0 - e})
    callback.on_trial_result(0, [], restored, {"final": True, "val_ppl": 6.0})
    callback.on_trial_complete(0, [], restored)
    [row] = [json.loads(line) for line in (tmp_path / "trials.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in row["history"]] == [1, 2, 3, 4] and row["history"][0]["val_ppl"] == 9.0


# fuzz: no traceback, whatever the values -----------------------------------------------------------------------------

VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                   st.text(max_size=12), st.lists(st.integers(-3, 3), max_size=3),
                   st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))
SPECS = [MemoryAttentionSpec, MemoryStoreSpec, MemoryLMSpec, TrainSpec, ContextKVLMSpec, RecallTask, PasskeyTask,
         TextDataSpec]


@given(st.sampled_from(SPECS), st.data())
def test_fuzz_spec_fields_give_a_spec_or_one_line(spec_class, data):
    fields = list(leaf_fields(spec_class))
    chosen = data.draw(st.lists(st.sampled_from(fields), min_size=1, max_size=3, unique=True))
    values = {path: data.draw(VALUES) for path in chosen}
    nested: dict = {}
    for path, value in values.items():
        *parents, leaf = path.split(".")
        into = nested
        for p in parents:
            into = into.setdefault(p, {})
        into[leaf] = value
    for make in (spec_class, spec_class.create):
        try:
            make(**nested)
        except SpecError as e:
            assert "\n" not in str(e) and str(e), repr(e)


TEXT_VALUES = st.one_of(st.text(max_size=10), st.sampled_from(["nan", "inf", "-inf", "-0", "1e999", "true", "none",
                                                               "0:0", "1:8:log0", "1:-1", "3:1:lin2", ",", "1,1"]),
                        st.integers(-10**9, 10**9).map(str), st.floats().map(str))


@given(st.sampled_from(sorted(infini_pythia.ALIASES)), TEXT_VALUES)
def test_fuzz_space_values_give_points_or_one_line(key, text):
    try:
        space = parse_space([f"{key}={text}"], infini_pythia.SPEC, infini_pythia.ALIASES)
        grid_points(infini_pythia.PRESETS["tiny"](), space)
    except SpaceError as e:
        assert "\n" not in str(e) and str(e)


NUMBERS = st.one_of(st.integers(-10**6, 10**6).map(str), st.floats().map(str), st.sampled_from(["nan", "-inf", "0"]))


@given(max_new=st.integers(-5, 10**6).map(str), temperature=st.none() | NUMBERS, top_k=st.none() | st.integers(-9, 99).map(str),
       top_p=st.none() | NUMBERS, sample=st.booleans())
def test_fuzz_generate_values_pass_or_are_one_line(max_new, temperature, top_k, top_p, sample):
    argv = ["dir", "--prompt", "x", "--max-new-tokens", max_new] + ["--sample"] * sample
    for flag, value in (("--temperature", temperature), ("--top-k", top_k), ("--top-p", top_p)):
        argv += [flag, value] if value is not None else []
    try:
        args = generate_cli.parser().parse_args(argv)
        generate_cli.check(args)
    except generate_cli.UsageError as e:
        assert "\n" not in str(e)
    else:
        assert args.max_new_tokens >= 1 and args.temperature > 0 and 0 < args.top_p <= 1 and args.top_k >= 0


@given(batch=st.integers(-3, 64), seq=st.integers(-3, 512), pairs=st.lists(TEXT_VALUES, max_size=3),
       task=st.sampled_from([PasskeyTask, RecallTask]), keys=st.lists(st.sampled_from(
           ["seq_len", "digits", "num_val", "write_segments", "num_values", "segment_len", "nope", ""]), max_size=3))
def test_fuzz_evaluate_values_and_task_fields_pass_or_are_one_line(batch, seq, pairs, task, keys):
    try:
        args = evaluate_cli.parser().parse_args(["dir", "--task", "ppl", "--batch-size", str(batch), "--seq-len",
                                                 str(seq)])
        evaluate_cli.check(args)
        task.create(**evaluate_cli.task_fields([f"{k}={v}" for k, v in zip(keys, pairs)]))
    except (evaluate_cli.UsageError, SpecError) as e:
        assert "\n" not in str(e)


@given(st.lists(st.tuples(st.sampled_from(["--seeds", "--cpus-per-trial", "--num-cpus", "--keep-checkpoints",
                                           "--max-failures", "--num-samples", "--gpus-per-trial"]),
                          st.integers(-3, 10**6).map(str)), max_size=3, unique_by=lambda t: t[0]),
       st.sampled_from(["memories=1", "memories=0,1", "lr=1e-3:1e-2:log2", "epochs=0", "samples=-5"]))
def test_fuzz_grid_flags_are_accepted_or_one_line_and_ray_never_starts(tmp_path_factory, flags, space):
    argv = ["--space", space, "--results", str(tmp_path_factory.getbasetemp())] + [x for f in flags for x in f]
    try:
        args = grid_cli.build_parser().parse_args(argv)
        grid_cli.check_inputs(args)
    except grid_cli.UsageError as e:
        assert "\n" not in str(e)
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


TOY = '''
from pydantic import Field
from memkit.spec import Spec

class Toy(Spec):
    x: int = Field(0, ge=0)
    seed: int = Field(0, ge=0)

SPEC, PRESETS, ALIASES, METRICS = Toy, {"tiny": Toy}, {"x": "x", "seed": "seed"}, ["val_ppl"]

def run(spec, on_epoch=None, progress=None):
    for epoch in (1, 2):
        if on_epoch:
            on_epoch({"epoch": epoch, "val_acc": 0.5, "val_ppl": 3.0 - epoch, "seconds": 0.0})
    return {"val_ppl": 1.0 + spec.x, "recall_acc": float("nan")}
'''


@pytest.mark.slow
def test_wandb_alone_logs_offline_runs_and_no_tensorboard_files(tmp_path):
    """Without WANDB_MODE the workers' wandb went online, failed in silence and left no run; and Tune's own
    TensorBoard logger wrote event files whatever --logger said."""
    recipe = tmp_path / "toy_recipe.py"
    recipe.write_text(TOY)
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("WANDB_")}
    done = subprocess.run([sys.executable, "-m", "ablations.grid", "--no-dashboard", "--recipe", str(recipe), "--space",
                           "x=1,2", "--seeds", "1", "--num-cpus", "2", "--logger", "wandb", "--results",
                           str(tmp_path / "r")], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    [out] = [p for p in (tmp_path / "r").iterdir() if p.is_dir()]
    assert not list(out.rglob("events.out.tfevents.*"))
    assert len(list((out / "wandb").glob("offline-run-*"))) == 2 and "warning" not in done.stderr
    assert "NaN or Inf" not in done.stdout + done.stderr
