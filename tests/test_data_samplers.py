"""gn.data's samplers, ConcatDataset, IterableDataset and DataLoader's sampler and
batch_sampler arguments, against torch.utils.data where the result is deterministic
and by their properties where it is random."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import numpy as np
import pytest

import gpunet as gn

torch = pytest.importorskip("torch")
tdata = torch.utils.data
data = gn.data


def _plain(batch: Any) -> Any:
    """A batch of either library as nested Python lists and numbers."""
    if isinstance(batch, (tuple, list)):
        return [_plain(b) for b in batch]
    if isinstance(batch, dict):
        return {k: _plain(v) for k, v in batch.items()}
    if hasattr(batch, "numpy"):
        return batch.numpy().tolist()
    return batch


# --- deterministic samplers, against torch ---------------------------------------


def test_sequential_sampler_matches_torch() -> None:
    for source in (range(0), range(1), range(7), [5, 6, 7], np.zeros((4, 2))):
        ours, theirs = data.SequentialSampler(source), tdata.SequentialSampler(source)
        assert list(ours) == list(theirs) and len(ours) == len(theirs)
        assert all(type(i) is int for i in ours)
    s = data.SequentialSampler(range(3))
    assert list(s) == list(s) == [0, 1, 2]  # every pass the same
    assert isinstance(s, data.Sampler)


@pytest.mark.parametrize("n", [0, 1, 5, 9, 10])
@pytest.mark.parametrize("batch_size", [1, 3, 5, 12])
@pytest.mark.parametrize("drop_last", [False, True])
def test_batch_sampler_matches_torch(n: int, batch_size: int, drop_last: bool) -> None:
    ours = data.BatchSampler(data.SequentialSampler(range(n)), batch_size, drop_last)
    theirs = tdata.BatchSampler(tdata.SequentialSampler(range(n)), batch_size, drop_last)
    assert list(ours) == list(theirs)
    assert len(ours) == len(theirs)
    # over a plain iterable of keys (any sampler), the same
    keys = [10 * i for i in range(n)][::-1]
    assert list(data.BatchSampler(keys, batch_size, drop_last)) == list(
        tdata.BatchSampler(keys, batch_size, drop_last)
    )
    assert all(type(i) is int for b in ours for i in b)


def test_batch_sampler_honours_an_overridden_iter() -> None:
    class Evens(data.SequentialSampler):
        def __iter__(self) -> Any:
            return iter(range(0, len(self.data_source), 2))

    batches = list(data.BatchSampler(Evens(range(9)), 2, drop_last=False))
    assert batches == [[0, 2], [4, 6], [8]]


@pytest.mark.parametrize(
    ("batch_size", "drop_last", "named"),
    [
        (0, False, "batch_size"),
        (-1, False, "batch_size"),
        (True, False, "batch_size"),
        (2.0, False, "batch_size"),
        (2, 1, "drop_last"),
    ],
)
def test_batch_sampler_bad_arguments_raise_value_error_as_torch(
    batch_size: Any, drop_last: Any, named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        tdata.BatchSampler(range(4), batch_size, drop_last)
    with pytest.raises(ValueError, match=named):
        data.BatchSampler(range(4), batch_size, drop_last)


# --- ConcatDataset ---------------------------------------------------------------


def test_concat_dataset_matches_torch() -> None:
    parts = [[1, 2, 3], [], [4], [5, 6]]
    ours, theirs = data.ConcatDataset(parts), tdata.ConcatDataset(parts)
    assert len(ours) == len(theirs) == 6
    assert ours.cumulative_sizes == theirs.cumulative_sizes == [3, 3, 4, 6]
    assert ours.datasets == parts and ours.datasets is not parts
    n = len(ours)
    assert [ours[i] for i in range(-n, n)] == [theirs[i] for i in range(-n, n)]
    with pytest.raises(IndexError):
        theirs[n]
    with pytest.raises(IndexError):
        ours[n]
    with pytest.raises(ValueError, match="absolute value"):
        theirs[-n - 1]
    with pytest.raises(ValueError, match="absolute value"):
        ours[-n - 1]
    assert list(ours) == [1, 2, 3, 4, 5, 6]  # iteration stops at IndexError


def test_concat_dataset_refuses_what_torch_refuses() -> None:
    for lib in (tdata, data):
        with pytest.raises(AssertionError, match="empty"):
            lib.ConcatDataset([])

        class Stream(lib.IterableDataset):  # type: ignore[name-defined,misc]
            def __iter__(self) -> Any:
                return iter([1])

        with pytest.raises(AssertionError, match="IterableDataset"):
            lib.ConcatDataset([[1], Stream()])


def test_concat_of_tensor_datasets_through_a_loader_and_add() -> None:
    a = np.arange(6.0).reshape(3, 2)
    b = np.arange(6.0, 10.0).reshape(2, 2)
    ours = data.TensorDataset(a, np.arange(3)) + data.TensorDataset(b, np.arange(3, 5))
    assert isinstance(ours, data.ConcatDataset) and len(ours) == 5
    theirs = tdata.ConcatDataset(
        [
            tdata.TensorDataset(torch.tensor(a), torch.arange(3)),
            tdata.TensorDataset(torch.tensor(b), torch.arange(3, 5)),
        ]
    )
    got = [_plain(x) for x in data.DataLoader(ours, batch_size=2)]
    want = [_plain(x) for x in tdata.DataLoader(theirs, batch_size=2)]
    assert got == want and len(got) == 3


# --- IterableDataset -------------------------------------------------------------


def _streams(n: int, sized: bool) -> tuple[Any, Any]:
    def make(base: Any) -> Any:
        class Stream(base):  # type: ignore[misc,valid-type]
            def __iter__(self) -> Any:
                return iter([(float(i), i * i) for i in range(n)])

        if sized:
            Stream.__len__ = lambda self: n  # type: ignore[method-assign]
        return Stream()

    return make(data.IterableDataset), make(tdata.IterableDataset)


@pytest.mark.parametrize("n", [0, 1, 7, 8])
@pytest.mark.parametrize("batch_size", [None, 1, 3, 4])
@pytest.mark.parametrize("drop_last", [False, True])
def test_iterable_dataset_batches_match_torch(n: int, batch_size: Any, drop_last: bool) -> None:
    if batch_size is None and drop_last:
        return  # refused by both; tested below
    ours, theirs = _streams(n, sized=True)
    a = data.DataLoader(ours, batch_size=batch_size, drop_last=drop_last)
    b = tdata.DataLoader(theirs, batch_size=batch_size, drop_last=drop_last)
    got, want = [_plain(x) for x in a], [_plain(x) for x in b]
    assert got == want
    assert len(a) == len(b)
    if batch_size is not None:
        expected = n // batch_size if drop_last else -(-n // batch_size)
        assert len(got) == expected


def test_iterable_dataset_collate_fn_and_reading_twice() -> None:
    ours, theirs = _streams(5, sized=False)
    a = data.DataLoader(ours, batch_size=2, collate_fn=lambda s: [x for x, _ in s])
    b = tdata.DataLoader(theirs, batch_size=2, collate_fn=lambda s: [x for x, _ in s])
    assert list(a) == list(b) == [[0.0, 1.0], [2.0, 3.0], [4.0]]
    assert list(a) == list(a)  # a new pass starts the stream again
    with pytest.raises(TypeError):
        len(a)  # no __len__: a TypeError, as torch (fit counts it as an unknown length)
    with pytest.raises(TypeError):
        len(b)
    assert isinstance(ours, data.Dataset)


def test_fit_streams_an_iterable_dataset_loader() -> None:
    class Rows(data.IterableDataset):
        def __iter__(self) -> Any:
            rng = np.random.default_rng(0)
            for i in range(24):
                yield rng.random(4).astype("float32"), i % 3

    gn.manual_seed(0)
    model = gn.Sequential([gn.layers.Dense(3, activation="softmax", input_shape=(4,))])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    loss = model.fit(data.DataLoader(Rows(), batch_size=8), epochs=2, verbose=0).history["loss"]
    assert len(loss) == 2 and all(np.isfinite(loss))


@pytest.mark.parametrize(
    ("option", "kwargs"),
    [
        ("shuffle", {"shuffle": True}),
        ("sampler", {"sampler": [0, 1]}),
        ("batch_sampler", {"batch_sampler": [[0, 1]]}),
    ],
)
def test_iterable_dataset_refuses_shuffle_and_samplers(option: str, kwargs: Any) -> None:
    ours, theirs = _streams(3, sized=True)
    with pytest.raises(ValueError, match=f"expected unspecified {option} option"):
        tdata.DataLoader(theirs, **kwargs)
    with pytest.raises(ValueError, match=f"expected unspecified {option} option"):
        data.DataLoader(ours, **kwargs)


# --- DataLoader's sampler and batch_sampler ---------------------------------------


def _pair(n: int = 10) -> tuple[Any, Any, np.ndarray, np.ndarray]:
    x = np.arange(2.0 * n).reshape(n, 2)
    y = np.arange(n) * 10
    ours = data.TensorDataset(x, y)
    theirs = tdata.TensorDataset(torch.tensor(x), torch.tensor(y))
    return ours, theirs, x, y


@pytest.mark.parametrize("drop_last", [False, True])
def test_loader_with_a_sampler_matches_torch(drop_last: bool) -> None:
    ours, theirs, _, _ = _pair()
    order = [9, 0, 3, 3, 7, 1, 4]
    a = data.DataLoader(ours, batch_size=3, sampler=order, drop_last=drop_last)
    b = tdata.DataLoader(theirs, batch_size=3, sampler=order, drop_last=drop_last)
    assert [_plain(x) for x in a] == [_plain(x) for x in b]
    assert len(a) == len(b) == (2 if drop_last else 3)
    assert a.sampler is order
    # unbatched: samples one by one in the sampler's order
    unbatched = data.DataLoader(ours, batch_size=None, sampler=order)
    assert [int(y) for _, y in unbatched] == [10 * i for i in order]
    assert len(unbatched) == len(order)


def test_loader_with_a_batch_sampler_matches_torch() -> None:
    ours, theirs, _, _ = _pair()
    batches = [[1, 2], [9], [0, 5, 5, 3]]
    a = data.DataLoader(ours, batch_sampler=batches)
    b = tdata.DataLoader(theirs, batch_sampler=batches)
    assert [_plain(x) for x in a] == [_plain(x) for x in b]
    assert len(a) == 3 and a.batch_size is None and a.drop_last is False
    bs = data.BatchSampler(data.SequentialSampler(ours), 4, drop_last=True)
    got = [_plain(yb) for _, yb in data.DataLoader(ours, batch_sampler=bs)]
    assert got == [[0, 10, 20, 30], [40, 50, 60, 70]]


def test_loader_with_a_sampler_and_custom_collate() -> None:
    ours, theirs, _, _ = _pair()
    order = [4, 2, 8]

    def collate(samples: list[Any]) -> list[int]:
        return [int(y) for _, y in samples]

    a = data.DataLoader(ours, batch_size=2, sampler=order, collate_fn=collate)
    b = tdata.DataLoader(theirs, batch_size=2, sampler=order, collate_fn=collate)
    assert list(a) == list(b) == [[40, 20], [80]]


def test_default_samplers_are_torchs() -> None:
    ours, _, _, _ = _pair()
    plain = data.DataLoader(ours, batch_size=4)
    assert isinstance(plain.sampler, data.SequentialSampler)
    assert isinstance(plain.batch_sampler, data.BatchSampler)
    assert plain.batch_sampler.batch_size == 4
    shuffled = data.DataLoader(ours, batch_size=4, shuffle=True)
    assert isinstance(shuffled.sampler, data.RandomSampler)
    assert data.DataLoader(ours, batch_size=None).batch_sampler is None


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"sampler": [0], "shuffle": True}, "mutually exclusive with shuffle"),
        ({"batch_sampler": [[0]], "batch_size": 2}, "got batch_size=2"),
        ({"batch_sampler": [[0]], "shuffle": True}, "got shuffle=True"),
        ({"batch_sampler": [[0]], "sampler": [0]}, "got sampler=\\[0\\]"),
        ({"batch_sampler": [[0]], "drop_last": True}, "got drop_last=True"),
        ({"batch_sampler": [[0]], "batch_size": None}, "got batch_size=None"),
        ({"batch_size": None, "drop_last": True}, "batch_size=None"),
    ],
)
def test_conflicting_loader_arguments(kwargs: dict[str, Any], named: str) -> None:
    ours, theirs, _, _ = _pair()
    with pytest.raises(ValueError):
        tdata.DataLoader(theirs, **kwargs)
    with pytest.raises(ValueError, match=named):
        data.DataLoader(ours, **kwargs)


def test_torch_positional_order() -> None:
    ours, _, _, _ = _pair()
    _, theirs, _, _ = _pair()
    args = (4, False, None, None, 0, None, False, True)  # ..., pin_memory, drop_last
    loader = data.DataLoader(ours, *args)
    assert loader.drop_last and len(loader) == len(tdata.DataLoader(theirs, *args)) == 2


# --- random samplers: properties ---------------------------------------------------


def test_random_sampler_is_a_fresh_permutation_each_pass() -> None:
    gn.manual_seed(0)
    s = data.RandomSampler(range(50))
    a, b = list(s), list(s)
    assert sorted(a) == sorted(b) == list(range(50)) and len(s) == 50
    assert a != b and a != list(range(50))
    assert all(type(i) is int for i in a)


def test_random_sampler_repeats_under_manual_seed() -> None:
    def draw() -> list[list[int]]:
        gn.manual_seed(123)
        return [
            list(data.RandomSampler(range(20))),
            list(data.RandomSampler(range(20), replacement=True, num_samples=30)),
            list(data.SubsetRandomSampler([3, 5, 7, 9])),
            list(data.WeightedRandomSampler([1.0, 2.0, 3.0], 10)),
        ]

    first, second = draw(), draw()
    assert first == second
    gn.manual_seed(124)
    assert list(data.RandomSampler(range(20))) != first[0]


def test_random_sampler_draws_the_loaders_shuffle_stream() -> None:
    # the default shuffle of a DataLoader is a RandomSampler on gpunet's shuffle stream
    ours, _, _, y = _pair(12)
    gn.manual_seed(5)
    expected = gn.random.generator("shuffle").permutation(12)
    gn.manual_seed(5)
    got = np.concatenate(
        [yb.numpy() for _, yb in data.DataLoader(ours, batch_size=5, shuffle=True)]
    )
    assert got.tolist() == y[expected].tolist()
    gn.manual_seed(5)
    assert list(data.RandomSampler(range(12))) == expected.tolist()


def test_random_sampler_seeded_generator() -> None:
    a = list(data.RandomSampler(range(30), generator=7))
    b = list(data.RandomSampler(range(30), generator=np.random.default_rng(7)))
    assert a == b and sorted(a) == list(range(30))
    s = data.RandomSampler(range(30), generator=7)
    assert list(s) == a and list(s) != a  # one generator, advancing pass by pass


def test_random_sampler_num_samples() -> None:
    gn.manual_seed(1)
    with_replacement = list(data.RandomSampler(range(5), replacement=True, num_samples=200))
    assert len(with_replacement) == 200 and set(with_replacement) == set(range(5))
    many = data.RandomSampler(range(4), num_samples=10)  # chained permutations, as torch
    drawn = list(many)
    assert len(many) == 10 and len(drawn) == 10
    assert sorted(drawn[:4]) == sorted(drawn[4:8]) == [0, 1, 2, 3]
    assert len(set(drawn[8:])) == 2
    few = list(data.RandomSampler(range(9), num_samples=4))
    assert len(few) == 4 and len(set(few)) == 4


def test_random_sampler_bad_arguments_as_torch() -> None:
    for lib in (tdata, data):
        with pytest.raises(TypeError, match="replacement"):
            lib.RandomSampler(range(3), replacement=1)
        with pytest.raises(ValueError, match="num_samples"):
            lib.RandomSampler(range(3), num_samples=0)
        with pytest.raises(ValueError, match="num_samples"):
            lib.RandomSampler(range(0))  # an empty source
        with pytest.raises(ValueError, match="num_samples"):
            lib.DataLoader([], shuffle=True)


def test_subset_random_sampler() -> None:
    indices = [2, 4, 6, 8, 10, 12]
    gn.manual_seed(3)
    s = data.SubsetRandomSampler(indices)
    passes = [list(s) for _ in range(4)]
    assert all(sorted(p) == indices for p in passes) and len(s) == 6
    assert len({tuple(p) for p in passes}) > 1  # reshuffled between passes
    ours, _, _, _ = _pair(14)
    loader = data.DataLoader(ours, batch_size=4, sampler=data.SubsetRandomSampler(indices))
    got = np.concatenate([yb.numpy() for _, yb in loader])
    assert sorted(got.tolist()) == [10 * i for i in indices] and len(loader) == 2


def test_weighted_random_sampler_respects_weights() -> None:
    weights = [0.1, 0.0, 0.3, 0.6]
    gn.manual_seed(0)
    n = 20_000
    s = data.WeightedRandomSampler(weights, n)
    counts = Counter(s)
    assert len(s) == n and sum(counts.values()) == n
    assert counts[1] == 0  # a zero weight is never drawn
    for i, w in enumerate(weights):
        # the binomial standard error is about 0.0035: 0.015 is over 4 of them
        assert abs(counts[i] / n - w) < 0.015, (i, counts[i] / n, w)
    # weights need not sum to one, and may be a tensor or an array
    scaled = Counter(data.WeightedRandomSampler(gn.tensor([1.0, 3.0]), 4000, generator=0))
    assert abs(scaled[1] / 4000 - 0.75) < 0.03


def test_weighted_random_sampler_without_replacement() -> None:
    gn.manual_seed(2)
    weights = np.array([5.0, 1.0, 0.0, 2.0, 1.0])
    for _ in range(20):
        drawn = list(data.WeightedRandomSampler(weights, 4, replacement=False))
        assert len(set(drawn)) == 4 and 2 not in drawn
    first = Counter(
        next(iter(data.WeightedRandomSampler(weights, 2, replacement=False))) for _ in range(3000)
    )
    assert abs(first[0] / 3000 - 5 / 9) < 0.04  # the first draw is by weight
    with pytest.raises(ValueError):
        list(data.WeightedRandomSampler(weights, 5, replacement=False))  # 4 non-zero weights


def test_weighted_random_sampler_bad_arguments() -> None:
    for lib in (tdata, data):
        with pytest.raises(ValueError, match="num_samples"):
            lib.WeightedRandomSampler([1.0, 2.0], 0)
        with pytest.raises(ValueError, match="num_samples"):
            lib.WeightedRandomSampler([1.0, 2.0], True)
        with pytest.raises(ValueError, match="replacement"):
            lib.WeightedRandomSampler([1.0, 2.0], 2, replacement=0)
        with pytest.raises(ValueError, match="1d"):
            lib.WeightedRandomSampler([[1.0, 2.0]], 2)
    for bad in ([1.0, -1.0], [0.0, 0.0], [1.0, float("nan")]):
        with pytest.raises(ValueError, match="weights"):
            data.WeightedRandomSampler(bad, 2)


def test_each_thread_seeds_its_own_sampler_stream() -> None:
    gn.manual_seed(9)
    expected = list(data.RandomSampler(range(40)))
    results: dict[int, list[int]] = {}

    def work(k: int) -> None:
        gn.manual_seed(9)
        for _ in range(50):  # interleave the threads' draws
            results[k] = list(data.RandomSampler(range(40)))
            gn.manual_seed(9)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[k] == expected for k in range(4))
