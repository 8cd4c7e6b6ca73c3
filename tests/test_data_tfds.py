"""The TFDS catalogue datasets through the streams, on tfds.testing.mock_data examples."""

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from figkd_jax import data
from figkd_jax.data import sources

NUM_EXAMPLES = 6


@pytest.fixture
def mock_tfds(monkeypatch):
    """Random examples generated from each builder's feature spec; no files are read.

    mock_data does not make builders report themselves prepared, so that is patched too.
    """
    monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
    sources.load_split.cache_clear()
    with tfds.testing.mock_data(num_examples=NUM_EXAMPLES, policy=tfds.testing.MockPolicy.USE_CODE):
        yield
    sources.load_split.cache_clear()


def _assert_normalized_pixels(images, info):
    low = -np.array(info.mean) / np.array(info.std)
    high = (1 - np.array(info.mean)) / np.array(info.std)
    assert np.all(images >= low - 1e-5) and np.all(images <= high + 1e-5)
    assert images.std() > 0.1  # not blank


@pytest.mark.parametrize("name", ["cifar100", "caltech_birds2011", "stanford_dogs"])
def test_train_and_eval_batches(mock_tfds, name):
    info = data.get_info(name)
    config = ml_collections.ConfigDict({"name": name})
    stream = data.train_stream(config, global_batch_size=4, seed=0)
    assert stream.num_examples == NUM_EXAMPLES and stream.steps_per_epoch == 1
    for batch in [next(stream), next(stream)]:
        assert batch["image"].shape == (4, *info.image_shape)
        assert batch["image"].dtype == np.float32 and batch["label"].dtype == np.int32
        _assert_normalized_pixels(batch["image"], info)
        assert np.all((batch["label"] >= 0) & (batch["label"] < info.num_classes))

    batches = list(data.eval_stream(config, global_batch_size=4))
    assert [b["mask"].tolist() for b in batches] == [[True] * 4, [True, True, False, False]]
    assert all(b["image"].shape == (4, *info.image_shape) for b in batches)
    _assert_normalized_pixels(np.concatenate([b["image"] for b in batches])[:NUM_EXAMPLES], info)


def test_cifar100_arrays(mock_tfds):
    images, labels = data.load_arrays(ml_collections.ConfigDict({"name": "cifar100"}), "train")
    assert images.shape == (NUM_EXAMPLES, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (NUM_EXAMPLES,) and labels.dtype == np.int32
