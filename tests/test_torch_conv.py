"""gn.nn's convolution family against torch.nn with the same state_dict: forward,
input and weight gradients in float64, and the "Training a classifier" CNN."""

from __future__ import annotations

import numpy as np
import pytest

import gpunet as gn
from gpunet import nn
from gpunet.errors import InputValidationError, InvalidParameterError

torch = pytest.importorskip("torch")
RNG = np.random.default_rng(5)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _compare(ours, theirs, X, atol=1e-12):
    ours.load_state_dict(theirs.state_dict())
    x = gn.tensor(X, dtype="float64", requires_grad=True)
    y = ours(x)
    xt = torch.tensor(X, requires_grad=True)
    yt = theirs(xt)
    assert y.shape == tuple(yt.shape)
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), atol=atol)
    dY = RNG.normal(size=y.shape)
    (y * gn.tensor(dY, dtype="float64")).sum().backward()
    yt.backward(torch.tensor(dY))
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), atol=atol)
    ours_p, theirs_p = dict(ours.named_parameters()), dict(theirs.named_parameters())
    assert set(ours_p) == set(theirs_p)
    for k, p in theirs_p.items():
        np.testing.assert_allclose(ours_p[k].grad.numpy(), p.grad.numpy(), atol=atol, err_msg=k)


CONV2D = [
    {"kernel_size": 3},
    {"kernel_size": 3, "stride": 2, "padding": 1, "groups": 2},
    {"kernel_size": (2, 3), "padding": "same", "dilation": 2},
    {"kernel_size": 3, "padding": (2, 0), "bias": False},
    {"kernel_size": 1, "padding": "valid"},
]


@pytest.mark.parametrize("kw", CONV2D)
def test_conv2d_matches_torch(kw):
    X = RNG.normal(size=(2, 4, 7, 6))
    _compare(nn.Conv2d(4, 6, dtype="float64", **kw), torch.nn.Conv2d(4, 6, **kw).double(), X)


@pytest.mark.parametrize(
    "kw",
    [{"kernel_size": 3}, {"kernel_size": 3, "stride": 2, "padding": 2, "groups": 2},
     {"kernel_size": 4, "padding": "same", "dilation": 2, "bias": False}],
)  # fmt: skip
def test_conv1d_matches_torch(kw):
    X = RNG.normal(size=(2, 4, 9))
    _compare(nn.Conv1d(4, 6, dtype="float64", **kw), torch.nn.Conv1d(4, 6, **kw).double(), X)


@pytest.mark.parametrize(
    "kw",
    [{"kernel_size": 3}, {"kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1},
     {"kernel_size": 4, "stride": 2, "padding": 1, "groups": 2},
     {"kernel_size": (2, 3), "stride": (3, 2), "padding": (0, 1), "output_padding": (2, 1)},
     {"kernel_size": 3, "dilation": 2, "bias": False}],
)  # fmt: skip
def test_conv_transpose2d_matches_torch(kw):
    X = RNG.normal(size=(2, 4, 5, 4))
    ours = nn.ConvTranspose2d(4, 6, dtype="float64", **kw)
    theirs = torch.nn.ConvTranspose2d(4, 6, **kw).double()
    assert ours.weight.shape == tuple(theirs.weight.shape)
    _compare(ours, theirs, X)


@pytest.mark.parametrize(
    "ours,theirs",
    [(lambda: nn.MaxPool2d(2), lambda: torch.nn.MaxPool2d(2)),
     (lambda: nn.MaxPool2d(3, stride=2), lambda: torch.nn.MaxPool2d(3, stride=2)),
     (lambda: nn.AvgPool2d((2, 3)), lambda: torch.nn.AvgPool2d((2, 3))),
     (lambda: nn.MaxPool2d(3, 2, padding=1), lambda: torch.nn.MaxPool2d(3, 2, padding=1)),
     (lambda: nn.AvgPool2d(3, (1, 2), (1, 0)), lambda: torch.nn.AvgPool2d(3, (1, 2), (1, 0))),
     (lambda: nn.AdaptiveAvgPool2d(1), lambda: torch.nn.AdaptiveAvgPool2d(1)),
     (lambda: nn.Unflatten(1, (2, -1)), lambda: torch.nn.Unflatten(1, (2, 2))),
     (lambda: nn.Unflatten(-1, (3, 2)), lambda: torch.nn.Unflatten(-1, (3, 2)))],
)  # fmt: skip
def test_shape_modules_match_torch(ours, theirs):
    X = RNG.normal(size=(2, 4, 7, 6))
    module = ours()
    # the Keras pooling layers underneath compute averages in their float32 policy
    atol = 1e-6 if isinstance(module, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)) else 1e-12
    _compare(module, theirs().double(), X, atol=atol)


def test_batchnorm2d_matches_torch_train_and_eval():
    X = RNG.normal(size=(3, 4, 5, 2)) * 2 + 1
    ours, theirs = nn.BatchNorm2d(4, momentum=0.2), torch.nn.BatchNorm2d(4, momentum=0.2)
    with torch.no_grad():
        theirs.weight.uniform_(0.5, 1.5)
        theirs.bias.uniform_(-1, 1)
    theirs = theirs.double()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    _compare(ours, theirs, X, atol=1e-5)  # training mode: batch statistics
    for k in ("running_mean", "running_var"):  # unbiased variance, PyTorch's momentum
        np.testing.assert_allclose(
            ours.state_dict()[k].numpy(), theirs.state_dict()[k].numpy(), atol=1e-6
        )
    assert int(ours.num_batches_tracked.numpy()) == int(theirs.num_batches_tracked) == 1
    ours.eval()
    theirs.eval()
    got = ours(gn.tensor(X, dtype="float64")).numpy()
    np.testing.assert_allclose(got, theirs(torch.tensor(X)).detach().numpy(), atol=1e-5)


def test_training_a_classifier_cnn_loads_a_torch_state_dict():
    """The CNN of PyTorch's "Training a classifier" tutorial, on 32x32 RGB images."""

    def build(m):
        return m.Sequential(
            m.Conv2d(3, 6, 5), m.ReLU(), m.MaxPool2d(2, 2),
            m.Conv2d(6, 16, 5), m.ReLU(), m.MaxPool2d(2, 2),
            m.Flatten(), m.Linear(16 * 5 * 5, 120), m.ReLU(), m.Linear(120, 84), m.ReLU(),
            m.Linear(84, 10),
        )  # fmt: skip

    torch.manual_seed(0)
    theirs = build(torch.nn)
    ours = build(nn)
    assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == [
        (k, tuple(v.shape)) for k, v in theirs.state_dict().items()
    ]
    ours.load_state_dict(theirs.state_dict())
    X = RNG.normal(size=(4, 3, 32, 32)).astype("float32")
    expected = theirs(torch.tensor(X)).detach().numpy()
    np.testing.assert_allclose(ours(X).numpy(), expected, rtol=1e-4, atol=1e-5)


def test_default_initialization_is_pytorchs_bound():
    gn.utils.set_random_seed(0)
    conv = nn.Conv2d(8, 4, 3, groups=2)
    bound = 1 / np.sqrt(4 * 9)  # fan_in = in / groups * kh * kw
    w, b = conv.weight.numpy(), conv.bias.numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound
    assert np.abs(b).max() <= bound and w.std() > 0.4 * bound
    tconv = nn.ConvTranspose2d(4, 6, 3)  # fan_in from weight.size(1) = out / groups
    assert np.abs(tconv.weight.numpy()).max() <= 1 / np.sqrt(6 * 9)


@pytest.mark.parametrize(
    "make,match",
    [(lambda: nn.Conv2d(4, 6, 3, groups=4), "multiples of groups"),
     (lambda: nn.Conv2d(4, 6, 0), "kernel_size"),
     (lambda: nn.Conv2d(4, 6, 3, stride=2, padding="same"), "stride 1"),
     (lambda: nn.Conv2d(4, 6, 3, padding="full"), "padding"),
     (lambda: nn.ConvTranspose2d(4, 6, 3, stride=2, output_padding=2), "output_padding"),
     (lambda: nn.MaxPool2d(2, padding=2), "at most half"),
     (lambda: nn.AvgPool2d(2, ceil_mode=True), "ceil_mode"),
     (lambda: nn.AdaptiveAvgPool2d(0), "output_size must be an int >= 1")],
)  # fmt: skip
def test_bad_arguments_name_the_value(make, match):
    with pytest.raises(InvalidParameterError, match=match):
        make()


def test_bad_inputs_name_the_shape():
    with pytest.raises(InputValidationError, match="C = 4"):
        nn.Conv2d(4, 6, 3)(np.ones((1, 3, 8, 8), "float32"))
    with pytest.raises(InputValidationError, match="empty output"):
        nn.Conv2d(4, 6, 5)(np.ones((1, 4, 3, 8), "float32"))
    with pytest.raises(InputValidationError, match="do not multiply"):
        nn.Unflatten(1, (3, 3))(np.ones((1, 8), "float32"))
    with pytest.raises(InputValidationError, match="BatchNorm2d"):
        nn.BatchNorm2d(4)(np.ones((1, 3, 2, 2), "float32"))


@pytest.mark.parametrize(
    "module,shape",
    [(nn.Conv2d(3, 4, 3, stride=2, padding=1), (2, 3, 9, 8)),
     (nn.Conv1d(3, 4, 5, dilation=2, padding="same"), (2, 3, 11)),
     (nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1), (2, 3, 5, 4))],
)  # fmt: skip
def test_compute_output_shape_is_the_forward_shape(module, shape):
    got = module(np.ones(shape, "float32")).shape
    assert module.compute_output_shape(shape) == got
    assert module.compute_output_shape((None, *shape[1:])) == (None, *got[1:])


def test_one_sgd_step_of_a_conv_net_equals_torchs():
    def build(m):
        return m.Sequential(
            m.Conv2d(2, 4, 3, padding=1), m.BatchNorm2d(4), m.ReLU(), m.MaxPool2d(2),
            m.ConvTranspose2d(4, 3, 2, stride=2), m.AdaptiveAvgPool2d(1), m.Flatten(),
            m.Linear(3, 3),
        )  # fmt: skip

    torch.manual_seed(1)
    theirs, ours = build(torch.nn), build(nn)
    ours.load_state_dict(theirs.state_dict())
    X = RNG.normal(size=(4, 2, 6, 6)).astype("float32")
    y = np.array([0, 2, 1, 2])
    opt_t = torch.optim.SGD(theirs.parameters(), lr=0.5)
    opt_t.zero_grad()
    torch.nn.CrossEntropyLoss()(theirs(torch.tensor(X)), torch.tensor(y)).backward()
    opt_t.step()
    opt = gn.optim.SGD(ours.parameters(), lr=0.5)
    opt.zero_grad()
    nn.CrossEntropyLoss()(ours(X), gn.tensor(y)).backward()
    opt.step()
    mine = ours.state_dict()
    for k, v in theirs.state_dict().items():
        np.testing.assert_allclose(mine[k].numpy(), v.numpy(), rtol=1e-4, atol=1e-5, err_msg=k)
