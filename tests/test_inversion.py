import pickle
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")

from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV, StratifiedKFold  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402

from skvlm import CLIPEncoder, inversion  # noqa: E402
from skvlm.datasets import make_scenes  # noqa: E402
from skvlm.inversion import (  # noqa: E402
    TextualInverter,
    VisualInverter,
    _PatchInjector,
    _template_tokens,
    _TextInjector,
)
from skvlm.models import load_model  # noqa: E402
from skvlm.retrieval import Retriever  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # The tiny model's ops are too small to gain from threads, and on a shared,
    # busy machine spinning OpenMP workers slow them down by an order of magnitude.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def encoder():
    return CLIPEncoder("skvlm-tiny", pretrained=None, device="cpu")


@pytest.fixture(scope="module")
def loaded():
    # fp32: these tests pin the injection against the model's own forward, exactly.
    return load_model("skvlm-tiny", pretrained=None, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def scenes():
    return make_scenes(64, random_state=0)


@pytest.fixture(scope="module")
def image_embeddings(encoder, scenes):
    return encoder.transform(scenes.images[:16])


@pytest.fixture(scope="module")
def text_embeddings(encoder, scenes):
    return encoder.encode_text(scenes.captions[:8])


def _cosine_rows(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


# ------------------------------------------------------------------- injection points


@pytest.mark.parametrize(
    "template", ["a photo of {}", "a {} on a dark background.", "{}", "a photo of a {}, a shape."]
)
def test_template_tokens_match_the_tokenizer(loaded, template):
    # With a one-token word in place of the pseudo tokens, the row is the tokenizer's own
    # but for those two positions, which hold the start-of-text id (replaced when encoding).
    for tokenizer in (loaded.tokenizer, open_clip.get_tokenizer("ViT-B-32")):
        row, start = _template_tokens(tokenizer, template, 2)
        expected = tokenizer([template.format("red red")])[0]
        sot = tokenizer([""])[0][0]
        assert row[start] == sot and row[start + 1] == sot
        keep = np.ones(len(row), dtype=bool)
        keep[[start, start + 1]] = False
        np.testing.assert_array_equal(row.numpy()[keep], expected.numpy()[keep])
        assert start == 1 + len(tokenizer([template.split("{}")[0]])[0].nonzero()) - 2


def test_template_tokens_warn_about_no_word_the_user_did_not_write():
    from skvlm.models._registry import vocab_words
    from skvlm.models._tokenizer import CompactTokenizer, UnseenWordsWarning

    tokenizer = CompactTokenizer(vocab_words(), context_length=24)  # nothing warned yet
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnseenWordsWarning)
        _template_tokens(tokenizer, "a photo of a {}.", 3)
    with pytest.warns(UnseenWordsWarning, match="goldfish"):
        _template_tokens(tokenizer, "a photo of a {} goldfish.", 1)


@pytest.mark.parametrize("truncate", [True, False])
def test_pseudo_tokens_equal_to_word_embeddings_reproduce_encode_text(loaded, truncate):
    # Injecting the embedding rows of real words must give exactly the model's
    # encode_text of the sentence: same position, EOT pooling, mask and projection,
    # both on the cut sequence (up to end-of-text) and through the hook (full length).
    tok = loaded.tokenizer
    injector = _TextInjector(loaded, "a photo of a {} on a dark background", 2, truncate)
    assert injector.length == (12 if truncate else None)  # SOT + 10 tokens + EOT
    words = [("red", "circle"), ("blue", "star")]
    ids = torch.stack([torch.stack([tok([w])[0][1] for w in pair]) for pair in words])
    pseudo = loaded.model.token_embedding.weight[ids].clone()  # (2, 2, width)
    marker = injector.marker(2)
    with torch.no_grad():
        injected = injector.forward(marker, pseudo)
        sentences = [f"a photo of a {a} {b} on a dark background" for a, b in words]
        expected = loaded.model.encode_text(tok(sentences))
        plain = loaded.model.encode_text(tok(["a photo of a x x on a dark background"] * 2))
    torch.testing.assert_close(injected, expected, rtol=0, atol=1e-5)
    assert not torch.allclose(plain, expected, atol=1e-3)


def test_text_hook_is_gone_and_ignores_other_inputs(loaded):
    injector = _TextInjector(loaded, "a photo of {}", 1, truncate=False)
    marker = injector.marker(1)
    pseudo = torch.randn(1, 1, injector.token_width)
    with torch.no_grad():
        before = loaded.model.encode_text(marker.clone())
        injected = injector.forward(marker, pseudo)
        after = loaded.model.encode_text(marker)
    torch.testing.assert_close(before, after)
    assert not torch.allclose(injected, after, atol=1e-3)
    assert not loaded.model.token_embedding._forward_hooks


def test_pseudo_patches_equal_to_patch_embeddings_reproduce_encode_image(loaded):
    visual = loaded.model.visual
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        patches = visual.conv1(images).flatten(2).permute(0, 2, 1)  # (3, 16, width)
        injector = _PatchInjector(loaded, patches.shape[1])
        injected = injector.forward(injector.marker(3), patches)
        expected = loaded.model.encode_image(images)
    torch.testing.assert_close(injected, expected, rtol=0, atol=1e-6)


def test_fewer_pseudo_patches_are_repeated_over_the_grid_by_nearest(loaded):
    # 2 pseudo patches on a 4 x 4 grid: positions 0-7 hold the first, 8-15 the second
    # (nearest interpolation, as Cross the Gap does).
    pseudo = torch.randn(1, 2, 128, generator=torch.Generator().manual_seed(1))
    full = pseudo[:, [0] * 8 + [1] * 8]
    two, sixteen = _PatchInjector(loaded, 2), _PatchInjector(loaded, 16)
    with torch.no_grad():
        marker = two.marker(1)
        a = two.forward(marker, pseudo)
        b = sixteen.forward(marker, full)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


# ------------------------------------------------------------------- OTI


def test_oti_raises_cosine_far_above_plain_template(encoder, image_embeddings):
    oti = TextualInverter(encoder, n_steps=40, random_state=0)
    text_features = oti.fit_transform(image_embeddings)
    assert text_features.shape == image_embeddings.shape
    assert text_features.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(text_features, axis=1), 1.0, rtol=1e-5)
    plain = encoder.encode_text(["a photo of"])
    cos_plain = _cosine_rows(image_embeddings, np.repeat(plain, len(image_embeddings), 0))
    cos_oti = _cosine_rows(image_embeddings, text_features)
    assert np.all(cos_oti > cos_plain + 0.2)
    assert cos_oti.mean() > cos_plain.mean() + 0.4
    # The loss is 1 - cos: the curve starts high, ends at the mean final loss.
    assert oti.loss_curve_.shape == (40,) and oti.n_iter_ == 40
    assert oti.loss_curve_[-1] < 0.7 * oti.loss_curve_[0]
    assert oti.loss_curve_[-1] == pytest.approx(1 - cos_oti.mean(), abs=0.05)


def test_oti_same_random_state_same_output(encoder, image_embeddings):
    X = image_embeddings[:4]
    a = TextualInverter(encoder, n_steps=10, random_state=3).fit_transform(X)
    b = TextualInverter(encoder, n_steps=10, random_state=3).fit(X).transform(X)
    c = TextualInverter(encoder, n_steps=10, random_state=4).fit_transform(X)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c, atol=1e-4)


def test_oti_row_alone_equals_row_in_batch_of_64(encoder, scenes):
    X = encoder.transform(scenes.images[:64])
    oti = TextualInverter(encoder, n_steps=15, random_state=0).fit(X)
    batched = oti.transform(X)
    for row in (0, 37, 63):
        alone = oti.transform(X[row : row + 1])
        np.testing.assert_allclose(alone[0], batched[row], atol=1e-5)
    # Other batch splits give the same rows too.
    split = oti.set_params(batch_size=5).transform(X[:12])
    np.testing.assert_allclose(split, batched[:12], atol=1e-5)


def test_oti_two_tokens_and_other_template(encoder, image_embeddings):
    X = image_embeddings[:4]
    one = TextualInverter(encoder, n_steps=20, random_state=0).fit_transform(X)
    two = TextualInverter(
        encoder, n_tokens=2, template="a {} shape", n_steps=20, random_state=0
    ).fit_transform(X)
    assert two.shape == one.shape
    assert not np.allclose(one, two, atol=1e-3)
    assert _cosine_rows(X, two).mean() > 0.3


def test_tol_stops_each_row_after_ten_steps_without_improvement(encoder, image_embeddings):
    # With tol=1 no step counts as an improvement after the first, so every row
    # stops at step 10, keeping the tokens it had after 10 updates.
    X = image_embeddings[:3]
    early = TextualInverter(encoder, n_steps=100, tol=1.0, random_state=0)
    out = early.fit_transform(X)
    assert early.n_iter_ == 11
    ten = TextualInverter(encoder, n_steps=10, random_state=0).fit_transform(X)
    np.testing.assert_allclose(out, ten, atol=1e-6)
    # A tiny tol changes nothing over a short run that keeps improving.
    keep = TextualInverter(encoder, n_steps=10, tol=0.0, random_state=0).fit_transform(X)
    np.testing.assert_allclose(keep, ten, atol=1e-6)


def test_verbose_progress_bar_and_no_grad_context(encoder, image_embeddings, capsys):
    X = image_embeddings[:2]
    quiet = TextualInverter(encoder, n_steps=3, random_state=0).fit_transform(X)
    assert "TextualInverter" not in capsys.readouterr().err
    with torch.no_grad():  # the optimisation re-enables gradients for itself
        loud = TextualInverter(encoder, n_steps=3, random_state=0, verbose=1).fit_transform(X)
    err = capsys.readouterr().err
    assert "TextualInverter" in err and "3/3" in err
    np.testing.assert_array_equal(loud, quiet)


# ------------------------------------------------------------------- OVI


def test_ovi_raises_cosine_and_is_batch_independent(encoder, text_embeddings):
    ovi = VisualInverter(encoder, n_steps=30, random_state=0)
    image_features = ovi.fit_transform(text_embeddings)
    assert image_features.shape == text_embeddings.shape
    blank = encoder.transform(np.full((1, 32, 32, 3), 128, dtype=np.uint8))
    cos_blank = _cosine_rows(text_embeddings, np.repeat(blank, len(text_embeddings), 0))
    cos_ovi = _cosine_rows(text_embeddings, image_features)
    assert np.all(cos_ovi > cos_blank + 0.2)
    assert ovi.loss_curve_[-1] < 0.7 * ovi.loss_curve_[0]
    alone = ovi.transform(text_embeddings[5:6])
    np.testing.assert_allclose(alone[0], ovi.transform(text_embeddings)[5], atol=1e-5)
    again = VisualInverter(encoder, n_steps=30, random_state=0).fit_transform(text_embeddings[:2])
    np.testing.assert_allclose(again, image_features[:2], atol=1e-5)


def test_ovi_several_patches(encoder, text_embeddings):
    out = VisualInverter(encoder, n_patches=4, n_steps=10, random_state=0).fit_transform(
        text_embeddings[:2]
    )
    assert out.shape == (2, 64) and np.all(np.isfinite(out))


# ------------------------------------------------------------------- errors, pickling


def test_bad_input_errors(encoder, image_embeddings):
    with pytest.raises(ValueError, match="X has 32 features but skvlm-tiny's embeddings have 64"):
        TextualInverter(encoder).fit(np.ones((2, 32)))
    with pytest.raises(ValueError, match="exactly one '{}'"):
        TextualInverter(encoder, template="a photo").fit(image_embeddings)
    with pytest.raises(ValueError, match="context length is 24"):
        TextualInverter(encoder, n_tokens=22).fit(image_embeddings)
    with pytest.raises(ValueError, match="n_patches=17 exceeds the 16 patch positions"):
        VisualInverter(encoder, n_patches=17).fit(image_embeddings)
    with pytest.raises(ValueError, match="n_steps"):
        TextualInverter(encoder, n_steps=0).fit(image_embeddings)
    with pytest.raises(ValueError, match="NaN"):
        TextualInverter(encoder).fit(np.full((1, 64), np.nan))
    fitted = TextualInverter(encoder, n_steps=2).fit(image_embeddings)
    with pytest.raises(ValueError, match="features"):
        fitted.transform(np.ones((1, 65)))


@pytest.mark.parametrize("inverter", [TextualInverter, VisualInverter])
@pytest.mark.parametrize("exponent", [-1030, -600, 0, 600, 1000])
def test_only_a_row_direction_matters_at_any_float64_magnitude(
    encoder, image_embeddings, inverter, exponent
):
    # Scaling by a power of two is exact, so the unit rows (and hence every step of
    # the optimisation) must be bit-identical; 2**1000 ~ 1e301 overflows float32 and
    # 2**-1030 ~ 1e-310 is subnormal in float64 and zero in float32.
    rows = image_embeddings[:3].astype(np.float64)
    make = lambda: inverter(encoder, n_steps=3, random_state=0)  # noqa: E731
    scaled = make().fit_transform(np.ldexp(rows, exponent))
    assert np.all(np.isfinite(scaled))
    np.testing.assert_array_equal(scaled, make().fit_transform(rows))


@pytest.mark.parametrize(
    "inverter, injector", [(TextualInverter, _TextInjector), (VisualInverter, _PatchInjector)]
)
def test_a_tower_that_returns_nan_is_an_error(
    monkeypatch, encoder, image_embeddings, inverter, injector
):
    real = injector.forward

    def overflowing(self, marker, tokens):  # as fp16 autocast overflowing would
        features = real(self, marker, tokens)
        return features * torch.tensor([1.0, float("inf"), 1.0])[:, None]

    monkeypatch.setattr(injector, "forward", overflowing)
    with pytest.raises(ValueError, match=r"NaN or inf features for rows \[1\]"):
        inverter(encoder, n_steps=2, random_state=0).fit_transform(image_embeddings[:3])


@st.composite
def _source_rows(draw):
    """1-4 rows of 64 values of one float dtype, each scaled anywhere in the dtype's
    range (subnormal to near overflow), some of them all zero or repeated."""
    dtype = draw(st.sampled_from([np.float16, np.float32, np.float64]))
    n_rows = draw(st.integers(1, 4))
    grid = draw(hnp.arrays(np.int8, (n_rows, 64), elements=st.integers(-3, 3)))
    info = np.finfo(dtype)
    exponents = draw(
        hnp.arrays(
            np.int16,
            n_rows,
            elements=st.integers(int(np.log2(info.smallest_subnormal)) + 2, info.maxexp - 4),
        )
    )
    rows = np.ldexp(grid.astype(np.float64), exponents[:, None].astype(np.int64))
    if n_rows > 1 and draw(st.booleans()):
        rows[-1] = rows[0]
    return rows.astype(dtype)


@settings(max_examples=10, deadline=None, derandomize=True, database=None)
@given(rows=_source_rows(), inverter=st.sampled_from([TextualInverter, VisualInverter]))
def test_any_rows_give_finite_unit_features_or_a_clear_error(encoder, rows, inverter):
    estimator = inverter(encoder, n_steps=2, random_state=0)
    zero = ~rows.astype(np.float64).any(axis=1)
    if zero.any():
        with pytest.raises(ValueError, match="all-zero row"):
            estimator.fit_transform(rows)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no overflow on the way
        out = estimator.fit_transform(rows)
    assert out.shape == rows.shape and out.dtype == np.float32
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("inverter", [TextualInverter, VisualInverter])
def test_an_all_zero_row_is_refused_by_position(encoder, image_embeddings, inverter):
    X = image_embeddings[:4].copy()
    X[2] = 0
    with pytest.raises(ValueError, match=r"1 all-zero row \(rows \[2\]\)"):
        inverter(encoder, n_steps=2).fit(X)
    fitted = inverter(encoder, n_steps=2).fit(image_embeddings[:4])
    with pytest.raises(ValueError, match=r"rows \[2\]"):
        fitted.transform(X)


def test_non_vit_image_tower_is_a_clear_error_at_fit(monkeypatch, loaded, image_embeddings):
    from open_clip.model import ModifiedResNet

    resnet = ModifiedResNet(layers=(1, 1, 1, 1), output_dim=64, heads=2, image_size=32, width=8)
    model = torch.nn.Module()
    model.visual = resnet
    fake = type(loaded)(**{**loaded.__dict__, "model": model, "name": "tiny-resnet"})
    monkeypatch.setattr(inversion._base, "_resolve_loaded", lambda encoder: (fake, True))
    with pytest.raises(ValueError, match="tiny-resnet's image tower is ModifiedResNet"):
        VisualInverter("tiny-resnet").fit(image_embeddings)


def test_unfitted_clone_and_pickle(encoder, image_embeddings):
    oti = TextualInverter(encoder, n_steps=3, random_state=0)
    with pytest.raises(Exception, match="not fitted"):
        oti.transform(image_embeddings)
    out = oti.fit_transform(image_embeddings[:2])
    blob = pickle.dumps(oti)
    assert len(blob) < 10_000  # no weights inside
    np.testing.assert_array_equal(pickle.loads(blob).transform(image_embeddings[:2]), out)
    np.testing.assert_array_equal(clone(oti).fit_transform(image_embeddings[:2]), out)
    assert list(oti.get_feature_names_out())[:2] == ["textualinverter0", "textualinverter1"]


# ------------------------------------------------------------------- pipeline


def test_pipeline_in_gridsearch_reuses_the_encoder_cache(monkeypatch, tmp_path, scenes):
    calls = []
    original = CLIPEncoder._run_model

    def counting(self, request, *args, **kwargs):
        calls.append(len(request.items))
        return original(self, request, *args, **kwargs)

    monkeypatch.setattr(CLIPEncoder, "_run_model", counting)
    spec = dict(model="skvlm-tiny", pretrained=None, device="cpu")
    pipe = Pipeline(
        [
            ("enc", CLIPEncoder(**spec, cache=str(tmp_path))),
            ("oti", TextualInverter(CLIPEncoder(**spec), n_steps=3, random_state=0)),
            ("ret", Retriever()),
        ]
    )
    labels = np.asarray(scenes.factors["colour"])
    search = GridSearchCV(
        pipe, {"oti__n_steps": [2, 4]}, cv=StratifiedKFold(2, shuffle=True, random_state=0)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # labels absent from a fold's gallery
        search.fit(scenes.images, labels)
    assert search.best_params_["oti__n_steps"] in (2, 4)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    assert 0 < search.best_score_ <= 1
    # Every image went through the model once: later fits read the disk cache.
    assert sum(calls) == len(scenes.images)


def test_shared_clip_is_inverted_through_the_hooks():
    # AlignCLIP's SharedCLIP mirrors open_clip's attribute names but not its
    # encode_text, so OTI takes the full-length hook path; both towers match.
    shared = load_model("skvlm-tiny-shared", pretrained=None, device="cpu", precision="fp32")
    tok = shared.tokenizer
    injector = _TextInjector(shared, "a photo of {}", 1)
    assert injector.length is None
    pseudo = shared.model.token_embedding.weight[tok(["red"])[0][1]][None, None].clone()
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        text = injector.forward(injector.marker(1), pseudo)
        patches = shared.model.visual.conv1(images).flatten(2).permute(0, 2, 1)
        patch_injector = _PatchInjector(shared, patches.shape[1])
        image = patch_injector.forward(patch_injector.marker(2), patches)
        torch.testing.assert_close(
            text, shared.model.encode_text(tok(["a photo of red"])), rtol=0, atol=1e-5
        )
        torch.testing.assert_close(image, shared.model.encode_image(images), rtol=0, atol=1e-5)
    encoder = CLIPEncoder("skvlm-tiny-shared", pretrained=None, device="cpu")
    X = encoder.transform(np.zeros((2, 32, 32, 3), dtype=np.uint8))
    oti = TextualInverter(encoder, n_steps=8, random_state=0)
    oti.fit_transform(X)
    assert oti.loss_curve_[-1] < oti.loss_curve_[0]


@pytest.mark.parametrize("inverter", [TextualInverter, VisualInverter])
def test_half_precision_towers_optimise_fp32_pseudo_tokens(inverter):
    encoder = CLIPEncoder("skvlm-tiny", pretrained=None, device="cpu", precision="bf16")
    targets = encoder.encode_text(["a red circle", "a blue star"])
    est = inverter(encoder, n_steps=15, learning_rate=0.1, random_state=0)
    out = est.fit_transform(targets)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert est.loss_curve_[-1] < est.loss_curve_[0]
