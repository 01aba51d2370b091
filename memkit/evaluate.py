"""``python -m memkit.evaluate DIR --task ...`` (the code: ``memkit.cli.evaluate``). Run it with ``python -m``; do
not import it: as ``memkit.evaluate`` this module would shadow the trainer's ``evaluate`` function."""

if __name__ == "__main__":
    from memkit.cli.evaluate import entry

    entry()
