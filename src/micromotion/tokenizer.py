"""CLIP's byte-level BPE tokenizer (Radford et al. 2021), following openai/CLIP `clip/simple_tokenizer.py`.

Text is cleaned (ftfy when installed, HTML entities unescaped twice, whitespace collapsed) and lower-cased,
split by CLIP's regex, byte-encoded and merged with the 48,894 merges of `data/clip/bpe_simple_vocab_16e6.txt.gz`
(MIT, OpenAI; see `data/clip/LICENSE-CLIP`). `tokenizer(texts)` gives `[T, context_length]` ids:
`<|startoftext|>` text `<|endoftext|>`, zero padded; too long texts are cut with `<|endoftext|>` kept last.

The splitting regex needs Unicode classes (`\\p{L}`, `\\p{N}`) from the `regex` package. Without it, an
equivalent `re` pattern is used (letters `[^\\W\\d_]`, numbers `\\d`); the two differ only on the rare
non-decimal numeric characters (`²`, `½`, Roman numerals), which `re` counts as letters.
"""
from __future__ import annotations

import gzip
import html
import unicodedata
from functools import lru_cache
from importlib import resources
from typing import Sequence

import torch

__all__ = ["ClipTokenizer", "SOT", "EOT"]

SOT, EOT = "<|startoftext|>", "<|endoftext|>"
_CONTRACTIONS = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d"""


@lru_cache()
def _bytes_to_unicode() -> dict[int, str]:
    # printable bytes map to themselves, the rest to code points from 256 up, so BPE never sees whitespace/control
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def _compile_pattern():
    try:
        import regex

        return regex.compile(_CONTRACTIONS + r"""|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+""", regex.IGNORECASE)
    except ImportError:
        import re

        return re.compile(_CONTRACTIONS + r"""|[^\W\d_]+|\d|(?:[^\s\w]|_)+""", re.IGNORECASE)


def _clean(text: str) -> str:
    try:
        import ftfy

        text = ftfy.fix_text(text)
    except ImportError:
        text = unicodedata.normalize("NFC", text)  # the last step of ftfy.fix_text; its mojibake repair is skipped
    text = html.unescape(html.unescape(text)).strip()
    return " ".join(text.split()).lower()


class ClipTokenizer:
    """`tokenizer(["a photo of a cat"]) -> LongTensor [1, context_length]`; `encode(text) -> list[int]` (no
    start/end tokens). The vocabulary has 49,408 entries (ids 49406/49407 are start/end)."""

    def __init__(self, context_length: int = 77, bpe_path: str | None = None):
        if context_length < 2:
            raise ValueError(f"context_length must be at least 2 (start and end tokens), got {context_length}")
        self.context_length = int(context_length)
        if bpe_path is None:
            data = resources.files("micromotion").joinpath("data/clip/bpe_simple_vocab_16e6.txt.gz").read_bytes()
        else:
            with open(bpe_path, "rb") as f:
                data = f.read()
        merges = gzip.decompress(data).decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
        merges = [tuple(m.split()) for m in merges]
        self.byte_encoder = _bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        vocab = list(self.byte_encoder.values())
        vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in merges] + [SOT, EOT]
        self.encoder = {t: i for i, t in enumerate(vocab)}
        self.decoder = {i: t for t, i in self.encoder.items()}
        self.bpe_ranks = {m: i for i, m in enumerate(merges)}
        self.cache = {SOT: SOT, EOT: EOT}
        self.pat = _compile_pattern()
        self.sot_token_id, self.eot_token_id = self.encoder[SOT], self.encoder[EOT]
        self.vocab_size = len(self.encoder)

    def bpe(self, token: str) -> str:
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = set(zip(word[:-1], word[1:]))
            bigram = min(pairs, key=lambda p: self.bpe_ranks.get(p, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        out = " ".join(word)
        self.cache[token] = out
        return out

    def encode(self, text: str) -> list[int]:
        ids = []
        for token in self.pat.findall(_clean(text)):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(token).split(" "))
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        text = "".join(self.decoder[int(i)] for i in ids)
        return bytearray(self.byte_decoder[c] for c in text).decode("utf-8", errors="replace").replace("</w>", " ")

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None) -> torch.Tensor:
        """texts: a string or T strings -> LongTensor [T, context_length]."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        ctx = int(context_length or self.context_length)
        out = torch.zeros(len(texts), ctx, dtype=torch.long)
        for i, text in enumerate(texts):
            ids = [self.sot_token_id] + self.encode(text) + [self.eot_token_id]
            if len(ids) > ctx:
                ids = ids[:ctx - 1] + [self.eot_token_id]
            out[i, :len(ids)] = torch.tensor(ids)
        return out
