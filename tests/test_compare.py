"""ablations.compare: several finished grids in one table, each column's verdicts paired over seeds."""

import json

import pytest

from ablations.compare import main


def grid(folder, recipe, figure, values, capped=()):
    """A finished grid's folder as the grid writes it: results.json (rows and their trials) and grid.json;
    ``values``: {design: [value per seed]}."""
    folder.mkdir(parents=True)
    rows, trials = [], []
    for design, vs in values.items():
        mean = sum(vs) / len(vs)
        rows.append({"design": design, "seeds": len(vs), "failed": 0, "capped": int(design in capped),
                     f"{figure}_mean": mean, f"{figure}_lo": min(vs), f"{figure}_hi": max(vs),
                     "params_mean": 1000.0 + len(design), "sec_per_epoch_mean": 2.5, "memory_bytes_mean": 4352.0})
        trials += [{"status": "ok", "point": {"design": design, "train.seed": s}, figure: v} for s, v in enumerate(vs)]
    (folder / "results.json").write_text(json.dumps({"points": rows, "trials": trials}))
    (folder / "grid.json").write_text(json.dumps({"recipe": recipe}))
    return folder


def test_columns_verdicts_and_a_later_grid_replacing_a_design(tmp_path, capsys):
    a = grid(tmp_path / "a", "mqar", "recall_acc", {"single": [0.9, 0.8, 0.85], "deltanet": [0.1, 0.2, 0.15],
                                                    "gated": [0.0, 0.0, 0.0]})
    b = grid(tmp_path / "b", "mqar", "recall_acc", {"gated": [0.95, 0.9, 0.92]})  # rerun with a longer floor
    p = grid(tmp_path / "p", "passkey", "passkey_mean", {"single": [0.5, 0.6, 0.4], "deltanet": [0.5, 0.62, 0.41]},
             capped=("deltanet",))
    out = tmp_path / "cmp.md"
    assert main(["--grid", f"MQAR={a},{b}", "--grid", f"passkey={p}", "--reference", "deltanet",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert out.read_text().strip() == text.strip()
    lines = text.splitlines()
    assert lines[0] == ("| design | MQAR: recall_acc | passkey: passkey_mean | params | s/epoch | state bytes/seq |")
    assert lines[2].startswith("| deltanet | 0.15 [0.1, 0.2] | 0.51 [0.41, 0.62] (capped 1/3) | 1,008 |")
    assert "| gated | 0.9233 [0.9, 0.95] |  |" in text  # b's row replaced a's
    # MQAR: gated best; single paired 0.9233-0.85 = +0.073 (+0.05, +0.1, +0.07): every seed ahead
    assert "MQAR (recall_acc): gated is best (0.9233); ahead of single by +0.073 [+0.050, +0.100]; deltanet" in text
    # passkey: deltanet is capped so not ranked; single alone
    assert ("passkey (passkey_mean): single is best (0.5); the only design ranked; not ranked, capped while still "
            "improving: deltanet.") in text


def test_a_folder_without_a_grid_or_a_bad_flag_is_one_clear_error(tmp_path, capsys):
    a = grid(tmp_path / "a", "mqar", "recall_acc", {"single": [0.9, 0.8]})
    broken = grid(tmp_path / "b", "mqar", "recall_acc", {"single": [0.9]})
    (broken / "results.json").write_text('{"points": [')  # a grid killed while writing
    for argv, message in ((["--grid", f"x={tmp_path / 'none'}"], "holds no finished grid"),
                          (["--grid", "x"], "expected NAME=DIR"),
                          (["--grid", f"x={a}", "--key", "width"], "--key width: .* has no such column"),
                          (["--grid", f"x={a}", "--figure", "y=val_acc"], "no --grid is named y"),
                          (["--grid", f"x={broken}"], "is not a grid's JSON")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert pytest.importorskip("re").search(message, err), err
