"""Modality inversion: map an embedding into the other tower of a CLIP model.

``TextualInverter`` (OTI) learns, for each image embedding, pseudo-word token
embeddings that make the text tower's feature of a template such as
"a photo of *" match the image; ``VisualInverter`` (OVI) learns, for each text
embedding, pseudo-patch tokens that make the image tower's feature match the text.
Intra-modal tasks (image-image retrieval) can then use the inter-modal geometry
that the contrastive loss trained (Mistretta et al., "Cross the Gap", ICLR 2025).

The towers run as the model runs them: the pseudo tokens are injected by a forward
hook on the token embedding (OTI) or on the patch embedding (OVI), so the
positional embedding, the attention mask, end-of-text pooling, layer norms and
projection are the model's own code. The hook only fires for the tensors this
package passes in, so other users of the shared, cached model are unaffected.

Layout: ``_base`` holds the optimisation loop both share (loss, initialisation,
early stop, precision), ``_textual`` the text-tower injector and
``TextualInverter``, ``_visual`` the patch injector and ``VisualInverter``.
"""

# The private names are re-exported for the tests, which import them from here.
from ._textual import TextualInverter, _template_tokens, _TextInjector  # noqa: F401
from ._visual import VisualInverter, _auto_n_patches, _PatchInjector  # noqa: F401

__all__ = ["TextualInverter", "VisualInverter"]
