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


def generate(capsys, *argv):
    assert run(generate_cli.main, [str(a) for a in argv]) == 0
    return lines(capsys)[0]


def test_generate_samples_with_its_seed_and_top_p(tmp_path, capsys):
    """--sample draws with --seed (the same twice, another seed another text); a tiny --top-p keeps the argmax."""
    saved(tmp_path / "m")
    args = [tmp_path / "m", "--prompt", "the river", "--max-new-tokens", "12"]
    greedy = generate(capsys, *args)
    first = generate(capsys, *args, "--sample", "--seed", "1")
    assert generate(capsys, *args, "--sample", "--seed", "1") == first
    assert generate(capsys, *args, "--sample", "--seed", "2") != first
    assert first != greedy  # an untrained model is nearly flat: sampling leaves the argmax path
    assert generate(capsys, *args, "--sample", "--seed", "1", "--top-p", "1e-6") == greedy


def test_generate_stops_at_the_tokenizers_end_of_document_id(tmp_path, capsys):
    """A hand-made model whose next token depends on the last one only: 'a' is followed by the end-of-document
    id (256), that by 'b', any other byte by 'a'. A model saved without an eos_token_id stops at the tokenizer's."""
    model = saved(tmp_path / "scratch")
    assert model.eos_token_id is None
    with torch.no_grad():
        for layer in model.hf.gpt_neox.layers:  # every layer adds nothing: the last hidden state is the embedding's
            for out in (layer.mlp.dense_4h_to_h, getattr(layer.attention, "dense", None) or layer.attention.block.out):
                out.weight.zero_()
                out.bias.zero_()
        embed, head = model.hf.gpt_neox.embed_in.weight, model.hf.lm_head.weight
        one_hot = torch.eye(16)
        embed.copy_(one_hot[2].expand_as(embed))
        embed[ord("a")], embed[256] = one_hot[0], one_hot[1]
        normed = model.hf.gpt_neox.final_layer_norm(one_hot[:3])
        head.zero_()
        head[256], head[ord("b")], head[ord("a")] = normed[0], normed[1], normed[2]
    model.save_pretrained(tmp_path / "m")
    assert model.generate(torch.tensor([[ord("x")]]), max_new_tokens=6, eos_token_id=[])[0, 1:].tolist() == \
        [ord("a"), 256, ord("b"), ord("a"), 256, ord("b")]  # the model as made
    assert generate(capsys, tmp_path / "m", "--prompt", "x", "--max-new-tokens", "6") == "a\n"


def test_generate_starts_from_prebuilt_memories(tmp_path, capsys):
    model = saved(tmp_path / "m")
    state = memkit.MemoryBuilder(model).build(["the miller counts sacks of grain by the river", "def f(x): return x"])
    memkit.MemoryBuilder.save(state, tmp_path / "memories.pt")
    args = [tmp_path / "m", "--prompt", "the river", "--max-new-tokens", "12"]
    plain = generate(capsys, *args)
    with_memories = generate(capsys, *args, "--memories", tmp_path / "memories.pt")
    assert with_memories != plain
    ids = torch.tensor([list(b"the river")])
    out = model.generate(ids, max_new_tokens=12, eos_token_id=256, state=memkit.MemoryBuilder.load(tmp_path / "memories.pt"))
    assert with_memories == ByteTokenizer().decode(out[0, 9:].tolist()) + "\n"


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
             (evaluate_cli, [str(tmp_path / "full"), "--task", "passkey", "--set", "digits=99"], "digits"),
             (evaluate_cli, [str(tmp_path / "full"), "--task", "passkey", "--set", "nope=1"],
              "nope: not a field of PasskeyTask; its fields: "),
             (generate_cli, [str(tmp_path / "full"), "--prompt", "x", "--max-new-tokens", "0"], "--max-new-tokens: 0"),
             (generate_cli, [str(tmp_path / "full"), "--prompt", "x", "--sample", "--temperature", "0"], "--temperature"),
             (generate_cli, [str(tmp_path / "full"), "--prompt", "x", "--sample", "--top-p", "2"], "--top-p: 2"),
             (generate_cli, [str(tmp_path / "full"), "--prompt", "x", "--top-k", "-1"], "--top-k: -1"),
             (generate_cli, [str(tmp_path / "full"), "--prompt", "x", "--memories", str(tmp_path / "no.pt")],
              "--memories: no file")]
    for cli, argv, words in cases:
        assert run(cli.main, argv) == 2
        out, err = lines(capsys)
        assert err.startswith("error: ") and words in err and err.count("\n") == 1, err


def test_evaluate_refuses_a_task_the_model_has_no_ids_for_and_set_on_a_text_task(tmp_path, capsys):
    """A task or tokenizer with more token ids than the model's vocabulary, and --set on ppl or position (they have
    no fields), are each one line and exit status 2."""
    source = tmp_path / "text.txt"
    source.write_text(TEXT)
    saved(tmp_path / "small", vocab=30)
    saved(tmp_path / "bytes")
    lines(capsys)  # saving's own output
    text = ["--source", str(source), "--seq-len", "16", "--val-samples", "4", "--tokenizer", "bytes"]
    cases = [([tmp_path / "small", "--task", "passkey", "--set", "num_val=2"],
              "the passkey task uses 37 token ids but the model's vocabulary has 30"),
             ([tmp_path / "small", "--task", "mqar", "--set", "num_val=2"],
              "the MQAR task uses 193 token ids but the model's vocabulary has 30"),
             ([tmp_path / "small", "--task", "ppl", *text], "the tokenizer uses 257 token ids but the model's "
                                                            "vocabulary has 30"),
             ([tmp_path / "bytes", "--task", "ppl", "--set", "seq_len=8", *text], "--set: the ppl task has no fields"),
             ([tmp_path / "bytes", "--task", "position", "--set", "seq_len=8", *text],
              "--set: the position task has no fields")]
    for argv, words in cases:
        assert run(evaluate_cli.main, [str(a) for a in argv]) == 2
        out, err = lines(capsys)
        assert out == "" and err.startswith("error: ") and words in err and err.count("\n") == 1, err


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


OTHER_TEXT = "\n\n".join(f"Chapter {i}: a fox jumps over the lazy dog while {i * 3} geese fly south for winter."
                         for i in range(60))


def test_a_tokenizer_of_the_models_size_with_other_ids_is_refused(tmp_path, capsys):
    """Another BPE of the same size maps tokens to other ids: evaluate and generate refuse it in one line naming the
    tokenizer beside the model, as they refuse another size; the one beside the model, given by path, is accepted."""
    source = tmp_path / "text.txt"
    source.write_text(TEXT)
    tok, other = HFTokenizer(train_bpe([TEXT], 300)), HFTokenizer(train_bpe([OTHER_TEXT], 300))
    assert tok.vocab_size == other.vocab_size and tok.tok.get_vocab() != other.tok.get_vocab()  # the case
    saved(tmp_path / "m", vocab=tok.vocab_size)
    tok.save(tmp_path / "m")
    (tmp_path / "other").mkdir()
    other.save(tmp_path / "other")
    lines(capsys)
    text = ["--task", "ppl", "--source", str(source), "--seq-len", "16", "--val-samples", "4"]
    cases = [(evaluate_cli, [*text, "--tokenizer-path", str(tmp_path / "other" / "tokenizer.json")]),
             (generate_cli, ["--prompt", "the miller", "--tokenizer", str(tmp_path / "other" / "tokenizer.json")])]
    for cli, argv in cases:
        assert run(cli.main, [str(tmp_path / "m"), *argv]) == 2
        out, err = lines(capsys)
        assert out == "" and err.count("\n") == 1, err
        assert "of its tokens have other ids" in err and str(tmp_path / "m" / "tokenizer.json") in err, err
    # the model's own tokenizer, given by path, is the same vocabulary
    assert run(evaluate_cli.main, [str(tmp_path / "m"), *text, "--tokenizer-path",
                                   str(tmp_path / "m" / "tokenizer.json")]) == 0


def test_a_file_that_is_no_tokenizer_and_a_stray_vocab_are_one_line(tmp_path, capsys):
    """A tokenizer path to a file that is not a tokenizer.json, and --vocab without --tokenizer bpe (it would be
    ignored: the model's tokenizer has its own size), are one line and exit 2, in the CLIs and in a spec."""
    from memkit.data.tokenizer import TokenizerSpec
    from memkit.spec import SpecError

    saved(tmp_path / "m")
    notes = tmp_path / "notes.md"
    notes.write_text("# not a tokenizer\n")
    lines(capsys)
    cases = [(evaluate_cli, ["--task", "ppl", "--tokenizer-path", str(notes)], "is not a tokenizer.json"),
             (generate_cli, ["--prompt", "x", "--tokenizer", str(notes)], "is not a tokenizer.json"),
             (evaluate_cli, ["--task", "ppl", "--vocab", "512"], "--vocab 512: applies only with --tokenizer bpe"),
             (evaluate_cli, ["--task", "ppl", "--tokenizer", "bytes", "--tokenizer-path", str(notes)],
              "--tokenizer-path: applies only with --tokenizer file")]
    for cli, argv, words in cases:
        assert run(cli.main, [str(tmp_path / "m"), *argv]) == 2
        out, err = lines(capsys)
        assert out == "" and err.startswith("error: ") and words in err and err.count("\n") == 1, err
    with pytest.raises(SpecError, match=r"path: .*notes\.md.* is not a tokenizer\.json"):
        TokenizerSpec.create(kind="file", path=str(notes))


def test_a_checkpoint_without_its_shared_memory_is_one_warning_line_and_still_runs(tmp_path, capsys):
    """A batch-shared memory reset once, saved by save_pretrained alone (no shared_memory.pt): the CLI says so in
    one ``warning:`` line and generates from an empty memory."""
    saved(tmp_path / "once", memory=dict(segment_len=8, num_memories=2, memory_scope="batch_shared",
                                         shared_reset="once"))
    lines(capsys)
    assert run(generate_cli.main, [str(tmp_path / "once"), "--prompt", "the river", "--max-new-tokens", "3"]) == 0
    out, err = lines(capsys)
    assert err.startswith("warning: ") and "shared_memory.pt' is missing" in err and err.count("\n") == 1, err
