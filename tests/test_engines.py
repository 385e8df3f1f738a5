"""The fast engine equals the float32 step-by-step loop for any parameters, not just the golden ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spike_encode import EncoderParams, EncodingSpec, LIFParams
from spike_encode.currents import InputCurrents
from spike_encode.engines import simulate_exact, simulate_steps
from spike_encode.engines.lif import LIFConstants, lif_alpha
from spike_encode.engines.torch_engine import first_crossings
from spike_encode.inputs import normalised_currents


def digit_like(n: int, seed: int) -> torch.Tensor:
    """``n`` synthetic uint8 ``(1, 28, 28)`` images, four in five pixels dark, as MNIST's."""
    rng = torch.Generator().manual_seed(seed)
    pixels = torch.randint(1, 256, (n, 1, 28, 28), generator=rng, dtype=torch.uint8)
    return pixels * (torch.rand((n, 1, 28, 28), generator=rng) < 0.2)


def assert_same_spikes(currents, params):
    fast, slow = simulate_exact(currents, params), simulate_steps(currents, params)
    assert fast.shape == slow.shape
    for name in ("sample", "step", "neuron"):
        assert torch.equal(getattr(fast, name), getattr(slow, name)), name
    return fast


def random_params(rng: np.random.Generator) -> EncoderParams:
    dt = float(rng.choice([0.01, 0.05, 0.1, 0.25, 0.5]))
    vrest = float(rng.uniform(-75, -55))
    vthresh = vrest + float(rng.uniform(3, 25))
    lif = LIFParams(C=float(rng.uniform(0.05, 1.0)), TauM=float(rng.uniform(2, 50)), Vrest=vrest,
                    Vreset=vrest - float(rng.uniform(0, 10)), Vthresh=vthresh,
                    Ioffset=float(rng.uniform(-0.01, 0.01)),
                    TauRefrac=float(rng.choice([0.0, 1.0, 2.0, 5.0, 100.0])))
    # scale so that a bright MNIST pixel (about 1/100 of an image) drives 1-80 mV past threshold
    drive = vthresh - vrest + float(rng.uniform(1, 80))
    input_scale = 100 * drive / (lif.TauM / lif.C)
    steps = min(800, max(20, int(lif.TauM * float(rng.uniform(0.5, 3.0)) / dt)))
    return EncoderParams(dt=dt, present_time_ms=dt * steps, input_scale=input_scale, lif=lif)


@pytest.mark.slow  # reads MNIST
@pytest.mark.parametrize("seed", range(12))
def test_fast_engine_equals_step_loop_for_random_parameters(seed, mnist_test, cpu_path):
    rng = np.random.default_rng(seed)
    params = random_params(rng)
    images = mnist_test[0][rng.choice(10000, 64, replace=False)]
    currents = normalised_currents(images.reshape(64, -1), params.input_scale)
    fast = assert_same_spikes(currents, params)
    assert len(fast) > 0, f"parameters {params} fire nothing: the comparison proves little"
    # uint8 images make their currents chunk by chunk (in the compiled loop, or NumPy): the same spikes
    from_pixels = simulate_exact(InputCurrents(images, EncodingSpec(params, input_rule="sum")), params)
    assert torch.equal(from_pixels.indices(), fast.indices())


def test_fast_engine_equals_step_loop_on_random_float_images(cpu_path):
    rng = torch.Generator().manual_seed(0)
    images = torch.rand((32, 3, 16, 16), generator=rng) ** 3  # float input, many channels
    params = EncoderParams(dt=0.1, present_time_ms=40.0, input_scale=400.0, lif=LIFParams(TauRefrac=2.0))
    fast = assert_same_spikes(normalised_currents(images.reshape(32, -1), params.input_scale), params)
    assert (torch.bincount(fast.sample * 768 + fast.neuron) > 1).any(), "no neuron fired twice"


def test_currents_at_the_edge_of_threshold_are_exact(cpu_path):
    # alphas densely around the value whose exact crossing falls on a step boundary: the
    # closed form alone is wrong for some of them; the float32 recurrence decides.
    params = EncoderParams()
    c = LIFConstants.build(params, "cpu")
    e, v0, vt = params.exp_tc, params.lif.Vreset, params.lif.Vthresh
    targets = []
    for n in (5, 37, 150, 199):
        alpha_star = (vt - v0 * e**n) / (1 - e**n)
        targets.append(alpha_star)
    alphas = torch.tensor(targets, dtype=torch.float32).repeat_interleave(2001)
    offsets = torch.arange(-1000, 1001).repeat(len(targets))
    alphas = torch.nextafter(alphas, torch.tensor(np.inf, dtype=torch.float32))  # touch the ulps
    alphas = alphas + offsets.float() * torch.finfo(torch.float32).eps * alphas.abs()
    currents = ((alphas - params.lif.Vrest) / params.r_membrane).reshape(1, -1)
    currents = torch.where(lif_alpha(currents, c) > v0, currents, torch.zeros_like(currents))
    assert_same_spikes(currents, params)


def test_first_crossing_of_silent_and_saturated_neurons():
    params = EncoderParams()
    c = LIFConstants.build(params, "cpu")
    alpha = torch.tensor([-60.0, -55.0, -50.0, 1e6], dtype=torch.float32)
    index, steps = first_crossings(alpha, params, c)
    assert index.tolist() == [3] and steps.tolist() == [1]


@pytest.mark.slow  # reads MNIST
@pytest.mark.parametrize("lif", [
    LIFParams(Vreset=-45.0, TauRefrac=1.0),   # reset above threshold: fires whenever refractoriness ends
    LIFParams(TauM=1e12),                      # ExpTC rounds to 1 in float32
])
def test_parameters_outside_the_closed_form_fall_back_to_stepping(lif, mnist_test):
    params = EncoderParams(lif=lif)
    currents = normalised_currents(mnist_test[0][:8].reshape(8, -1), params.input_scale)
    assert_same_spikes(currents, params)


@pytest.mark.slow  # reads MNIST
def test_neurons_without_input_fire_when_ioffset_drives_them(mnist_test, cpu_path):
    # Ioffset * Rmembrane = 30 mV drives every neuron, zero pixels included, to threshold in 81 steps
    params = EncoderParams(lif=LIFParams(Ioffset=0.3, TauRefrac=3.0))
    currents = normalised_currents(mnist_test[0][:6].reshape(6, -1), params.input_scale)
    fast = assert_same_spikes(currents, params)
    from_pixels = simulate_exact(InputCurrents(mnist_test[0][:6], EncodingSpec(params, input_rule="sum")), params)
    assert torch.equal(from_pixels.indices(), fast.indices())
    silent_pixels = (currents == 0).nonzero()
    fired = set(zip(fast.sample.tolist(), fast.neuron.tolist()))
    assert all((int(s), int(n)) in fired for s, n in silent_pixels[:50])


def test_long_step_by_step_runs_show_progress_and_short_ones_do_not(monkeypatch, capsys):
    from spike_encode.engines import stepper

    currents = torch.full((2, 5), 20.0)
    stepper.simulate_steps(currents, EncoderParams())
    assert "simulating steps" not in capsys.readouterr().err
    monkeypatch.setattr(stepper, "PROGRESS_NEURON_STEPS", 100)
    ev = stepper.simulate_steps(currents, EncoderParams())
    assert "simulating steps" in capsys.readouterr().err and len(ev) == 10


@pytest.fixture
def torch_threads():
    """Set torch's intra-op thread count for a test; restored afterwards."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.mark.parametrize("uint32_samples", [3, 0], ids=["uint32 keys, chunks of 3 samples", "int64 keys"])
def test_a_batch_split_into_chunks_or_blocks_gives_the_step_loops_spikes(uint32_samples, monkeypatch, torch_threads,
                                                                          cpu_path):
    from spike_encode.engines import parallel, torch_engine
    from spike_encode.events import KeyLayout

    torch_threads(2)
    monkeypatch.setattr(parallel, "MIN_CHUNK_ELEMENTS", 1)
    monkeypatch.setattr(torch_engine, "BLOCK_ELEMENTS", 1)  # the compiled loop's threads take a row at a time
    monkeypatch.setattr(KeyLayout, "uint32_samples", property(lambda self: uint32_samples))
    rng = np.random.default_rng(7)
    for seed, params in enumerate((EncoderParams(), random_params(rng), random_params(rng))):
        images = digit_like(20, seed)
        assert_same_spikes(normalised_currents(images.reshape(20, -1), params.input_scale), params)


def test_two_threads_give_one_threads_spikes(torch_threads, cpu_path):
    params = EncoderParams(lif=LIFParams(TauRefrac=2.0))  # neurons fire repeatedly
    currents = normalised_currents(digit_like(1000, 0).reshape(1000, -1), params.input_scale)
    torch_threads(1)
    one = simulate_exact(currents, params)
    torch_threads(2)
    two = simulate_exact(currents, params)
    assert len(one) > 100_000
    for name in ("sample", "step", "neuron"):
        assert torch.equal(getattr(one, name), getattr(two, name)), name


@pytest.mark.parametrize("threads", [1, 2])
def test_batches_in_a_row_never_share_or_mix_their_spikes(threads, torch_threads, cpu_path):
    """The compiled loop keeps its output arrays for the thread's next batch: batches of other
    sizes, far more spikes (the arrays grow) and a held result must all come out unchanged."""
    torch_threads(threads)
    sparse, repeating = EncoderParams(), EncoderParams(lif=LIFParams(TauRefrac=0.5))  # about 40 spikes a neuron
    batches = [(digit_like(1000, 1), sparse), (digit_like(300, 2), repeating), (digit_like(20, 3), sparse),
               (digit_like(1000, 1), sparse)]
    held = []
    for images, params in batches:
        currents = normalised_currents(images.reshape(len(images), -1), params.input_scale)
        held.append((assert_same_spikes(currents, params), currents, params))
    for events, currents, params in held:  # still each its own batch's spikes
        again = simulate_steps(currents, params)
        assert all(torch.equal(getattr(events, f), getattr(again, f)) for f in ("sample", "step", "neuron"))
    assert len(held[1][0]) > 64 * 300  # more than the first guess of 64 spikes an image


def test_every_pixel_driven_with_some_too_weak_to_fire_in_a_one_spike_window(torch_threads, cpu_path):
    """Where each neuron fires at most once (the default long refractory period), neurons too
    weak to reach threshold are sorted out of the spikes: with every pixel of large images
    driven, after a small batch whose output arrays the compiled loop keeps for this thread."""
    torch_threads(1)
    params = EncoderParams()  # TauRefrac 100 ms > the 20 ms window: one spike at most
    assert_same_spikes(normalised_currents(digit_like(8, 5).reshape(8, -1), params.input_scale), params)
    rng = torch.Generator().manual_seed(6)
    pixels = torch.randint(1, 256, (40, 3 * 32 * 32), generator=rng).float() ** 4  # no zero: all driven
    events = assert_same_spikes(normalised_currents(pixels, 300.0), params)
    fired = torch.bincount(events.sample, minlength=40)
    assert (fired > 0).all() and (fired < 3 * 32 * 32).all(), "each image: some pixels fire, some do not"
    assert len(torch.unique(events.sample * 3072 + events.neuron)) == len(events), "a neuron fired twice"


@pytest.mark.parametrize("case", ["32,769 neurons", "over 32,768 steps"])
def test_indices_past_16_bits_survive_a_small_batch_before_them(case, torch_threads, cpu_path):
    """A larger image or a longer window after a small batch on the same thread (whose output
    arrays the compiled loop keeps) gets every index whole, past 16 bits too."""
    torch_threads(1)
    params = EncoderParams()
    small = normalised_currents(digit_like(50, 4).reshape(50, -1), params.input_scale)
    assert_same_spikes(small, params)  # leaves kept output arrays for this thread
    if case == "32,769 neurons":
        currents = torch.zeros(3, 32_769)
        currents[:, torch.arange(32_768, 0, -97)] = 0.3  # 338 pixels, the last neuron (32,768) among them
        top = "neuron"
    else:
        currents = torch.full((2, 4), 10.0)  # about a spike every 9 steps over 40,000 steps
        params = EncoderParams(present_time_ms=4000.0, lif=LIFParams(TauRefrac=0.5))
        top = "step"
    events = assert_same_spikes(currents, params)
    assert int(getattr(events, top).max()) > 32_767


@pytest.mark.parametrize("threads", [1, 2])
def test_a_batch_of_no_images_has_no_spikes(threads, cpu_path):
    """The engine takes what its callers give it: an empty batch (or images of no pixels) is
    an empty result of the right shape, not an error of the split over threads."""
    for shape in ((0, 784), (5, 0), (0, 0)):
        events = simulate_exact(torch.zeros(shape), EncoderParams(), threads=threads)
        assert len(events) == 0 and events.shape == (shape[0], EncoderParams().num_steps, shape[1])


def test_kept_output_arrays_stay_small(monkeypatch, torch_threads):
    pytest.importorskip("numba", reason="the compiled CPU loop needs numba (pip install 'spike_encode[fast]')")
    from spike_encode.engines import torch_engine

    torch_threads(2)
    monkeypatch.setattr(torch_engine, "KEPT_OUTPUT_SPIKES", 50_000)
    currents = normalised_currents(digit_like(1000, 0).reshape(1000, -1), 80.0)
    assert_same_spikes(currents, EncoderParams())  # 2 x 60,000 spikes: too many to keep
    assert all(len(arrays) == 0 or len(arrays[0]) <= 50_000 for arrays in torch_engine._kept.outputs)
    assert_same_spikes(currents[:100], EncoderParams())


def test_threads_encoding_at_once_each_get_their_own_spikes(torch_threads, cpu_path):
    """Several of the user's threads share the engine's helper threads: each batch's spikes stay its own."""
    from concurrent.futures import ThreadPoolExecutor

    torch_threads(2)
    params = EncoderParams()
    batches = [normalised_currents(digit_like(n, seed).reshape(n, -1), params.input_scale)
               for seed, n in enumerate((1000, 700, 400))]
    expected = [simulate_steps(c, params) for c in batches]

    def encode(i: int) -> bool:
        return all(torch.equal(simulate_exact(batches[i % 3], params).neuron, expected[i % 3].neuron)
                   for _ in range(5))

    with ThreadPoolExecutor(3) as users:
        assert all(users.map(encode, range(9)))


def test_numpy_chunks_are_one_per_thread_and_a_tail_and_small_batches_stay_whole():
    from spike_encode.engines.parallel import sample_chunks, threads_for

    assert threads_for(1000, 784, 2) == 2 and threads_for(1000, 784, 16) == 7  # 100,000 neurons a thread
    assert threads_for(255, 784, 2) == 1 and threads_for(1, 784, 2) == 1
    # NumPy chunks hold the GIL part of the time: one range per thread and one tail range
    assert sample_chunks(1000, 784, 1 << 14, threads=2) == [(0, 469), (469, 938), (938, 1000)]
    assert sample_chunks(255, 784, 1 << 14, threads=2) == [(0, 255)]  # under 2 x 100,000 neurons
    assert sample_chunks(1000, 784, 1 << 14, threads=1) == [(0, 1000)]
    many = sample_chunks(1000, 784, 3, threads=2)  # none above 3 samples
    assert many[0][0] == 0 and many[-1][1] == 1000 and max(b - a for a, b in many) <= 3
    assert all(b == c for (_, b), (c, _) in zip(many, many[1:]))


def test_threads_taking_blocks_from_one_counter_share_the_rows_and_one_starting_late_takes_fewer():
    """Two calls of the compiled loop on one counter, the second started once half the rows
    are taken (a helper slow to wake): every block once, the late one fewer, and their spikes
    placed together are one call's."""
    pytest.importorskip("numba", reason="the compiled CPU loop needs numba (pip install 'spike_encode[fast]')")
    import threading

    from spike_encode.engines import atomics, compiled, torch_engine

    params, rows, block = EncoderParams(), 4000, 4
    given = normalised_currents(digit_like(rows, 9).reshape(rows, -1), params.input_scale).numpy()
    pixels = np.empty((0, given.shape[1]), np.uint8)
    constants = torch_engine._kernel_constants(params)

    def run(word, block, row_spikes):
        taken = np.empty(-(-rows // block), np.int64)
        steps, neurons, _, blocks, status, _ = compiled.rows_spikes(
            pixels, given, False, np.float32(1), *constants, word, block, row_spikes, taken, *torch_engine._new_outputs(8))
        assert status == compiled.OK
        return steps, neurons, taken[:blocks]

    def placed(parts, block, row_spikes):
        row_start = np.concatenate([[0], np.cumsum(row_spikes)])
        fields = np.empty((3, row_start[-1]), np.int64)
        for steps, neurons, taken in parts:
            compiled.place_blocks(steps, neurons, taken, block, row_spikes, row_start, *fields)
        return fields

    whole_spikes = np.empty(rows, np.int64)
    whole = placed([run(atomics.new_word(), rows, whole_spikes)], rows, whole_spikes)
    word, row_spikes, parts = atomics.new_word(), np.empty(rows, np.int64), {}
    first = threading.Thread(target=lambda: parts.update(first=run(word, block, row_spikes)))
    first.start()
    while atomics.load(word) < rows // 2 and first.is_alive():
        pass  # the first call runs without the GIL
    parts["late"] = run(word, block, row_spikes)
    first.join()
    taken = np.sort(np.concatenate([parts["first"][2], parts["late"][2]]))
    assert np.array_equal(taken, np.arange(0, rows, block)), "a block was taken twice, or never"
    assert len(parts["late"][2]) < len(parts["first"][2])
    np.testing.assert_array_equal(row_spikes, whole_spikes)
    np.testing.assert_array_equal(placed(list(parts.values()), block, row_spikes), whole)
    assert whole.shape[1] > 100_000


def test_the_engine_takes_torchs_thread_count_unless_told(monkeypatch, torch_threads, cpu_path):
    from spike_encode.engines import parallel, torch_engine

    asked = []
    real = parallel.threads_for

    def threads_for(*args):
        asked.append(args[-1])
        return real(*args)

    monkeypatch.setattr(parallel, "threads_for", threads_for)  # the NumPy path's chunks
    monkeypatch.setattr(torch_engine, "threads_for", threads_for)  # the compiled loop's threads
    currents = normalised_currents(digit_like(300, 0).reshape(300, -1), 80.0)
    torch_threads(1)  # as in a DataLoader worker
    simulate_exact(currents, EncoderParams())
    torch_threads(2)
    simulate_exact(currents, EncoderParams())
    simulate_exact(currents, EncoderParams(), threads=3)
    assert asked == [1, 2, 3]
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads must be a positive integer"):
            simulate_exact(currents, EncoderParams(), threads=bad)


def test_chunks_run_on_helper_threads_only_with_more_than_one_thread():
    import threading
    import time

    from spike_encode.engines.parallel import map_on_threads

    here = threading.current_thread().name
    for threads in (1, 2):
        names = []

        def work(i):
            time.sleep(0.02)  # long enough for every thread to take a chunk
            names.append(threading.current_thread().name)
            return i * i

        assert map_on_threads(work, 4, threads) == [0, 1, 4, 9]  # every result, once, in item order
        if threads == 1:
            assert set(names) == {here}
        else:
            assert here in names and any(n.startswith("spike_encode") for n in names)


def test_a_batch_runs_on_this_thread_while_another_callers_batch_holds_the_helpers():
    import threading

    from spike_encode.engines.parallel import map_on_threads

    release, started = threading.Event(), threading.Event()

    def blocking(i):
        started.set()
        release.wait(10)
        return i

    # another caller's batch keeps both its threads (its own and the helper) waiting
    other = threading.Thread(target=map_on_threads, args=(blocking, 2, 2))
    other.start()
    try:
        assert started.wait(10)
        names = []
        out = map_on_threads(lambda i: names.append(threading.current_thread().name) or i, 6, 2)
        assert other.is_alive(), "the batch waited for the other caller's batch"
        assert out == [0, 1, 2, 3, 4, 5] and set(names) == {threading.current_thread().name}  # this thread did it all
    finally:
        release.set()
        other.join(10)


def test_callers_on_several_threads_at_once_each_get_their_own_results():
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from spike_encode.engines.parallel import map_on_threads

    def batch(caller):
        def work(i):
            time.sleep(0.001)
            return (caller, i, threading.current_thread().name)
        return map_on_threads(work, 8, 3)

    with ThreadPoolExecutor(4) as users:
        results = list(users.map(batch, range(12)))
    for caller, out in enumerate(results):
        assert [(c, i) for c, i, _ in out] == [(caller, i) for i in range(8)]
    assert any(name == "spike_encode" for out in results for _, _, name in out)  # helpers took part
    from spike_encode.engines import parallel

    assert parallel._made <= 2, "more helpers than threads - 1 were made"


def test_a_caller_waiting_longer_than_its_spin_sleeps_until_the_helper_is_done():
    import threading
    import time

    from spike_encode.engines.parallel import compile_waits, map_on_threads

    compile_waits()  # as the encoder does when it is made: not timed below
    here, helping = threading.current_thread(), threading.Event()

    def work(i):
        if threading.current_thread() is here:
            helping.wait(10)  # until a helper has taken the other item
        else:
            helping.set()
            time.sleep(0.1)  # the caller runs out of items long before
        return i

    used = time.thread_time()
    assert map_on_threads(work, 2, 2) == [0, 1]
    assert helping.is_set()
    assert time.thread_time() - used < 0.03, "the caller kept a core busy while it waited"


def test_helpers_spin_between_batches_back_to_back_and_sleep_between_batches_far_apart():
    import threading
    import time

    from spike_encode.engines import parallel

    if parallel.SPIN_LOADS == 0:
        pytest.skip("no compiled atomics here (numba is not installed): helpers never spin")
    ran_on = set()

    def work(i):
        time.sleep(0.001)  # long enough for a helper to take an item
        ran_on.add(threading.current_thread())
        return i

    def helpers_of_last_batch():
        time.sleep(0.01)  # a helper reports its items just after it is idle again
        return [h for h in parallel._idle if h._thread in ran_on]

    parallel.map_on_threads(work, 4, 2)
    used = time.process_time()
    for _ in range(5):  # a training step of 30 ms after each batch
        time.sleep(0.03)
        ran_on.clear()
        parallel.map_on_threads(work, 4, 2)
    assert time.process_time() - used < 0.03, "a helper kept a core busy between batches"
    helpers = helpers_of_last_batch()
    assert helpers and all(h._spins == 0 for h in helpers), "a helper still spins after batches 30 ms apart"
    for _ in range(3):
        ran_on.clear()
        parallel.map_on_threads(work, 4, 2)
    helpers = helpers_of_last_batch()
    assert helpers and all(h._spins == parallel.SPIN_LOADS for h in helpers), "no spin for batches back to back"


def _encode_in_child(queue) -> None:
    torch.set_num_threads(2)
    # NumPy makes the currents: torch's own OpenMP threads may not survive a fork
    rng = np.random.default_rng(0)
    currents = rng.random((400, 784), dtype=np.float32) * (rng.random((400, 784)) < 0.2)
    queue.put(len(simulate_exact(torch.from_numpy(currents.astype(np.float32)), EncoderParams())))


@pytest.mark.slow  # spawns a process
def test_a_forked_child_encodes_on_threads_of_its_own(torch_threads):
    import multiprocessing

    torch_threads(2)
    simulate_exact(torch.rand(400, 784), EncoderParams())  # the parent's helpers exist before the fork
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_encode_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hangs: it waits on its parent's helper threads")
    assert child.exitcode == 0 and queue.get(timeout=5) > 0


@pytest.mark.parametrize("where", ["this thread", "helper thread"])
def test_an_error_in_a_chunk_reaches_the_caller(where):
    from spike_encode.engines.parallel import map_on_threads

    def work(i):
        if i == (0 if where == "this thread" else 1):
            raise ValueError(f"failed in the {where}")
        return i

    with pytest.raises(ValueError, match=f"failed in the {where}"):
        map_on_threads(work, 4, 2)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_the_lowest_failing_chunk_names_the_error_whatever_the_threads(threads):
    import time

    from spike_encode.engines.parallel import map_on_threads

    def work(i):
        if i in (1, 3):
            time.sleep(0.05 if i == 1 else 0)  # chunk 3 fails first
            raise ValueError(f"chunk {i}")
        return i

    for _ in range(3):
        with pytest.raises(ValueError, match="chunk 1"):
            map_on_threads(work, 5, threads)


@pytest.mark.slow  # spawns a process
def test_without_numba_the_numpy_path_encodes_the_same_spikes(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "no_numba.py"
    script.write_text(
        "import sys\n"
        "sys.modules['numba'] = None  # as if the 'fast' extra were not installed\n"
        "import torch\n"
        "from spike_encode import latency_encode\n"
        "from spike_encode.engines import atomics, compiled, parallel\n"
        "assert not compiled.available() and compiled.rows_spikes is None and not atomics.COMPILED\n"
        "assert parallel.map_on_threads(lambda i: i * i, 50, 3) == [i * i for i in range(50)]\n"
        "images = torch.load(sys.argv[1])\n"
        "torch.save(latency_encode(images, backend='torch').indices(), sys.argv[2])\n")
    images = digit_like(300, 4)
    torch.save(images, tmp_path / "images.pt")
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "images.pt"), str(tmp_path / "out.pt")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    from spike_encode import latency_encode

    assert torch.equal(torch.load(tmp_path / "out.pt"), latency_encode(images, backend="torch").indices())
