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
