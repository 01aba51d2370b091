"""python -m memkit.generate and python -m memkit.evaluate on saved models; bad input exits 2 with one line."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM

import memkit
from memkit import ByteTokenizer, MemoryLMSpec, TextDataSpec
from memkit.cli import evaluate as evaluate_cli
from memkit.cli import generate as generate_cli
from memkit.cli import run
from memkit.data.tokenizer import HFTokenizer, train_bpe
from memkit.training.figures import perplexity_figures, position_figures

ROOT = Path(__file__).resolve().parent.parent
TEXT = "\n\n".join(f"Paragraph {i}: the river runs past the mill and the miller counts {i * 7} sacks of grain."
                   for i in range(60))


def saved(path, vocab=257, **fields):
    torch.manual_seed(0)
    spec = dict(vocab_size=vocab, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
                max_position_embeddings=64, memory=dict(segment_len=8, num_memories=2))
    model = MemoryLMSpec.create(**{**spec, **fields}).build().eval()
    model.save_pretrained(path)
    return model


def lines(capsys):
    out = capsys.readouterr()
    return out.out, out.err


def test_generate_prints_the_models_continuation_with_bytes_or_the_tokenizer_beside_it(tmp_path, capsys):
    model = saved(tmp_path / "bytes")
    assert run(generate_cli.main, [str(tmp_path / "bytes"), "--prompt", "the river", "--max-new-tokens", "6"]) == 0
    prompt = torch.tensor([list(b"the river")])
    expected = ByteTokenizer().decode(model.generate(prompt, max_new_tokens=6, eos_token_id=256)[0, 9:].tolist())
    assert lines(capsys)[0] == expected + "\n"
    tok = HFTokenizer(train_bpe([TEXT], 300))
    model = saved(tmp_path / "bpe", vocab=tok.vocab_size, local_window="segment")
    tok.save(tmp_path / "bpe")
    assert run(generate_cli.main, [str(tmp_path / "bpe"), "--prompt", "the miller", "--max-new-tokens", "5"]) == 0
    ids = torch.tensor([tok.encode("the miller")])
    expected = tok.decode(model.generate(ids, max_new_tokens=5, eos_token_id=tok.eos_id)[0, ids.shape[1]:].tolist())
    assert lines(capsys)[0] == expected + "\n"


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    saved(tmp_path / "full", max_position_embeddings=16)
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=20, n_positions=16)).save_pretrained(
        tmp_path / "gpt2")
    (tmp_path / "empty").mkdir()
    cases = [(generate_cli, [str(tmp_path / "empty"), "--prompt", "x"], "no config.json"),
             (evaluate_cli, [str(tmp_path / "empty"), "--task", "ppl"], "no config.json"),
             (generate_cli, [str(tmp_path / "gpt2"), "--prompt", "x"], "holds a 'gpt2' model"),
             (generate_cli, [str(tmp_path / "full"), "--prompt", "x" * 20], "20 tokens is longer than max_position_"
                                                                             "embeddings (16)"),
             (evaluate_cli, [str(tmp_path / "full"), "--task", "passkey", "--set", "digits=99"], "digits")]
    for cli, argv, words in cases:
        assert run(cli.main, argv) == 2
        out, err = lines(capsys)
        assert err.startswith("error: ") and words in err and err.count("\n") == 1, err


def test_evaluate_prints_the_recipes_figures_for_a_saved_model_and_for_a_neox_baseline(tmp_path, capsys):
    source = tmp_path / "text.txt"
    source.write_text(TEXT)
    model = saved(tmp_path / "m", local_window="segment")
    data = TextDataSpec.create(source=str(source), seq_len=16, num_val=8, tokenizer=dict(kind="bytes")).build()
    args = ["--source", str(source), "--seq-len", "16", "--val-samples", "8", "--tokenizer", "bytes"]
    for task, figures in [("ppl", perplexity_figures), ("position", position_figures)]:
        assert run(evaluate_cli.main, [str(tmp_path / "m"), "--task", task, *args]) == 0
        assert json.loads(lines(capsys)[0]) == figures(model, data.val, 32)  # the same numbers, bit for bit
    torch.manual_seed(0)
    neox = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=257, hidden_size=16, num_attention_heads=2, num_hidden_layers=1,
                                            intermediate_size=32)).eval()
    neox.save_pretrained(tmp_path / "neox")
    assert run(evaluate_cli.main, [str(tmp_path / "neox"), "--task", "ppl", *args]) == 0
    figures = json.loads(lines(capsys)[0])
    assert figures == perplexity_figures(memkit.NeoXBaseline(neox), data.val, 32)
    assert 200 < figures["val_ppl"] < 300  # an untrained model over 257 ids
    assert run(evaluate_cli.main, [str(tmp_path / "m"), "--task", "passkey", "--set", "seq_len=32",
                                   "--set", "num_val=2", "--set", "digits=2"]) == 0
    assert set(json.loads(lines(capsys)[0])) == {"passkey_0", "passkey_25", "passkey_50", "passkey_75", "passkey_100",
                                                 "passkey_mean"}
    assert run(evaluate_cli.main, [str(tmp_path / "m"), "--task", "mqar", "--set", "write_segments=2",
                                   "--set", "query_segments=1", "--set", "num_groups=2", "--set", "keys_per_group=4",
                                   "--set", "num_values=8", "--set", "num_val=4"]) == 0
    assert set(json.loads(lines(capsys)[0])) == {"mqar_d1", "mqar_d2", "mqar_mean"}  # segments of the model's 8
    assert memkit.evaluate is memkit.training.evaluate  # the CLI never shadows the trainer's function


def test_evaluate_encodes_with_the_tokenizer_saved_beside_the_model(tmp_path, capsys):
    source = tmp_path / "text.txt"
    source.write_text(TEXT)
    tok = HFTokenizer(train_bpe([TEXT], 300))
    model = saved(tmp_path / "m", vocab=tok.vocab_size)
    tok.save(tmp_path / "m")
    assert run(evaluate_cli.main, [str(tmp_path / "m"), "--task", "ppl", "--source", str(source), "--seq-len", "16",
                                   "--val-samples", "4"]) == 0
    data = TextDataSpec.create(source=str(source), seq_len=16, num_val=4,
                               tokenizer=dict(kind="file", path=str(tmp_path / "m" / "tokenizer.json"))).build()
    assert json.loads(lines(capsys)[0]) == perplexity_figures(model, data.val, 32)


@pytest.mark.slow
@pytest.mark.parametrize("module", ["memkit.generate", "memkit.evaluate"])
def test_python_dash_m_entries_exit_2_without_a_traceback(module, tmp_path):
    args = ["--prompt", "x"] if module == "memkit.generate" else ["--task", "ppl"]
    done = subprocess.run([sys.executable, "-m", module, str(tmp_path), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.startswith("error: path:") and "Traceback" not in done.stderr
