import torch

from model.world.stream import caption_corpus, world_batch


def test_the_stream_is_deterministic_by_seed_and_index():
    first, again = world_batch(seed=5, index=3, batch_size=8), world_batch(seed=5, index=3, batch_size=8)
    assert torch.equal(first.pixels, again.pixels) and torch.equal(first.masks, again.masks)
    assert first.captions == again.captions and first.scenes == again.scenes
    for other in (world_batch(5, 4, 8), world_batch(6, 3, 8)):
        assert not torch.equal(first.pixels, other.pixels) and first.captions != other.captions


def test_batches_are_well_formed():
    batch = world_batch(seed=0, index=0, batch_size=16, split="heldout", two_object_prob=0.5)
    assert batch.pixels.shape == (16, 3, 64, 64) and batch.masks.shape == (16, 1, 64, 64)
    assert batch.pixels.min() >= -1 and batch.pixels.max() <= 1
    assert batch.masks.min() >= 0 and batch.masks.max() <= 1
    assert len(batch.captions) == len(batch.scenes) == 16
    for scene, text in zip(batch.scenes, batch.captions, strict=True):
        assert all(o.colour in text for o in scene.objects) and scene.background in text
    assert any(len(s.objects) == 2 for s in batch.scenes)


def test_caption_corpus_is_deterministic_and_varied():
    corpus = list(caption_corpus(seed=1, n=300))
    assert corpus == list(caption_corpus(seed=1, n=300)) and len(corpus) == 300
    assert len(set(corpus)) > 200
