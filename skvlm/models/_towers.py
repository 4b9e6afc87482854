"""The towers' internals that modality inversion needs, kept beside the models.

``inversion.py`` injects learned tokens into a frozen tower; how a tower embeds
tokens, pools text and embeds patches is open_clip's business (and SharedCLIP's), so
it lives here, next to the code that builds those models: an open_clip upgrade that
changes ``CLIP.encode_text`` is caught by the tests of this module's callers, and
fixed here.
"""

import contextlib


@contextlib.contextmanager
def replace_output(module, marker, replace):
    """While active, ``module(marker)`` returns ``replace(output)``; other inputs pass."""

    def hook(_module, inputs, output):
        if inputs and inputs[0] is marker:
            return replace(output)
        return None

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def pooled_position(model, row):
    """Index of the token open_clip's CLIP pools, or None when cutting there is unsafe."""
    import torch
    from open_clip.model import CLIP

    if type(model).encode_text is not CLIP.encode_text:
        return None
    mask = getattr(model, "attn_mask", None)
    if mask is None or mask.ndim != 2:
        return None
    causal = torch.full_like(mask, float("-inf")).triu_(1)
    if not torch.equal(mask, causal):
        return None
    if model.text_pool_type == "argmax":
        return int(row.argmax())
    if model.text_pool_type == "eos" and getattr(model, "text_eos_id", None) is not None:
        hits = (row == model.text_eos_id).nonzero()
        return int(hits[0, 0]) if hits.shape[0] else None
    return None


def encode_text_prefix(model, ids, embedded):
    """open_clip ``CLIP.encode_text`` on the first ``ids.shape[1]`` positions only.

    Same steps as open_clip 3.x: + positional embedding, transformer with the
    (sliced) causal mask, ln_final, pooling, projection.
    """
    import torch
    from open_clip.transformer import text_global_pool

    length = ids.shape[1]
    cast_dtype = model.transformer.get_cast_dtype()
    x = embedded.to(cast_dtype) + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = text_global_pool(
        x, ids, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None)
    )
    projection = model.text_projection
    if projection is None:
        return x
    return projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection


def token_embedding(model, name):
    for owner in (model, getattr(model, "text", None)):
        embedding = getattr(owner, "token_embedding", None)
        if embedding is not None and hasattr(embedding, "weight"):
            return embedding
    raise ValueError(
        f"TextualInverter needs a text tower with a token embedding table "
        f"(model.token_embedding); {name}'s model ({type(model).__name__}) has none."
    )


def vit_tower(model, name):
    visual = getattr(model, "visual", None)
    needed = ("conv1", "class_embedding", "positional_embedding")
    if visual is None or not all(hasattr(visual, attr) for attr in needed):
        kind = type(visual).__name__ if visual is not None else "missing"
        raise ValueError(
            f"VisualInverter needs a ViT image tower (patch embedding conv1, class token, "
            f"positional embedding); {name}'s image tower is {kind}, which it cannot invert."
        )
    return visual
