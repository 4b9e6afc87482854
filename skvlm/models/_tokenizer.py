"""A compact vocabulary on top of open_clip's BPE tokenizer, for the tiny models.

A 49,408-row token table would dominate a 1 M-parameter model (see
``shared/notes/tiny-clip-feasibility.md``), although the generated captions use a
few dozen BPE ids. ``CompactTokenizer`` keeps open_clip's tokenisation and maps the
BPE ids of a fixed word list onto a small table; any other id becomes ``unk``.
Layout: 0 = padding, 1..n = the word-list ids (sorted), then ``unk``, start-of-text
and, highest of all, end-of-text, because open_clip's ``argmax`` text pooling finds
the end-of-text token as the largest id in the row.
"""

import numpy as np
import torch


class CompactTokenizer:
    """Tokenise like open_clip, then map the BPE ids onto a compact vocabulary.

    Parameters
    ----------
    words : list of str
        Words whose BPE pieces get an id of their own.
    context_length : int
        Length of each tokenised row (padded with 0, truncated keeping end-of-text).

    Examples
    --------
    >>> tok = CompactTokenizer(["a", "red", "circle"], context_length=8)
    >>> ids = tok(["a red circle", "a blue circle"])
    >>> ids.shape, int(ids[0].argmax()) == 4, int(ids[0].max()) == tok.eot_id
    (torch.Size([2, 8]), True, True)
    >>> bool(ids[1, 2] == tok.unk_id)
    True
    """

    def __init__(self, words, context_length=24):
        from open_clip.tokenizer import SimpleTokenizer

        self.words = list(words)
        self.context_length = context_length
        self._bpe = SimpleTokenizer(context_length=context_length)
        bpe_ids = sorted({i for word in self.words for i in self._bpe.encode(word)})
        n_bpe = len(self._bpe.encoder)
        self.unk_id = len(bpe_ids) + 1
        self.sot_id = len(bpe_ids) + 2
        self.eot_id = len(bpe_ids) + 3
        self.vocab_size = len(bpe_ids) + 4
        lookup = np.full(n_bpe, self.unk_id, dtype=np.int64)
        lookup[bpe_ids] = np.arange(1, len(bpe_ids) + 1)
        lookup[0] = 0  # open_clip pads with id 0; keep padding at 0
        lookup[self._bpe.sot_token_id] = self.sot_id
        lookup[self._bpe.eot_token_id] = self.eot_id
        self._lookup = torch.from_numpy(lookup)

    def __call__(self, texts, context_length=None):
        if isinstance(texts, str):
            texts = [texts]
        bpe = self._bpe(list(texts), context_length=context_length or self.context_length)
        return self._lookup[bpe]

    def unknown_words(self, texts):
        """The words of ``texts`` that map (at least partly) to the unknown id."""
        unknown = set()
        for text in texts:
            for word in text.split():
                if (self(word)[0] == self.unk_id).any():
                    unknown.add(word)
        return sorted(unknown)
