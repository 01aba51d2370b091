"""A memory layer retrofitted into a pretrained GPT-NeoX starts as the checkpoint did."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM

from memkit import CheckpointError, MemoryAttentionSpec, SpecError, retrofit


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny random GPT-NeoX saved as a checkpoint: rotary on half of each head, a base that is not 10,000, random
    biases."""
    torch.manual_seed(0)
    config = GPTNeoXConfig(vocab_size=50, hidden_size=32, num_attention_heads=4, num_hidden_layers=3,
                           intermediate_size=64, rotary_pct=0.5, rotary_emb_base=500, max_position_embeddings=128)
    model = GPTNeoXForCausalLM(config).eval()
    with torch.no_grad():  # GPT-NeoX starts its biases at 0: random ones show how each is laid out
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.normal_(0, 0.5)
    path = tmp_path_factory.mktemp("neox")
    model.save_pretrained(path)
    return path, model


@pytest.mark.parametrize("layer", [0, 2])
@pytest.mark.parametrize("memory", [dict(segment_len=16),
                                    dict(segment_len=16, num_memories=4, landmark="hsa", hierarchy="soft")])
def test_on_one_segment_the_retrofitted_model_is_the_checkpoint(checkpoint, layer, memory):
    path, neox = checkpoint
    model = retrofit(path, memory=MemoryAttentionSpec(**memory), memory_layer=layer).eval()
    x = torch.randint(0, 50, (2, 16))
    torch.testing.assert_close(model(x)[0], neox(x).logits, rtol=0, atol=1e-5)
    assert model.memory.gate().max() < 1e-8  # closed
    assert (model.memory.rotary_dim, model.memory.rotary_base) == (4, 500.0)


def test_a_model_object_works_and_the_gate_can_be_set(checkpoint):
    _, neox = checkpoint
    model = retrofit(neox, memory=dict(segment_len=8, gate_init=0.0), memory_layer=1, local_window="segment")
    assert float(model.memory.gate().detach()[0]) == 0.5 and model.local_window == "segment"


def test_bad_checkpoints_and_layers_are_one_clear_error(checkpoint, tmp_path):
    path, _ = checkpoint
    with pytest.raises(CheckpointError, match="no config.json"):
        retrofit(tmp_path)
    gpt2 = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=20, n_positions=16)).save_pretrained(gpt2)
    with pytest.raises(CheckpointError, match="holds a 'gpt2' model; retrofit takes GPT-NeoX"):
        retrofit(gpt2)
    with pytest.raises(SpecError, match=r"memory_layer must be in 0\.\.2, got 3"):
        retrofit(path, memory_layer=3)



@pytest.mark.parametrize("odd", [dict(use_parallel_residual=False), dict(hidden_act="relu"),
                                 dict(tie_word_embeddings=True), dict(layer_norm_eps=1e-6)])
def test_a_neox_memkit_cannot_rebuild_is_refused(odd):
    """memkit's GPT-NeoX is built one way (parallel residual, untied head, gelu, eps 1e-5): other checkpoints
    would not compute what they did, so retrofit says so."""
    config = GPTNeoXConfig(vocab_size=20, hidden_size=8, num_attention_heads=2, num_hidden_layers=1,
                           intermediate_size=16, **odd)
    (key, value), = odd.items()
    with pytest.raises(CheckpointError, match=f"this GPT-NeoX has {{'{key}': {value!r}}}"):
        retrofit(GPTNeoXForCausalLM(config))


def test_the_retrofitted_model_is_in_the_mode_of_the_given_one(checkpoint):
    _, neox = checkpoint
    try:
        assert retrofit(neox.train(), memory=dict(segment_len=8)).training
        assert not retrofit(neox.eval(), memory=dict(segment_len=8)).training
    finally:
        neox.eval()


def test_a_module_that_is_not_gpt_neox_is_one_clear_error():
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=20, n_positions=16))
    with pytest.raises(CheckpointError, match=r"got a GPT2LMHeadModel; it takes a GPT-NeoX model"):
        retrofit(gpt2)
    with pytest.raises(CheckpointError, match=r"got a Linear"):
        retrofit(torch.nn.Linear(2, 2))


@pytest.mark.slow
def test_the_recipe_pretrains_retrofits_continues_and_saves(tmp_path):
    """recipes.retrofit's tiny preset, shrunk, on local text: the checkpoint it trains is saved, retrofitted and
    trained on; the saved model reloads with the figures the recipe printed; a given checkpoint is used as is."""
    from memkit import load_model
    from memkit.training.figures import perplexity_figures
    from recipes import retrofit as recipe

    text = tmp_path / "text.txt"
    text.write_text("\n\n".join(f"{i}: the lord is my shepherd I shall not want, he maketh me to lie down"
                                for i in range(200)))
    spec = recipe.tiny()
    small = dict(source=str(text), num_train=48, num_val=8, max_chars=20_000,
                 tokenizer=dict(kind="bpe", vocab_size=300, cache_dir=str(tmp_path)))
    spec = spec.with_overrides(data={**spec.data.model_dump(), **small},
                               pretrain={**spec.pretrain.model_dump(), "max_epochs": 1, "batch_size": 16},
                               train={**spec.train.model_dump(), "max_epochs": 1, "batch_size": 16})
    out = recipe.run(spec, save_dir=str(tmp_path / "out"))
    assert out["base_val_ppl"] < 300 and out["start_val_ppl"] < 300 and 0 < out["gate_mean"] < 0.5
    saved = tmp_path / "out" / "retrofit"
    assert (saved / "tokenizer.json").is_file() and (tmp_path / "out" / "base" / "tokenizer.json").is_file()
    model = load_model(saved)
    data = spec.data.with_overrides(tokenizer=dict(kind="file", path=str(saved / "tokenizer.json"))).build()
    assert perplexity_figures(model, data.val, 16)["val_ppl"] == out["val_ppl"]
    again = recipe.run(spec.with_overrides(base=str(tmp_path / "out" / "base")))
    assert again["base_val_ppl"] == out["base_val_ppl"]  # the checkpoint and its tokenizer, as saved
