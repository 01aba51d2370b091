"""A trained model on disk: ``save_model`` writes the weights it is given (the best epoch's), ``load`` reads them back."""

import pytest
import torch
from torch import nn

import memkit
from memkit import MemoryLMSpec, Spec
from memkit.errors import CheckpointError
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


def shared_once_model(task):
    torch.manual_seed(0)
    return MemoryLMSpec.create(vocab_size=task.vocab_size, hidden_size=16, num_layers=1, num_heads=2,
                               intermediate_size=32, memory=dict(segment_len=4, num_memories=2,
                                                                 memory_scope="batch_shared",
                                                                 shared_reset="once")).build()


def test_a_model_with_a_batch_shared_memory_validates_from_its_checkpoint_as_its_best_epoch_did(tmp_path):
    """A "once" memory is what validation reads: the best epoch's memory (as its validation found it) travels
    with its weights, through the trainer's end, the epoch hook's save and save_model/load."""
    from memkit.eval.tasks.recall import RecallTask
    from memkit.models.loading import load_model
    from memkit.training.trainer import EpochHook, TrainSpec, evaluate, train

    task = RecallTask(segment_len=4, write_segments=3, query_segments=1, num_groups=3, keys_per_group=4,
                      num_values=6, num_train=64, num_val=16)
    tr, va = task.splits(0)

    class KeepBest(EpochHook):  # as the grid's hook saves a trial's model after every epoch
        def save_state(self, state, model):
            save_model(model, tmp_path / "during", state.best_state, shared_memory=state.best_shared)

    model = shared_once_model(task)
    result = train(model, tr, va, TrainSpec(lr=3e-3, batch_size=16, max_epochs=3, patience=3, warmup_steps=0),
                   on_epoch=KeepBest(), progress=False)
    best = result.best["val_loss"]
    saved = save_model(model, tmp_path / "after")
    assert (saved / "shared_memory.pt").is_file()
    for folder in ("during", "after"):
        assert evaluate(load_model(tmp_path / folder), va, 16)["loss"] == pytest.approx(best, rel=1e-6)
    assert evaluate(model, va, 16)["loss"] == pytest.approx(best, rel=1e-6)  # the trainer restored it too


def test_a_batch_shared_memory_file_broken_is_a_checkpoint_error_naming_it_and_a_missing_one_a_warning(tmp_path):
    from memkit.eval.tasks.recall import RecallTask
    from memkit.models.loading import load_model
    from memkit.training.resume import shared_memories

    task = RecallTask(segment_len=4, write_segments=3, query_segments=1, num_groups=3, keys_per_group=4,
                      num_values=6, num_train=16, num_val=16)
    model = shared_once_model(task)
    model(task.splits(0)[0][0][:4])  # the memory holds a state
    folder = save_model(model, tmp_path / "m")
    file = folder / "shared_memory.pt"
    file.write_bytes(file.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="shared_memory.pt.*truncated"):
        load_model(folder)
    file.unlink()  # saved without it (save_pretrained alone, an older memkit): it loads, its memory empty, and says so
    with pytest.warns(UserWarning, match="shared_memory.pt.*missing.*starts empty"):
        loaded = load_model(folder)
    assert all(m.state is None for m in shared_memories(loaded).values())
    plain = MemoryLMSpec.create(vocab_size=40, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                                memory=dict(segment_len=4, memory_scope="batch_shared")).build()  # each_epoch
    assert not (save_model(plain, tmp_path / "plain") / "shared_memory.pt").exists()
