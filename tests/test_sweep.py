"""The per-design learning-rate sweep: parsing, and a choice that never reads the test split."""

import pytest

from ablations.space import SpaceError
from ablations.sweep import choose_rates, parse_rates


def test_rates_as_a_list_or_a_range():
    assert parse_rates("1e-3,3e-3,1e-2") == [1e-3, 3e-3, 1e-2]
    assert parse_rates("1e-4:1e-2:log3") == [1e-4, 1e-3, 1e-2]


@pytest.mark.parametrize("text, words", [("fast", ["--lr-sweep", "not a number"]), ("1e-3", ["at least 2"]),
                                         ("1e-3,,1e-2", ["empty value"]), ("0,1e-3", ["(0, 10]"]),
                                         ("1e-3,1e-3", ["repeated"]), ("1e-3:1e-2", ["logN"])])
def test_malformed_rates_name_the_flag_and_what_is_allowed(text, words):
    with pytest.raises(SpaceError) as err:
        parse_rates(text)
    assert all(w in str(err.value) for w in words), str(err.value)


class Sealed(dict):
    """A finished trial whose test figures cannot be read: any read of a figure that is not a
    validation figure (val_*) fails the test. Its point and status are bookkeeping, readable."""

    def _check(self, key):
        if not (key.startswith("val_") or key in ("point", "status")):
            raise AssertionError(f"the learning-rate choice read {key!r}")

    def __getitem__(self, key):
        self._check(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self._check(key)
        return super().get(key, default)


def test_the_choice_reads_validation_figures_only_and_follows_them():
    # test figures favour the other rate at every design: a choice that peeked would pick it
    trials = [Sealed(point={"m": m, "lr": lr}, status="ok", val_acc=val, recall_acc=test, test_ppl=1.0)
              for m, lr, val, test in [(1, 1e-3, 0.9, 0.1), (1, 1e-2, 0.5, 0.99),
                                       (4, 1e-3, 0.2, 0.99), (4, 1e-2, 0.8, 0.1)]]
    trials.append(Sealed(point={"m": 8, "lr": 1e-3}, status="failed", val_acc=1.0))  # failed: not chosen
    chosen = choose_rates(trials, lambda t: t["point"]["m"], lambda t: t["point"]["lr"], "val_acc", max)
    assert chosen == {1: 1e-3, 4: 1e-2}
    with pytest.raises(ValueError, match="validation"):
        choose_rates(trials, lambda t: t["point"]["m"], lambda t: t["point"]["lr"], "recall_acc", max)


def test_lower_is_better_and_ties_go_to_the_smaller_rate():
    trials = [{"point": {"lr": lr}, "status": "ok", "val_ppl": ppl} for lr, ppl in [(1e-2, 3.0), (1e-3, 3.0), (3e-3, 4.0)]]
    assert choose_rates(trials, lambda t: "d", lambda t: t["point"]["lr"], "val_ppl", min) == {"d": 1e-3}
