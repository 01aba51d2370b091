"""The gates' path per grid: epochs keep their gate figures, gates.png draws them, one colour per design."""

from ablations.gates import design_of, epoch_figures, plot_gates


def test_an_epoch_keeps_its_gates_beside_the_fixed_figures():
    row = epoch_figures({"epoch": 3, "val_ppl": 40.0, "gate_mean": 0.6, "gate_h0": 0.7, "train_loss": 3.1,
                         "recall_acc": 0.5})
    assert row["gate_mean"] == 0.6 and row["gate_h0"] == 0.7 and row["epoch"] == 3
    assert "train_loss" not in row and "recall_acc" not in row
    assert "gate_mean" not in epoch_figures({"epoch": 1, "val_ppl": 40.0})


def test_gates_png_is_drawn_only_where_a_trial_has_gates(tmp_path):
    history = [{"epoch": e, "gate_mean": 0.5 + 0.01 * e} for e in (1, 2, 3)]
    trials = [{"trial": f"memories=4,seed={s}", "history": history} for s in (0, 1)]
    trials.append({"trial": "memories=0,seed=0", "history": [{"epoch": 1, "val_ppl": 9.0}]})
    assert design_of(trials[1], "seed") == "memories=4" and design_of({"trial": "seed=0"}, "seed") == "the only point"
    assert design_of({"trial": "design=multi, +documents run together, seed=1"}, "seed") == (
        "design=multi,+documents run together")  # a ladder's rung
    path = plot_gates(tmp_path, trials)
    assert path == tmp_path / "gates.png" and path.stat().st_size > 1000
    assert plot_gates(tmp_path / "none", trials[2:]) is None and not (tmp_path / "none" / "gates.png").exists()
