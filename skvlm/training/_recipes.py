"""The recipes of the tiny model zoo: plain data, importable without torch.

Every model of the zoo sees the same data (fresh ``make_scenes(version=3)``
batches, batch ``s`` drawn from a generator seeded by ``(seed, s)``), for the same
number of steps, batch size and learning-rate schedule; they differ only in the
architecture and the loss, so their differences are the recipes' differences.

============================  ============  ===========================================
name                          architecture  loss
============================  ============  ===========================================
``skvlm-tiny``                CLIP          CLIP (inter-modal only)
``skvlm-tiny-slip``           CLIP          CLIP + SimCLR on two views of the image
``skvlm-tiny-shared``         SharedCLIP    CLIP (AlignCLIP's middle row)
``skvlm-tiny-align``          SharedCLIP,   AlignCLIP: CLIP x alpha=1 + IMSep x beta=0.5,
                              one final LN  attribute distance of the captions
``skvlm-tiny-ssl``            image only    SimCLR (no text), served by ``ImageEncoder``
============================  ============  ===========================================
"""

# The budget shared by the whole zoo (steps, batch, schedule, data). A batch of 256
# matters more than its cost: with 64 pairs the colour words alone tell most captions
# apart, and the shape (the main labelling) barely emerged (0.18 zero-shot after
# 2500 x 64); 2000 x 256 takes 25-45 min per model on one CPU core.
COMMON = {
    "world": 3,
    "n_steps": 2000,
    "batch_size": 256,
    "learning_rate": 2e-3,
    "warmup_steps": 100,
}

RECIPES = {
    "skvlm-tiny": {**COMMON, "architecture": "clip", "loss": "clip"},
    "skvlm-tiny-slip": {**COMMON, "architecture": "clip", "loss": "clip", "ssl_weight": 1.0},
    "skvlm-tiny-shared": {**COMMON, "architecture": "shared", "loss": "clip"},
    "skvlm-tiny-align": {
        **COMMON,
        "architecture": "shared",
        "loss": "imsep",
        "alpha": 1.0,
        "beta": 0.5,
        "semantic_distance": "auto",
    },
    # World 3's images are world 2's, pixel for pixel (only captions differ, and SimCLR
    # reads no caption): the ssl model trained on world 2 saw the zoo's data.
    "skvlm-tiny-ssl": {**COMMON, "world": 2, "architecture": "image", "loss": "simclr"},
}

# Models that embed images only (served by ImageEncoder, not CLIPEncoder).
IMAGE_ONLY = ("skvlm-tiny-ssl",)

# Held-out evaluation: a seed no training batch uses (those are seeded by
# (seed, step) sequences, never by a bare integer).
EVAL_RANDOM_STATE = 20_251_123


def check_recipe_name(name):
    """``name`` if it has a recipe, else a ValueError listing the recipes."""
    if name not in RECIPES:
        raise ValueError(f"Unknown tiny model {name!r}; choose from {sorted(RECIPES)}.")
    return name
