"""Text data: corpora read through ``datasets`` and packed into samples (``corpus``), tokenizers
(``tokenizer``), and the built-in four-domain corpus from Debian packages (``debian_texts``)."""

from memkit.data.corpus import DataError, TextData, TextDataSpec
from memkit.data.tokenizer import ByteTokenizer, TokenizerSpec, save_tokenizer, tokenizer_beside

__all__ = ["ByteTokenizer", "DataError", "TextData", "TextDataSpec", "TokenizerSpec", "save_tokenizer", "tokenizer_beside"]
