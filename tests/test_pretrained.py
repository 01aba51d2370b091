"""memkit models as transformers models: config from the spec, save/load bit for bit, the Auto classes."""

import json

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

import memkit
from memkit import ContextKVLMSpec, MemkitConfig, MemoryBuilder, MemoryLMSpec, SpecError
from memkit.training.trainer import TrainSpec, param_groups

SMALL = dict(vocab_size=40, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32, max_position_embeddings=64)


@pytest.mark.parametrize("spec", [
    MemoryLMSpec.create(**SMALL, memory=dict(segment_len=4, num_memories=3, landmark="hsa", hierarchy="soft")),
    MemoryLMSpec.create(**SMALL, local_window="segment", memory_layer=1,
                        memory=dict(segment_len=4, num_memories=2, landmark="hsa_last_keys", hsa_keys=5)),
    MemoryLMSpec.create(**SMALL, memory_layer=None),
    ContextKVLMSpec.create(**{k: v for k, v in SMALL.items() if k != "max_position_embeddings"}, window=4,
                           embeddings="frozen", context=dict(context_dim=6, interval=2, max_contexts=3)),
    ContextKVLMSpec.create(**{k: v for k, v in SMALL.items() if k != "max_position_embeddings"}, body="kv_only",
                           context=dict(context_dim=6, interval=2, max_contexts=3)),
], ids=["multi-hsa-hier", "segment-last-keys", "plain", "context-neox", "context-kv-only"])
def test_save_and_load_through_the_auto_classes_bit_for_bit(spec, tmp_path):
    torch.manual_seed(0)
    model = spec.build().eval()
    x = torch.randint(0, 40, (2, 13))
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    again = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(again) is type(model) and again.spec == spec  # the config gives the spec back
    before, after = model.state_dict(), again.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(again(x)[0], model(x)[0])
    # what parameters carry beside their values survives: the trainer's gate tag, frozen embeddings
    assert [p.requires_grad for p in again.parameters()] == [p.requires_grad for p in model.parameters()]
    gates = [id(p) for g in param_groups(again, TrainSpec()) if g["lr"] == TrainSpec().gate_lr for p in g["params"]]
    assert len(gates) == (1 if getattr(again, "memory", None) is not None else 0)


def test_building_keeps_memkits_init_of_the_memory_layer():
    """transformers' weight init (GPT-NeoX's normal(0.02), zero biases) leaves the memory layer's PyTorch init alone."""
    model = MemoryLMSpec.create(**SMALL, memory=dict(segment_len=4)).build()
    qkv = model.memory.qkv
    assert abs(float(qkv.weight.detach().std()) - (3 * 16) ** -0.5) < 0.02 and qkv.bias.abs().sum() > 0
    assert abs(float(model.hf.gpt_neox.layers[1].attention.query_key_value.weight.detach().std()) - 0.02) < 0.005


def test_config_is_made_from_the_spec_and_validated_by_it(tmp_path):
    spec = MemoryLMSpec.create(**SMALL, memory=dict(segment_len=4, num_memories=2))
    config = MemkitConfig.from_spec(spec)
    assert config.model_type == "memkit" and config.to_spec() == spec
    assert (config.num_hidden_layers, config.num_attention_heads, config.hidden_size) == (2, 2, 16)  # transformers' names
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["memory"]["num_memories"] == 2 and saved["local_window"] == "full"
    assert AutoConfig.from_pretrained(tmp_path).to_spec() == spec
    with pytest.raises(SpecError, match="memory_layer"):
        MemkitConfig(**{**SMALL, "memory_layer": 5})


def test_output_unpacks_as_logits_and_state_and_gives_transformers_loss():
    torch.manual_seed(0)
    model = MemoryLMSpec.create(**SMALL, memory=dict(segment_len=4)).build().eval()
    x = torch.randint(0, 40, (2, 9))
    out = model(x, labels=x)
    logits, state = out
    assert out.logits is logits and out[0] is logits and out[1] is state and out["logits"] is logits
    expected = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 40), x[:, 1:].reshape(-1))
    torch.testing.assert_close(out.loss, expected)
    assert model(x).loss is None


def test_prebuilt_memories_ship_beside_the_model(tmp_path):
    """The memory state saves and loads on its own: a model and its pre-built memories."""
    torch.manual_seed(0)
    model = MemoryLMSpec.create(**{**SMALL, "vocab_size": 256}, memory=dict(segment_len=4, num_memories=2)).build()
    state = MemoryBuilder(model).build(["the sky is blue", "def f(x): return x"])
    model.save_pretrained(tmp_path)
    MemoryBuilder.save(state, tmp_path / "memories.pt")
    again = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, 256, (1, 8))
    with_memories = again(ids, MemoryBuilder.load(tmp_path / "memories.pt"))[0]
    torch.testing.assert_close(with_memories, model.eval()(ids, state)[0], rtol=0, atol=0)
    assert not torch.allclose(with_memories, again(ids)[0])  # the memories are read


def test_import_memkit_registers_the_model_types():
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    assert CONFIG_MAPPING["memkit"] is memkit.MemkitConfig
    assert CONFIG_MAPPING["memkit_context_kv"] is memkit.ContextKVConfig


def test_a_config_from_some_fields_holds_the_specs_defaults_for_the_others():
    """Fields not given take the spec's defaults, in the config and in ``to_spec()``."""
    config = MemkitConfig(vocab_size=40, hidden_size=16)
    spec = MemoryLMSpec.create(vocab_size=40, hidden_size=16)
    assert config.to_spec() == spec and spec.num_layers == 6 and config.num_layers == 6
    assert config.memory == spec.model_dump()["memory"] and config.documents == "separate"  # its shape: the model's
    context = memkit.ContextKVConfig(vocab_size=40)
    assert context.to_spec() == ContextKVLMSpec.create(vocab_size=40)


@pytest.mark.parametrize("spec", [MemoryLMSpec.create(**SMALL, memory=dict(segment_len=4)),
                                  ContextKVLMSpec.create(**{k: v for k, v in SMALL.items()
                                                            if k != "max_position_embeddings"},
                                                         context=dict(context_dim=6, interval=2, max_contexts=3))],
                         ids=["memory", "context"])
def test_a_padded_attention_mask_is_a_clear_error_and_all_ones_is_accepted(spec):
    torch.manual_seed(0)
    model = spec.build().eval()
    x = torch.randint(0, 40, (2, 6))
    mask = torch.ones_like(x)
    torch.testing.assert_close(model(x, attention_mask=mask)[0], model(x)[0], rtol=0, atol=0)
    assert model.generate(x, max_new_tokens=2, attention_mask=mask).shape == (2, 8)
    mask[1, :2] = 0  # left padding
    with pytest.raises(ValueError, match="attention_mask: memkit models take unpadded inputs"):
        model(x, attention_mask=mask)
    with pytest.raises(ValueError, match="attention_mask: memkit models take unpadded inputs"):
        model.generate(x, max_new_tokens=2, attention_mask=mask)
