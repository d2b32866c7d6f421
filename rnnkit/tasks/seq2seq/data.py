"""Sentence pairs for sequence-to-sequence models: readers, filters, tokenizers, generators.

A pairs file holds one ``source<TAB>target`` pair per line (UTF-8).  Columns after the second
are ignored (the Anki/Tatoeba files add an attribution column); blank lines are skipped.  A
line without a tab or with an empty side is an error naming the file and line::

    >>> sentence_pairs(["535+61\\t596", "", "1+1\\t2\\textra"], "mem")
    [('535+61', '596'), ('1+1', '2')]

The Tatoeba English--French file is read straight from its zip archive, normalised and
filtered as in the PyTorch "seq2seq translation" tutorial (:func:`read_tatoeba`)::

    >>> normalize_string("Je suis très fatigué!")
    'je suis tres fatigue !'

:func:`addition_pairs` generates the Keras ``addition_rnn`` task: ``"535+61" -> "596"``.
:class:`SentenceTokenizer` turns one side into ids (char or word level; every level has
``<pad>`` 0, ``<unk>`` 1, ``<bos>`` 2, ``<eos>`` 3, since a decoder must be able to stop).
"""

from __future__ import annotations

import io
import re
import unicodedata
import zipfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ...errors import DataError
from ...text.io import excerpt
from ...text.vocab import BOS, EOS, PAD, UNK, Vocab

Pair = tuple[str, str]

# The PyTorch tutorial's English prefixes (after normalisation "i'm" becomes "i m").
ENG_PREFIXES = ("i am ", "i m ", "he is", "he s ", "she is", "she s ", "you are", "you re ",
                "we are", "we re ", "they are", "they re ")


# -- reading -----------------------------------------------------------------------------------
def sentence_pairs(lines: Iterable[str], name: str = "<pairs>", start: int = 1) -> list[Pair]:
    """Parse ``source<TAB>target`` lines; ``name`` and ``start`` locate errors."""
    pairs = []
    for n, line in enumerate(lines, start):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        if "\t" not in line:
            raise DataError(f"{name}:{n}: expected 'source<TAB>target', found no tab in "
                            f"{excerpt(line)}")
        src, tgt = line.split("\t")[:2]
        for side, text in (("source", src), ("target", tgt)):
            if not text.strip():
                raise DataError(f"{name}:{n}: empty {side} side in {excerpt(line)}")
        pairs.append((src.strip(), tgt.strip()))
    return pairs


def read_pairs(path: str | Path, encoding: str = "utf-8") -> list[Pair]:
    """The pairs of a tab-separated file, or of the one pairs text inside a ``.zip`` archive
    (its largest ``.txt`` member whose name does not start with ``_``)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory; expected a tab-separated pairs file")
    if path.suffix.lower() == ".zip":
        return _read_zip(path, None, encoding)
    try:
        text = path.read_bytes().decode(encoding)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid {encoding} text (byte {e.start})") from None
    pairs = sentence_pairs(io.StringIO(text, newline=None), str(path))
    if not pairs:
        raise DataError(f"{path}: holds no sentence pairs")
    return pairs


def _read_zip(path: Path, member: str | None, encoding: str) -> list[Pair]:
    try:
        with zipfile.ZipFile(path) as z:
            if member is None:
                txt = [i for i in z.infolist() if i.filename.endswith(".txt")
                       and not Path(i.filename).name.startswith("_")]
                if not txt:
                    raise DataError(f"{path}: the archive holds no pairs .txt file")
                member = max(txt, key=lambda i: i.file_size).filename
            data = z.read(member)
    except zipfile.BadZipFile:
        raise DataError(f"{path}: not a valid zip archive") from None
    except KeyError:
        raise DataError(f"{path}: the archive has no member {member!r}") from None
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}:{member}: not valid {encoding} text (byte {e.start})") from None
    pairs = sentence_pairs(io.StringIO(text, newline=None), f"{path}:{member}")
    if not pairs:
        raise DataError(f"{path}:{member}: holds no sentence pairs")
    return pairs


def write_pairs(path: str | Path, pairs: Iterable[Pair]) -> Path:
    """Write ``source<TAB>target`` lines (UTF-8)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(f"{s}\t{t}\n" for s, t in pairs)
    return path


# -- the PyTorch tutorial's normalisation and filter ---------------------------------------------
def unicode_to_ascii(s: str) -> str:
    """Drop combining marks after NFD decomposition: ``"très" -> "tres"``."""
    return "".join(c for c in unicodedata.normalize("NFD", s)
                   if unicodedata.category(c) != "Mn")


def normalize_string(s: str) -> str:
    """Lower case, ASCII, a space before ``. ! ?``, every other non-letter run -> one space."""
    s = unicode_to_ascii(s.lower().strip())
    s = re.sub(r"([.!?])", r" \1", s)
    s = re.sub(r"[^a-zA-Z.!?]+", r" ", s)
    return s.strip()


def filter_pairs(pairs: Sequence[Pair], *, max_src_len: int | None = None,
                 max_tgt_len: int | None = None, src_prefixes: Sequence[str] = (),
                 tokenize=str.split) -> list[Pair]:
    """Keep pairs whose sides have at most ``max_*_len`` tokens (``tokenize``: words by default)
    and, if ``src_prefixes`` is given, whose source starts with one of them."""
    prefixes = tuple(src_prefixes)
    out = []
    for s, t in pairs:
        if max_src_len is not None and len(tokenize(s)) > max_src_len:
            continue
        if max_tgt_len is not None and len(tokenize(t)) > max_tgt_len:
            continue
        if prefixes and not s.startswith(prefixes):
            continue
        out.append((s, t))
    return out


def read_tatoeba(path: str | Path, *, member: str | None = None, reverse: bool = False,
                 max_length: int = 10, prefixes: Sequence[str] = ENG_PREFIXES) -> list[Pair]:
    """English--other pairs from a manythings.org/Tatoeba zip (or text) file, prepared as the
    PyTorch tutorial does: both sides normalised, *fewer than* ``max_length`` words each (its
    ``MAX_LENGTH``, which counts the ``<eos>`` the decoder adds), English starting with one of
    ``prefixes``.  ``reverse=True`` makes the other language the source."""
    path = Path(path)
    if path.suffix.lower() == ".zip":
        if not path.exists():
            raise DataError(f"{path}: no such file")
        pairs = _read_zip(path, member, "utf-8")
    else:
        pairs = read_pairs(path)
    pairs = [(normalize_string(e), normalize_string(f)) for e, f in pairs]
    pairs = [(e, f) for e, f in pairs if e and f]
    kept = filter_pairs(pairs, max_src_len=max_length - 1, max_tgt_len=max_length - 1,
                        src_prefixes=prefixes)
    return [(f, e) for e, f in kept] if reverse else kept


def split_pairs(pairs: Sequence[Pair], fractions: Sequence[float], seed: int = 0
                ) -> list[list[Pair]]:
    """Shuffle (seeded) and cut into parts of the given fractions; the last part takes the
    rest of the rounding.  ``split_pairs(p, (0.8, 0.1, 0.1))`` -> train, valid, test."""
    if any(f < 0 for f in fractions) or sum(fractions) > 1 + 1e-9:
        raise DataError(f"split fractions must be >= 0 and sum to at most 1, got {fractions}")
    order = np.random.default_rng(seed).permutation(len(pairs))
    cuts = np.round(np.cumsum(fractions) * len(pairs)).astype(int)
    parts, lo = [], 0
    for hi in cuts:
        parts.append([pairs[i] for i in order[lo:hi]])
        lo = hi
    return parts


# -- addition as strings (Keras addition_rnn) --------------------------------------------------
def addition_pairs(n: int, digits: int = 3, rng=None, *, exclude: Iterable[Pair] = ()
                   ) -> list[Pair]:
    """``n`` distinct questions ``"a+b" -> "a+b evaluated"`` with operands of 1..``digits``
    digits (each length equally likely, as in Keras ``addition_rnn``).  ``a+b`` and ``b+a``
    count as the same question, as there; questions in ``exclude`` are never produced.

    >>> addition_pairs(2, rng=np.random.default_rng(0))
    [('652+0', '652'), ('0+8', '8')]
    """
    rng = np.random.default_rng(rng)
    seen = {_addition_key(q) for q, _ in exclude}
    limit = sum(9 * 10 ** (k - 1) for k in range(1, digits + 1)) + 1  # operands 0..10^d - 1
    if n > limit * (limit + 1) // 2 - len(seen):
        raise DataError(f"addition_pairs: only {limit * (limit + 1) // 2} distinct questions "
                        f"with {digits} digits; asked for {n}")
    out = []
    while len(out) < n:
        a, b = (int("".join(str(d) for d in rng.integers(0, 10, rng.integers(1, digits + 1))))
                for _ in range(2))
        key = (min(a, b), max(a, b))
        if key in seen:
            continue
        seen.add(key)
        out.append((f"{a}+{b}", str(a + b)))
    return out


def _addition_key(q: str) -> tuple[int, int]:
    a, b = (int(x) for x in q.split("+"))
    return (min(a, b), max(a, b))


# -- one side of a pair as ids -------------------------------------------------------------------
class SentenceTokenizer:
    """Characters or whitespace-separated words of one sentence -> ``int64`` ids.

    Specials ``<pad>`` 0, ``<unk>`` 1, ``<bos>`` 2, ``<eos>`` 3 at both levels; ``encode`` adds
    neither ``<bos>`` nor ``<eos>``; ``decode`` stops at the first ``<eos>`` and drops
    ``<pad>``/``<bos>``.

    >>> tok = SentenceTokenizer("word").fit(["il est grand .", "il est petit ."])
    >>> tok.encode("il est grand !", warn=False).tolist(), tok.decode([6, 5, 7, 3, 4])
    ([6, 5, 7, 1], 'il est grand')
    """

    specials = (PAD, UNK, BOS, EOS)

    def __init__(self, level: str, vocab: Vocab | None = None):
        if level not in ("char", "word"):
            raise DataError(f"tokenizer level must be 'char' or 'word', got {level!r}")
        self.level = level
        self._vocab = vocab

    @property
    def vocab(self) -> Vocab:
        if self._vocab is None:
            raise DataError("SentenceTokenizer: not fitted yet; call fit(sentences) first")
        return self._vocab

    def tokenize(self, sentence: str) -> list[str]:
        return list(sentence) if self.level == "char" else sentence.split()

    def fit(self, sentences: Iterable[str], min_count: int = 1, max_size: int | None = None):
        counts: Counter = Counter()
        for s in sentences:
            counts.update(self.tokenize(s))
        self._vocab = Vocab.build(counts, min_count, max_size, self.specials)
        return self

    def encode(self, sentence: str, warn: bool = True) -> np.ndarray:
        """Ids ``(N,)``; unknown tokens become ``<unk>`` with an UnknownTokenWarning."""
        return self.vocab.encode(self.tokenize(sentence), warn=warn, stacklevel=3)

    def decode(self, ids) -> str:
        tokens = []
        for t in self.vocab.decode(np.asarray(ids, dtype=np.int64)):
            if t == EOS:
                break
            if t not in (PAD, BOS):
                tokens.append(t)
        return self.join(tokens)

    def join(self, tokens: Sequence[str]) -> str:
        return "".join(tokens) if self.level == "char" else " ".join(tokens)

    def to_dict(self) -> dict:
        return {"level": self.level, "vocab": self.vocab.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping) -> SentenceTokenizer:
        if not isinstance(d, Mapping) or set(d) != {"level", "vocab"}:
            raise DataError("SentenceTokenizer.from_dict: expected a dict with keys level, vocab")
        vocab = Vocab.from_dict(d["vocab"])
        if vocab.specials != cls.specials:
            raise DataError(f"SentenceTokenizer.from_dict: expected specials "
                            f"{list(cls.specials)}, got {list(vocab.specials)}")
        return cls(d["level"], vocab)

    def __repr__(self) -> str:
        size = "unfitted" if self._vocab is None else f"{len(self._vocab)} tokens"
        return f"SentenceTokenizer({self.level!r}, {size})"
