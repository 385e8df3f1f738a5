"""The public API's shape: one spec, output-format objects that refuse what does not apply,
module casts, torchvision v2's sample rules, cached engines, no import cycle. Synthetic
images only (fast tier)."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision import tv_tensors
from torchvision.transforms import v2

import spike_encode as se
from spike_encode import EncodingSpec, LatencyEncode, latency_encode
from spike_encode.outputs import OUTPUT_FORMATS, output_format

IMAGES = (torch.rand((3, 2, 6, 5), generator=torch.Generator().manual_seed(0)) ** 6 * 255).round().to(torch.uint8)
IMAGES[:, 0, 0, 0] = 255  # every image has a bright pixel: it spikes


def _enc(**kwargs) -> LatencyEncode:
    return LatencyEncode(backend="torch", input_scale=200.0, **kwargs)


# ---------------------------------------------------------------- options and formats
OPTION_VALUES = {"time_first": True, "dtype": torch.float64, "flatten": False}


@pytest.mark.parametrize("output", list(OUTPUT_FORMATS))
@pytest.mark.parametrize("option", list(OPTION_VALUES))
def test_every_format_refuses_the_options_that_do_not_apply(output, option):
    kwargs = {option: OPTION_VALUES[option]}
    if option in OUTPUT_FORMATS[output].options():
        assert getattr(_enc(output=output, **kwargs).output_format, option) == OPTION_VALUES[option]
        return
    for make in (lambda: _enc(output=output, **kwargs), lambda: output_format(output, **kwargs),
                 lambda: latency_encode(IMAGES, output=output, **kwargs)):
        with pytest.raises(ValueError, match=f"output='{output}' does not take {option}="):
            make()


def test_a_format_object_carries_its_options_and_refuses_them_twice():
    enc = _enc(output=se.Dense(time_first=True, dtype=torch.bool))
    assert enc(IMAGES).shape == (200, 3, 60) and enc(IMAGES).dtype == torch.bool
    with pytest.raises(ValueError, match="in the object"):
        _enc(output=se.Dense(), time_first=True)
    with pytest.raises(ValueError, match="dtype must be a real torch.dtype"):
        se.Dense(dtype=torch.qint8)
    with pytest.raises(TypeError, match="time_first must be True or False"):
        se.Dense(time_first="yes")
    with pytest.raises(ValueError, match="output='movie' is not one of"):
        _enc(output="movie")


def test_formats_render_the_same_spikes():
    dense = _enc(output="dense")(IMAGES)
    assert torch.equal(_enc()(IMAGES).to_dense(), dense)
    times = _enc(output="times")(IMAGES)
    assert torch.equal(se.to_dense(se.times_to_sparse(times, 200)), dense)
    events = _enc(output="events")(IMAGES)
    assert torch.equal(se.to_dense(se.events_to_sparse(events, 0.1, 200, 60)), dense)
    frames = [se.tonic_frames(ev, (5, 6, 2), 200, 0.1) for ev in _enc(output="tonic")(IMAGES)]
    assert torch.equal(torch.stack(frames).reshape(3, 200, 60), dense)


def test_tonic_frames_cover_the_whole_window_even_for_a_silent_image():
    quiet = torch.ones((1, 6, 5), dtype=torch.uint8)  # 30 equal pixels sharing 1 nA: none fires
    events = LatencyEncode(backend="torch", input_scale=1.0, output="tonic")(quiet)
    assert len(events) == 0
    frames = se.tonic_frames(events, _enc().sensor_size(quiet.shape), 200, 0.1)
    assert frames.shape == (200, 1, 6, 5) and not frames.any()
    assert se.time_step_us(0.1) == 100
    bad = np.zeros(1, dtype=se.TONIC_DTYPE)
    bad["t"] = 50  # between two 100 µs steps
    with pytest.raises(ValueError, match="not a multiple of the 100 µs"):
        se.tonic_frames(bad, (5, 6, 1), 200, 0.1)
    bad["t"], bad["x"] = 0, 5
    with pytest.raises(ValueError, match="x=5, outside 0..4"):
        se.tonic_frames(bad, (5, 6, 1), 200, 0.1)


def test_dense_out_buffer_is_written_in_place_and_checked():
    buffer = torch.full((3, 200, 60), 7.0)
    result = latency_encode(IMAGES, input_scale=200.0, output="dense", out=buffer)
    assert result.data_ptr() == buffer.data_ptr() and torch.equal(buffer, _enc(output="dense")(IMAGES))
    with pytest.raises(ValueError, match="out has dtype torch.float64"):
        latency_encode(IMAGES, input_scale=200.0, output="dense", out=torch.zeros((3, 200, 60), dtype=torch.float64))
    with pytest.raises(ValueError, match="out= is a buffer for output='dense'"):
        latency_encode(IMAGES, out=buffer)


# ---------------------------------------------------------------- the spec
def test_the_spec_records_everything_that_decides_the_spikes():
    enc = _enc(channels="gray", lif_params={"TauM": 10.0})
    assert enc.spec == EncodingSpec.from_dict(enc.spec.as_dict()) and hash(enc.spec) == hash(EncodingSpec.from_dict(enc.spec.as_dict()))
    different = {"channels": _enc(), "lif": _enc(channels="gray"), "window": _enc(channels="gray", present_time_ms=30.0,
                                                                                  lif_params={"TauM": 10.0})}
    for name, other in different.items():
        assert other.spec.digest() != enc.spec.digest(), name
    diffs = se.spec.spec_differences(enc.spec, _enc().spec)
    assert ("channels", "gray", "all") in diffs and ("params.TauM", 10.0, 20.0) in diffs
    with pytest.raises(dataclasses.FrozenInstanceError):
        enc.spec.channels = "all"


def test_options_after_input_scale_are_keyword_only():
    with pytest.raises(TypeError, match="positional"):
        LatencyEncode(0.1, 20.0, 80.0, {"TauM": 10.0})
    with pytest.raises(TypeError, match="positional"):
        latency_encode(IMAGES, 0.1, 20.0, 80.0, None)


def test_latency_encode_reuses_its_engine():
    from spike_encode.functional import _cached_engine

    latency_encode(IMAGES, input_scale=123.0)
    before = _cached_engine.cache_info()
    latency_encode(IMAGES, input_scale=123.0)
    after = _cached_engine.cache_info()
    assert after.hits == before.hits + 1 and after.misses == before.misses
    assert _enc().engine is _enc().engine  # encoders of one spec share one engine


# ---------------------------------------------------------------- module behaviour
@pytest.mark.parametrize("cast, dtype", [(lambda m: m.double(), torch.float64), (lambda m: m.half(), torch.float16),
                                         (lambda m: m.to(torch.bfloat16), torch.bfloat16),
                                         (lambda m: nn.Sequential(m).to(torch.float64), torch.float64)])
def test_a_module_cast_sets_the_dense_dtype(cast, dtype):
    enc = _enc(output="dense")
    cast(enc)
    assert enc.dtype == dtype and enc(IMAGES).dtype == dtype
    enc.float()
    assert enc(IMAGES).dtype == torch.float32
    flags = _enc(output="dense", dtype=torch.bool)
    cast(flags)  # a bool raster is not a floating-point parameter: nn.Module leaves it
    assert flags(IMAGES).dtype == torch.bool
    sparse = _enc()
    cast(sparse)
    assert sparse(IMAGES).dtype == torch.float32 and sparse.device is None


def _spikes_of(image):
    return _enc()(image).to_dense()


def test_v2_sample_rules_encode_only_the_image():
    image = IMAGES[0]
    expected = _spikes_of(image)
    mask = tv_tensors.Mask(torch.zeros((6, 5), dtype=torch.uint8))
    boxes = tv_tensors.BoundingBoxes(torch.tensor([[0, 0, 2, 2]]), format="XYXY", canvas_size=(6, 5))
    label = np.array([[1, 2], [3, 4]])
    out = _enc()({"image": image, "mask": mask, "boxes": boxes, "label": label, "name": "a", "n": 3})
    assert torch.equal(out["image"].to_dense(), expected)
    assert out["mask"] is mask and out["boxes"] is boxes and out["label"] is label and out["name"] == "a"
    # an explicit image wins over a plain tensor before it; nested structures keep their types
    first, (second, third) = _enc()((torch.ones(3), (tv_tensors.Image(image), [mask])))
    assert torch.equal(first, torch.ones(3)) and torch.equal(second.to_dense(), expected) and third == [mask]
    pil = Image.fromarray(image[0].numpy())
    spikes, scalar = _enc()((pil, np.array(3)))
    assert int(scalar) == 3 and torch.equal(spikes.to_dense(), _spikes_of(image[0]))
    with pytest.raises(TypeError, match="got BoundingBoxes, Mask"):
        _enc()((mask, boxes))


def test_v2_compose_with_a_mask_and_boxes_passes_them_through():
    pipeline = v2.Compose([v2.ToImage(), _enc()])
    mask = tv_tensors.Mask(torch.ones((6, 5), dtype=torch.uint8))
    spikes, target = pipeline(Image.fromarray(IMAGES[1, 0].numpy()), {"masks": mask, "labels": torch.tensor([1])})
    assert spikes.shape == (200, 30) and target["masks"] is mask


# ---------------------------------------------------------------- structure
def _imports(path: Path, package: Path) -> set[str]:
    """spike_encode modules a file imports, function-level imports included."""
    name = ".".join(path.relative_to(package.parent).with_suffix("").parts).removesuffix(".__init__")
    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            parts = base[: len(base) - node.level + 1] + (node.module.split(".") if node.module else [])
            for i in range(2, len(parts) + 1):  # importing a.b.c imports a.b first
                found.add(".".join(parts[:i]))
            for alias in node.names:
                found.add(".".join([*parts, alias.name]))
        elif isinstance(node, (ast.Import, ast.ImportFrom)) and not getattr(node, "level", 0):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found |= {n for n in names if n.startswith("spike_encode")}
    return found


def test_no_module_imports_in_a_circle():
    package = Path(se.__file__).parent
    files = {".".join(p.relative_to(package.parent).with_suffix("").parts).removesuffix(".__init__"): p
             for p in package.rglob("*.py")}
    graph = {name: {m for m in _imports(path, package) if m in files and m != name} for name, path in files.items()}
    # a package's __init__ re-exporting its own modules is not a cycle of theirs
    graph = {n: {m for m in deps if not (files[m].name == "__init__.py" and n.startswith(m + "."))}
             for n, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(dep):] + [dep]))
            if dep not in state:
                visit(dep, [*trail, dep])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_an_ndarray_is_read_channels_last_as_v2_to_image_reads_it():
    hwc = IMAGES[0].permute(1, 2, 0).numpy()  # (6, 5, 2)
    assert torch.equal(_enc()(hwc).to_dense(), _spikes_of(IMAGES[0]))
    assert torch.equal(_enc()(v2.ToImage()(hwc)).to_dense(), _spikes_of(IMAGES[0]))
    stack = IMAGES.permute(0, 2, 3, 1).numpy()  # (B, H, W, C)
    assert torch.equal(_enc()(stack).to_dense(), _enc()(IMAGES).to_dense())
    assert torch.equal(_enc()(IMAGES[0, 0].numpy()).to_dense(), _spikes_of(IMAGES[0, 0]))  # (H, W)


def test_only_public_torch_and_torchvision_apis_are_used():
    import re

    private = re.compile(r"\btorch(vision)?\.(\w+\.)*_(?!_)\w+|_index_sampler|_parse_to|\bcheck_type\b")
    package = Path(se.__file__).parent
    uses = [f"{path.relative_to(package)}:{n}: {line.strip()}" for path in sorted(package.rglob("*.py"))
            for n, line in enumerate(path.read_text().splitlines(), 1) if private.search(line.split("#")[0])]
    assert uses == []
