"""The default frozen language encoder: real MiniLM weights, loaded offline."""

import numpy as np
import pytest

from embodied.language import SentenceEncoder


@pytest.fixture(scope="module")
def encoder():
    return SentenceEncoder()


def test_embeddings_are_unit_norm_and_semantic(encoder):
    v = encoder.encode(["pick up the red block", "grab the red cube", "open the drawer"])
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2  # paraphrases are closer than other tasks


def test_cache_returns_identical_vectors(encoder):
    a = encoder.encode(["move arm left"])
    b = encoder.encode(["move arm left", "move arm right"])
    np.testing.assert_array_equal(a[0], b[0])


def test_a_folder_without_a_model_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no transformer model"):
        SentenceEncoder(tmp_path)


def test_token_states_are_what_the_sentence_vector_pools(encoder):
    texts = ["stack the red block on the blue block", "open the drawer"]
    states, mask = encoder.encode_tokens(texts)
    assert states.shape[:2] == mask.shape and states.shape[2] == encoder.dim
    assert mask[0].all() and 0 < mask[1].sum() < mask.shape[1]  # the shorter text is padded
    assert not states[1, ~mask[1]].any()
    pooled = np.stack([s[m].mean(0) for s, m in zip(states, mask, strict=True)])
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    np.testing.assert_allclose(pooled, encoder.encode(texts), atol=1e-5)


def test_mean_pooling_blurs_which_block_is_which_and_tokens_keep_it(encoder):
    # Why MDTConfig.language_tokens exists: the two orders pool to nearly the same sentence vector,
    # while the states at the first colour word differ (each has seen its own colour there).
    a, b = "stack the red block on the blue block", "stack the blue block on the red block"
    va, vb = encoder.encode([a, b])
    assert float(va @ vb) > 0.99
    (sa, sb), _ = encoder.encode_tokens([a, b])
    first_colour = 3  # [CLS] stack the <colour>
    cos = float(sa[first_colour] @ sb[first_colour] / np.linalg.norm(sa[first_colour]) / np.linalg.norm(sb[first_colour]))
    assert cos < 0.9
