"""A compact vocabulary on top of open_clip's BPE tokenizer, for the tiny models.

A 49,408-row token table would dominate a 1 M-parameter model (see
``shared/notes/tiny-clip-feasibility.md``), although the generated captions use a
few hundred BPE ids. ``CompactTokenizer`` keeps open_clip's tokenisation and maps
the BPE ids of a fixed word list onto a small table. Every other BPE id is hashed
into one of ``hash_buckets`` shared rows, so any text gets tokens: "a photo of a
goldfish" and "a photo of a tench" are different token rows, although the model
never saw either word (those rows were not trained, so the tokenizer warns once
per word, naming it).

Layout: 0 = padding, 1..n = the word-list ids (sorted), then the hash buckets (or,
with ``hash_buckets=0``, one ``unk`` id), start-of-text and, highest of all,
end-of-text, because open_clip's ``argmax`` text pooling finds the end-of-text
token as the largest id in the row.
"""

import re
import warnings

import numpy as np
import torch

HASH_BUCKETS = 256
_WORD = re.compile(r"[a-z]+|[0-9]|[^\sa-z0-9]+", re.IGNORECASE)


class UnseenWordsWarning(UserWarning):
    """A text holds words a tiny model never saw in training (hashed tokens)."""


class CompactTokenizer:
    """Tokenise like open_clip, then map the BPE ids onto a compact vocabulary.

    Parameters
    ----------
    words : list of str
        Words whose BPE pieces get an id of their own.
    context_length : int
        Length of each tokenised row (padded with 0, truncated keeping end-of-text).
    hash_buckets : int, default=256
        Shared rows for every other BPE id (id modulo the bucket count, after a
        fixed multiplicative hash). 0 maps them all to a single ``unk`` id, the
        layout of the first shipped models.
    warn : bool, default=True
        Warn once per word (:class:`UnseenWordsWarning`) when a text holds a word
        outside ``words``.

    Examples
    --------
    >>> tok = CompactTokenizer(["a", "red", "circle"], context_length=8, warn=False)
    >>> ids = tok(["a red circle", "a blue circle", "a green circle"])
    >>> ids.shape, int(ids[0].max()) == tok.eot_id
    (torch.Size([3, 8]), True)
    >>> bool(ids[1, 2] != ids[2, 2]), bool(ids[1, 2] >= tok.first_bucket_id)
    (True, True)
    """

    def __init__(self, words, context_length=24, hash_buckets=HASH_BUCKETS, warn=True):
        from open_clip.tokenizer import SimpleTokenizer

        self.words = list(words)
        self.context_length = context_length
        self.hash_buckets = int(hash_buckets)
        self.warn = warn
        self._bpe = SimpleTokenizer(context_length=context_length)
        bpe_ids = sorted({i for word in self.words for i in self._bpe.encode(word)})
        n_bpe = len(self._bpe.encoder)
        n_known = len(bpe_ids)
        self.first_bucket_id = n_known + 1
        n_other = max(1, self.hash_buckets)
        self.unk_id = self.first_bucket_id if self.hash_buckets == 0 else None
        self.sot_id = self.first_bucket_id + n_other
        self.eot_id = self.sot_id + 1
        self.vocab_size = self.eot_id + 1
        all_ids = np.arange(n_bpe, dtype=np.int64)
        # Knuth's multiplicative hash spreads neighbouring BPE ids over the buckets.
        lookup = self.first_bucket_id + (all_ids * 2654435761 % (2**32)) % n_other
        lookup[bpe_ids] = np.arange(1, n_known + 1)
        lookup[0] = 0  # open_clip pads with id 0; keep padding at 0
        lookup[self._bpe.sot_token_id] = self.sot_id
        lookup[self._bpe.eot_token_id] = self.eot_id
        self._lookup = torch.from_numpy(lookup)
        self._warned = set()

    def __call__(self, texts, context_length=None):
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        bpe = self._bpe(texts, context_length=context_length or self.context_length)
        ids = self._lookup[bpe]
        if self.warn:
            unseen = (ids >= self.first_bucket_id) & (ids < self.sot_id)
            if bool(unseen.any()):
                self._warn_unseen(
                    [texts[i] for i in torch.nonzero(unseen.any(dim=1)).flatten().tolist()]
                )
        return ids

    def _is_unseen(self, word):
        ids = self._lookup[self._bpe.encode(word)]
        return bool(((ids >= self.first_bucket_id) & (ids < self.sot_id)).any())

    def unknown_words(self, texts):
        """The words of ``texts`` that the vocabulary does not cover (hashed or ``unk``)."""
        unknown = set()
        for text in texts:
            for word in _WORD.findall(text.lower()):
                if word not in unknown and self._is_unseen(word):
                    unknown.add(word)
        return sorted(unknown)

    def _warn_unseen(self, texts):
        new = [w for w in self.unknown_words(texts) if w not in self._warned]
        if not new:
            return
        self._warned.update(new)
        shown = ", ".join(repr(w) for w in new[:20]) + (" ..." if len(new) > 20 else "")
        warnings.warn(
            f"{len(new)} word(s) never seen in this tiny model's training: {shown}. "
            "They get hashed tokens whose embeddings were never trained, so they "
            "barely move the text embedding; use the world's words "
            "(skvlm.datasets.caption_vocabulary()) or a pretrained CLIP.",
            UnseenWordsWarning,
            stacklevel=3,
        )
