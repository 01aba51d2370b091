"""A trained model on disk: ``save_model`` writes the weights it is given (the best epoch's), ``load`` reads them back."""

import torch
from torch import nn

import memkit
from memkit import MemoryLMSpec, Spec
from memkit.models.checkpoint import load, save_model


class TinySpec(Spec):
    """A spec whose block is no transformers model: saved as model.pt and spec.json."""

    width: int = 4

    def build(self):
        return Tiny(self)


class Tiny(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.spec = spec
        self.embed = nn.Embedding(10, spec.width)
        self.head = nn.Linear(spec.width, 10)

    def forward(self, ids):
        return self.head(self.embed(ids))


def perturbed(model):
    """The model's weights moved on (the epochs after the best one); returns the weights before."""
    best = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    return best


def test_a_transformers_model_saves_the_given_weights_and_loads_them_back(tmp_path):
    torch.manual_seed(0)
    spec = MemoryLMSpec.create(vocab_size=40, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
                               max_position_embeddings=64, memory=dict(segment_len=4, num_memories=2))
    model = spec.build().eval()
    best = perturbed(model)
    x = torch.randint(0, 40, (2, 10))
    reference = spec.build().eval()
    reference.load_state_dict(best)
    loaded = memkit.load(save_model(model, tmp_path / "best", best))
    assert not loaded.training and loaded.spec == spec
    torch.testing.assert_close(loaded(x)[0], reference(x)[0], rtol=0, atol=0)
    assert not torch.allclose(loaded(x)[0], model(x)[0])  # not the weights the model holds now
    latest = load(save_model(model, tmp_path / "latest"))
    torch.testing.assert_close(latest(x)[0], model(x)[0], rtol=0, atol=0)


def test_a_model_with_a_spec_saves_the_given_weights_and_is_built_again(tmp_path):
    torch.manual_seed(0)
    model = TinySpec.create(width=6).build()
    best = perturbed(model)
    saved = save_model(model, tmp_path / "best", best)
    assert sorted(p.name for p in saved.iterdir()) == ["model.pt", "spec.json"]
    loaded = load(saved)
    assert isinstance(loaded, Tiny) and loaded.spec == TinySpec(width=6) and not loaded.training
    x = torch.arange(10)[None]
    reference = TinySpec(width=6).build()
    reference.load_state_dict(best)
    torch.testing.assert_close(loaded(x), reference(x), rtol=0, atol=0)
    assert not torch.allclose(loaded(x), model(x))
    latest = load(save_model(model, tmp_path / "latest"))
    torch.testing.assert_close(latest(x), model(x), rtol=0, atol=0)
