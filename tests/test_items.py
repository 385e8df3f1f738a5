"""Items as torchvision and Hugging Face datasets give them: dicts and tuples with more than a
target. The image is found as torchvision v2 finds it (or named), the other fields batched
as default_collate does, through SpikeLoader, the collate functions and encode_dataset; and
items encoded one at a time, time-first, batch time-first."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import tv_tensors

from spike_encode import ItemKeyError, LatencyEncode
from spike_encode.data import (CompactSpikes, EncodeCollate, SpikeDataset, SpikeLoader, ToCompact,
                               collate_images, collate_spikes, encode_dataset)

COUNT = 6
IMAGES = torch.randint(1, 256, (COUNT, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))


def _pil(i: int) -> Image.Image:
    return Image.fromarray(IMAGES[i, 0].numpy(), mode="L")


class Items(torch.utils.data.Dataset):
    """``make(i)`` for each of the ``COUNT`` images (a list would do; a Dataset, as users have)."""

    def __init__(self, make):
        self.make = make

    def __len__(self) -> int:
        return COUNT

    def __getitem__(self, i: int):
        return self.make(i)


def _hugging_face(i: int) -> dict:
    return {"image": _pil(i), "label": i, "caption": f"digit {i}"}  # a datasets.Dataset row


@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.slow)])
def test_dict_items_come_out_as_dicts_with_spikes_in_place_of_the_images(workers, enc):
    batches = list(SpikeLoader(Items(_hugging_face), enc, batch_size=4, num_workers=workers))
    assert [list(b) for b in batches] == [["image", "label", "caption"]] * 2
    first = batches[0]
    assert torch.equal(first["image"].to_dense(), enc(IMAGES[:4]).to_dense())
    assert first["label"].tolist() == [0, 1, 2, 3]
    assert first["caption"] == ["digit 0", "digit 1", "digit 2", "digit 3"]


@pytest.mark.parametrize("make, key", [
    (lambda i: {"label": torch.tensor(i), "image": _pil(i)}, "image"),  # a PIL image beats a tensor before it
    (lambda i: {"label": torch.tensor(i), "pixels": tv_tensors.Image(IMAGES[i])}, "pixels"),
    (lambda i: {"id": f"n{i}", "pixels": IMAGES[i, 0].numpy(), "label": i}, "pixels"),  # first array
    (lambda i: (i, IMAGES[i]), 1),
])
def test_the_image_is_found_as_torchvision_v2_finds_it(make, key):
    batch = collate_images([make(i) for i in range(3)])
    assert torch.equal(batch[key], IMAGES[:3])


def test_image_key_names_the_image_where_the_rule_would_pick_another_tensor(enc):
    items = Items(lambda i: {"label": torch.tensor(i), "image": IMAGES[i]})  # the label is the first tensor
    with pytest.raises(ValueError, match=r"image 0 of the batch has shape \(\)"):
        collate_images([items[0]])
    batch = collate_images([items[0], items[1]], image_key="image")
    assert torch.equal(batch["image"], IMAGES[:2]) and batch["label"].tolist() == [0, 1]
    (out,) = list(SpikeLoader(items, enc, batch_size=COUNT, image_key="image"))
    assert torch.equal(out["image"].to_dense(), enc(IMAGES).to_dense())
    (out,) = list(DataLoader(items, batch_size=COUNT, collate_fn=EncodeCollate(enc, image_key="image")))
    assert torch.equal(out["image"].to_dense(), enc(IMAGES).to_dense())


def test_items_without_an_image_name_what_they_hold():
    with pytest.raises(TypeError, match=r"item 0 of the batch holds no image .*\{'label': int, 'text': str\}"):
        collate_images([{"label": 1, "text": "one"}])
    with pytest.raises(ItemKeyError, match=r"image_key='img' is not in item 0 of the batch: its keys are \['image', 'label'\]"):
        collate_images([{"image": IMAGES[0], "label": 1}], image_key="img")
    with pytest.raises(TypeError, match="item 0 of the batch is Tensor"):
        collate_images([IMAGES[0]])


def _detection(i: int) -> tuple:
    boxes = tv_tensors.BoundingBoxes(torch.zeros(i % 3, 4), format="XYXY", canvas_size=(8, 8))
    return (tv_tensors.Image(IMAGES[i]), i, tv_tensors.Mask(IMAGES[i, 0] > 128), boxes, np.array([i, -i]))


def test_extra_fields_are_batched_by_default_collate_or_kept_as_lists(enc):
    spikes, labels, masks, boxes, pairs = next(iter(SpikeLoader(Items(_detection), enc, batch_size=3)))
    assert torch.equal(spikes.to_dense(), enc(IMAGES[:3]).to_dense())
    assert labels.tolist() == [0, 1, 2]
    assert torch.equal(masks, IMAGES[:3, 0] > 128)  # stacked: (3, 8, 8)
    assert isinstance(boxes, list) and [len(b) for b in boxes] == [0, 1, 2]  # cannot stack: one per item
    assert pairs.tolist() == [[0, 0], [1, -1], [2, -2]]  # ndarrays: a tensor


def _keys_in_either_order(i: int) -> dict:
    row = _hugging_face(i)
    return row if i % 2 == 0 else dict(reversed(row.items()))  # rows built by different code


def test_dict_items_listing_their_keys_in_another_order_batch_as_default_collate_does(enc):
    spikes_batch = next(iter(SpikeLoader(Items(_keys_in_either_order), enc, batch_size=4)))
    images_batch = collate_images([_keys_in_either_order(i) for i in range(4)])
    for batch in (spikes_batch, images_batch):
        assert list(batch) == ["image", "label", "caption"]  # the first item's order
        assert batch["label"].tolist() == [0, 1, 2, 3] and batch["caption"][3] == "digit 3"
    assert torch.equal(spikes_batch["image"].to_dense(), enc(IMAGES[:4]).to_dense())
    with pytest.raises(ValueError, match="must have the same fields"):
        collate_images([_hugging_face(0), {"image": _pil(1), "label": 1}])


def test_encode_collate_and_collate_spikes_take_dict_items(enc):
    (out,) = list(DataLoader(Items(_hugging_face), batch_size=COUNT, collate_fn=EncodeCollate(enc)))
    assert torch.equal(out["image"].to_dense(), enc(IMAGES).to_dense()) and out["label"].tolist() == list(range(6))
    compact = [{"label": i, "image": CompactSpikes.from_sparse(enc(IMAGES[i]))} for i in range(COUNT)]
    batch = collate_spikes(compact)
    assert torch.equal(batch["image"].to_dense(), enc(IMAGES).to_dense()) and batch["label"].tolist() == list(range(6))


def test_encode_dataset_stores_the_target_of_pairs_dicts_and_longer_tuples(tmp_path, enc):
    for name, make, options in [("pairs", lambda i: (IMAGES[i], i), {}),
                                ("dicts", _hugging_face, {}),
                                ("named", lambda i: {"digit": i, "image": _pil(i)}, {"target_key": "digit"}),
                                ("detection", _detection, {})]:
        path = encode_dataset(Items(make), enc, tmp_path / f"{name}.spikes", batch_size=4, progress=False, **options)
        stored = SpikeDataset(path, enc)
        assert stored.targets.tolist() == list(range(COUNT)), name
        assert torch.equal(stored.get_batch(range(COUNT))[0].to_dense(), enc(IMAGES).to_dense()), name
    with pytest.raises(ItemKeyError, match=r"target_key='label' is not in the items: their keys are \['digit', 'image'\]"):
        encode_dataset(Items(lambda i: {"digit": i, "image": _pil(i)}), enc, tmp_path / "x.spikes", progress=False)


def _time_first_items() -> Items:
    encode = LatencyEncode(backend="torch", output="dense", time_first=True)
    return Items(lambda i: (encode(IMAGES[i]), i))  # one image: (T, N), no batch axis to put second


@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.slow)])
def test_dense_items_encoded_one_by_one_batch_time_first(workers):
    whole = LatencyEncode(backend="torch", output="dense", time_first=True)(IMAGES[:4])  # (T, 4, N)
    loader = DataLoader(_time_first_items(), batch_size=4, num_workers=workers,
                        collate_fn=functools.partial(collate_spikes, time_first=True))
    spikes, targets = next(iter(loader))
    assert spikes.shape == (200, 4, 64) and spikes.is_contiguous()
    assert torch.equal(spikes, whole) and targets.tolist() == [0, 1, 2, 3]
    batch_first, _ = collate_spikes([_time_first_items()[i] for i in range(4)])
    assert torch.equal(batch_first, whole.transpose(0, 1))


def test_time_first_is_refused_for_sparse_items_and_pixels_for_spikes(enc):
    with pytest.raises(ValueError, match="time_first=True stacks dense spikes"):
        collate_spikes([(ToCompact()(enc(IMAGES[0])), 0)], time_first=True)
    with pytest.raises(ValueError, match=r"dense spikes must be 0 or 1, but item 0 holds \d+ \(for images use collate_images\)"):
        collate_spikes([(IMAGES[0], 0)])


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[
    pytest.mark.slow, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to PyTorch")])])
def test_every_tensor_of_a_dict_batch_goes_to_the_encoders_device(device):
    enc = LatencyEncode(backend="torch", device=device)
    loader = SpikeLoader(Items(_hugging_face), enc, batch_size=COUNT, pin_memory=device == "cuda",
                         num_workers=2 if device == "cuda" else 0)
    (batch,) = list(loader)
    assert batch["image"].device.type == device and batch["label"].device.type == device
    assert batch["caption"] == [f"digit {i}" for i in range(COUNT)]
    assert torch.equal(batch["image"].cpu().to_dense(), LatencyEncode(backend="torch")(IMAGES).to_dense())
