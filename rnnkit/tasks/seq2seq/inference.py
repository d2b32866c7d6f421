"""Seq2seq checkpoints: loading, translation and evaluation (``rnnkit eval`` and
``rnnkit translate``).

>>> # model, src_tok, tgt_tok, ck = load_seq2seq("runs/fra")
>>> # translate_texts(model, src_tok, tgt_tok, ["i am cold ."], beam=5)[0].text
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass

import numpy as np

from ...errors import CheckpointError, DataError
from .data import SentenceTokenizer, normalize_string, read_pairs
from .model import Seq2Seq, Seq2SeqConfig
from .task import evaluate_pairs

DEFAULT_EVAL_BEAM = 5


def load_seq2seq(path):
    """``(model, src_tok, tgt_tok, checkpoint)`` from a seq2seq checkpoint or run directory."""
    from ...train.checkpoint import load_checkpoint

    ck = load_checkpoint(path, kind="seq2seq", weights_only=True)
    cfg, src_tok, tgt_tok = ck.read(lambda: (
        Seq2SeqConfig.from_dict(ck.config["model"]),
        SentenceTokenizer.from_dict(ck.vocab["source"]),
        SentenceTokenizer.from_dict(ck.vocab["target"])))
    if (len(src_tok.vocab), len(tgt_tok.vocab)) != (cfg.src_vocab_size, cfg.tgt_vocab_size):
        raise CheckpointError(f"{ck.path}: vocabularies ({len(src_tok.vocab)}, "
                              f"{len(tgt_tok.vocab)}) do not match the model "
                              f"({cfg.src_vocab_size}, {cfg.tgt_vocab_size})")
    return ck.restore(Seq2Seq, cfg), src_tok, tgt_tok, ck


def text_preparation(ck):
    """The text preparation the run trained with (normalisation) as a function."""
    if (ck.config.get("data") or {}).get("normalize"):
        return normalize_string
    return str.strip


def output_limit(ck, max_len):
    """The longest output to decode: ``max_len`` if given, else the run's own."""
    return int(max_len or ck.config.get("max_len", 50))


@dataclass
class Translation:
    """One output: ``text``; the source and output ``*_tokens``; attention ``weights``
    (n_out, n_src) (rows for the output tokens and ``<eos>`` when it came; None without
    attention); ``finished``: ``<eos>`` came before the length limit; ``logp``."""

    text: str
    src_tokens: list
    tgt_tokens: list
    weights: np.ndarray | None
    finished: bool
    logp: float | None = None


def translate_texts(model, src_tok, tgt_tok, texts, *, beam: int = 1, max_len: int = 50,
                    alpha: float = 1.0, temperature: float = 0.0, rng=None) -> list:
    """Translate prepared source sentences one by one; unknown source tokens become ``<unk>``
    (with an :class:`~rnnkit.text.vocab.UnknownTokenWarning`).  ``beam > 1``: beam search;
    else greedy, or sampling when ``temperature > 0``."""
    if not isinstance(beam, (int, np.integer)) or beam < 1:
        raise ValueError(f"beam width must be at least 1, got {beam!r}")
    if max_len < 1:
        raise ValueError(f"max_len must be at least 1, got {max_len}")
    rng = np.random.default_rng(rng)
    out = []
    for text in texts:
        tokens = src_tok.tokenize(text)
        if not tokens:
            raise DataError("cannot translate an empty sentence")
        ids = src_tok.encode(text)
        if beam > 1 or temperature == 0:
            h = model.beam_search(ids, beam=beam, max_len=max_len, alpha=alpha)[0]
            toks, weights, finished, logp = h.tokens, h.weights, h.finished, h.logp
        else:
            seqs, ws = model.generate(ids[None, :], max_len=max_len, temperature=temperature,
                                      rng=rng)
            toks, weights, finished, logp = seqs[0], ws[0], len(seqs[0]) < max_len, None
        out.append(Translation(tgt_tok.decode(toks), tokens,
                               tgt_tok.vocab.decode(np.asarray(toks, np.int64)), weights,
                               finished, logp))
    return out


class Seq2SeqService:
    """A seq2seq checkpoint behind ``rnnkit serve``: ``translate(text, beam)`` gives the
    translation, its tokens and the attention weights (n_out, n_src) (None without
    attention), with the text prepared as in training.  Safe to share between threads."""

    endpoints = ("translate",)

    def __init__(self, path):
        self.model, self.src_tok, self.tgt_tok, self.checkpoint = load_seq2seq(path)
        self.prepare = text_preparation(self.checkpoint)
        self.max_len = output_limit(self.checkpoint, None)
        self.alpha = float(self.checkpoint.config.get("alpha", 1.0))
        self._lock = threading.Lock()

    def info(self) -> dict:
        return {"vocab_size": {"source": len(self.src_tok.vocab),
                               "target": len(self.tgt_tok.vocab)},
                "attention": self.model.attention is not None, "max_len": self.max_len}

    def translate(self, text: str, beam: int = 5) -> dict:
        prepared = self.prepare(text)
        if not prepared:
            raise ValueError("the text to translate is empty" + (
                " after normalisation" if self.prepare is not str.strip else ""))
        with warnings.catch_warnings(record=True) as caught, self._lock:
            warnings.simplefilter("always")
            r = translate_texts(self.model, self.src_tok, self.tgt_tok, [prepared], beam=beam,
                                max_len=self.max_len, alpha=self.alpha)[0]
        rows = r.tgt_tokens + (["<eos>"] if r.finished else [])
        weights = None if r.weights is None else np.round(r.weights, 6).tolist()
        return {"translation": r.text, "source_tokens": r.src_tokens, "output_tokens": rows,
                "attention": weights, "finished": bool(r.finished),
                "warnings": [str(w.message) for w in caught]}


def evaluate_file(path, file, *, beam: int = DEFAULT_EVAL_BEAM, max_len=None,
                  alpha: float | None = None, encoding: str = "utf-8") -> dict:
    """Teacher-forced loss, and exact match, token accuracy and corpus BLEU of greedy and
    (``beam > 1``) beam-search outputs on a pairs file, prepared as in training."""
    model, src_tok, tgt_tok, ck = load_seq2seq(path)
    prepare = text_preparation(ck)
    pairs = [(prepare(a), prepare(b)) for a, b in read_pairs(file, encoding)]
    bad = next((i for i, (a, b) in enumerate(pairs) if not a or not b), None)
    if bad is not None:
        raise DataError(f"{file}: pair {bad + 1} is empty after normalisation")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unknown words simply count against the model
        enc = [(src_tok.encode(a), tgt_tok.encode(b)) for a, b in pairs]
    refs = [b for _, b in pairs]
    max_len = output_limit(ck, max_len)
    alpha = ck.config.get("alpha", 1.0) if alpha is None else alpha
    figures: dict = {"pairs": len(pairs)}
    for k in sorted({1, beam}):
        r = evaluate_pairs(model, tgt_tok, enc, refs, beam=k, max_len=max_len, alpha=alpha,
                           loss=k == 1)
        tag = "" if k == 1 else f" (beam {k})"
        if k == 1:
            figures["loss"] = r["loss"]
        figures[f"exact match{tag}"] = r["exact"]
        figures[f"token accuracy{tag}"] = r["token_acc"]
        if "bleu" in r:
            figures[f"bleu{tag}"] = r["bleu"]
        figures[f"unfinished{tag}"] = r["unfinished"]
    return figures


def evaluate_checkpoint(path, args) -> dict:
    """The ``rnnkit eval`` entry point for checkpoints of kind "seq2seq": greedy figures as
    ``exact match``, ``token accuracy``, ``bleu``, then the same for a beam of ``--beam``
    (default 5) where the command offers that option."""
    beam = getattr(args, "beam", None) or DEFAULT_EVAL_BEAM
    if beam < 1:
        raise ValueError(f"--beam must be at least 1, got {beam}")
    return evaluate_file(path, args.file, beam=beam, max_len=getattr(args, "max_len", None),
                         encoding=getattr(args, "encoding", "utf-8"))
