"""``python -m memkit.generate DIR --prompt "..."`` (the code: ``memkit.cli.generate``)."""

if __name__ == "__main__":
    from memkit.cli.generate import entry

    entry()
