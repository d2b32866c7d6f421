"""Text pipeline: reading files and data sets, vocabularies, tokenizers, and LM batching.

Typical use for a language model::

    texts = load_corpus("ptb")                       # {"train": str, "valid": str, "test": str}
    tok = make_tokenizer(DATASETS["ptb"].level).fit(texts["train"])
    streams = batchify(tok.encode(texts["train"]), B=20, T=35)     # (20, 46479)
    for i, x, y in iter_windows(streams, T=35):      # x, y: (20, 35)
        ...

Needs NumPy only; ``tqdm`` is imported when a download starts.
"""

from .batching import batchify, get_window, iter_windows, num_windows
from .datasets import (
    DATASETS,
    DataFile,
    DatasetInfo,
    data_dir,
    dataset_info,
    download_file,
    load_corpus,
    resolve,
)
from .io import STDLIB_MODULES, default_corpus, read_text, split_fraction
from .tokenizers import (
    TOKENIZERS,
    CharTokenizer,
    WordTokenizer,
    make_tokenizer,
    tokenizer_from_dict,
)
from .vocab import BOS, EOS, PAD, UNK, UnknownTokenWarning, Vocab

__all__ = [
    "BOS",
    "DATASETS",
    "EOS",
    "PAD",
    "STDLIB_MODULES",
    "TOKENIZERS",
    "UNK",
    "CharTokenizer",
    "DataFile",
    "DatasetInfo",
    "UnknownTokenWarning",
    "Vocab",
    "WordTokenizer",
    "batchify",
    "data_dir",
    "dataset_info",
    "default_corpus",
    "download_file",
    "get_window",
    "iter_windows",
    "load_corpus",
    "make_tokenizer",
    "num_windows",
    "read_text",
    "resolve",
    "split_fraction",
    "tokenizer_from_dict",
]
