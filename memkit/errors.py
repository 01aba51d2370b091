"""The errors a user's mistake raises, in one module every part of memkit can import (specs, data, the models,
the tokenizer beside a checkpoint, the command lines), so that none reaches into another for an error type.

Each message is one line naming the field (or file) and what is allowed; the command lines print it and exit 2.
"""


class SpecError(ValueError):
    """A spec value a user gave is not allowed. The message names the field."""


class DataError(ValueError):
    """A data source that cannot be read; the message names the field and what is allowed."""


class CorpusMissing(DataError):
    """``source='debian'`` on a machine without the Debian text packages. The message gives the install line; each
    command adds how it takes other text (``--space source=...``, ``--source ...``), since only it knows its flags."""


class CheckpointError(ValueError):
    """A saved model or checkpoint that memkit cannot use; the message says what is wrong and what is allowed."""


class InputTooLong(ValueError):
    """An input reaching past the positions the model was built for (full-window mode)."""
