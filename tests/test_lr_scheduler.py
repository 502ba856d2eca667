"""``gn.optim.lr_scheduler`` against ``torch.optim.lr_scheduler``: the learning rate
of every parameter group after each step, state dicts, and the PyTorch MNIST
example's ``Adadelta`` + ``StepLR`` loop as written."""

from __future__ import annotations

import numpy as np
import pytest

import gpunet as gn

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

SCHEDULES = [
    ("StepLR", {"step_size": 3, "gamma": 0.5}),
    ("MultiStepLR", {"milestones": [2, 5, 6], "gamma": 0.3}),
    ("ExponentialLR", {"gamma": 0.9}),
    ("CosineAnnealingLR", {"T_max": 7, "eta_min": 0.01}),
    ("LambdaLR", {"lr_lambda": lambda epoch: 1.0 / (1 + epoch)}),
]


def _pair(lib, lrs=(0.1, 0.02)):
    if lib is gn:
        ps = [gn.nn.Parameter(gn.zeros(2)) for _ in lrs]
    else:
        ps = [torch.nn.Parameter(torch.zeros(2)) for _ in lrs]
    return lib.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(ps, lrs, strict=True)])


@pytest.mark.parametrize(("name", "kw"), SCHEDULES, ids=[s[0] for s in SCHEDULES])
def test_schedules_match_torch(name, kw):
    mine, ref = _pair(gn), _pair(torch)
    ours = getattr(gn.optim.lr_scheduler, name)(mine, **kw)
    theirs = getattr(torch.optim.lr_scheduler, name)(ref, **kw)
    for epoch in range(12):
        np.testing.assert_allclose(ours.get_last_lr(), theirs.get_last_lr(), rtol=1e-12,
                                   err_msg=f"{name} epoch {epoch}")  # fmt: skip
        assert [g["lr"] for g in mine.param_groups] == pytest.approx(
            [g["lr"] for g in ref.param_groups], rel=1e-12
        )
        mine.step(), ref.step()
        ours.step(), theirs.step()
    assert [g["initial_lr"] for g in mine.param_groups] == [0.1, 0.02]


def test_reduce_on_plateau_matches_torch():
    metrics = [1.0, 0.9, 0.95, 0.95, 0.91, 0.96, 0.97, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1]
    cases = [
        {"patience": 1},
        {"patience": 2, "factor": 0.5, "cooldown": 2, "min_lr": 0.004},
        {"mode": "max", "patience": 0, "threshold_mode": "abs", "threshold": 0.05},
    ]
    for kw in cases:
        mine, ref = _pair(gn), _pair(torch)
        ours = gn.optim.lr_scheduler.ReduceLROnPlateau(mine, **kw)
        theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(ref, **kw)
        for m in metrics:
            ours.step(m), theirs.step(m)
            np.testing.assert_allclose(ours.get_last_lr(), theirs.get_last_lr(), rtol=1e-12,
                                       err_msg=str(kw))  # fmt: skip


def test_state_dict_resumes_the_schedule_and_bad_arguments_are_named():
    opt = _pair(gn)
    sched = gn.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.1)
    for _ in range(3):
        sched.step()
    state = sched.state_dict()
    again = gn.optim.lr_scheduler.StepLR(_pair(gn), step_size=2, gamma=0.1)
    again.load_state_dict(state)
    sched.step(), again.step()
    assert again.get_last_lr() == sched.get_last_lr() == pytest.approx([0.001, 0.0002])
    with pytest.raises(gn.errors.InvalidParameterError, match="step_size must be an int >= 1"):
        gn.optim.lr_scheduler.StepLR(opt, step_size=0)
    with pytest.raises(gn.errors.InvalidParameterError, match="mode='median'"):
        gn.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="median")
    with pytest.raises(gn.errors.InvalidParameterError, match=r"needs a gn\.optim optimizer"):
        gn.optim.lr_scheduler.StepLR(object(), step_size=1)
    with pytest.raises(gn.errors.InvalidParameterError, match="Invalid rho"):
        gn.optim.Adadelta([gn.nn.Parameter(gn.zeros(1))], rho=1.5)


def test_pytorch_mnist_example_loop_runs_as_written():
    # pytorch/examples mnist/main.py's model, optimizer, scheduler and loops, on random
    # 28x28 "digits" whose class is the brightest quadrant, with the imports swapped
    from gpunet.optim.lr_scheduler import StepLR

    import gpunet as torch
    import gpunet.nn as nn
    import gpunet.nn.functional as F
    import gpunet.optim as optim

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 8, 3, 1)
            self.conv2 = nn.Conv2d(8, 16, 3, 1)
            self.dropout1 = nn.Dropout(0.25)
            self.dropout2 = nn.Dropout(0.5)
            self.fc1 = nn.Linear(2304, 32)
            self.fc2 = nn.Linear(32, 4)

        def forward(self, x):
            x = F.relu(self.conv1(x))
            x = F.relu(self.conv2(x))
            x = F.max_pool2d(x, 2)
            x = self.dropout1(x)
            x = torch.flatten(x, 1)
            x = F.relu(self.fc1(x))
            x = self.dropout2(x)
            return F.log_softmax(self.fc2(x), dim=1)

    gn.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 256)
    X = rng.random((256, 1, 28, 28)).astype("float32") * 0.5
    for i, c in enumerate(y):
        r, k = divmod(int(c), 2)
        X[i, 0, r * 14 : (r + 1) * 14, k * 14 : (k + 1) * 14] += 0.5
    loader = torch.data.DataLoader(torch.data.TensorDataset(torch.tensor(X), torch.tensor(y)),
                                   batch_size=32, shuffle=True)  # fmt: skip
    model = Net()
    optimizer = optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = StepLR(optimizer, step_size=1, gamma=0.7)
    for _ in range(3):
        model.train()
        for data, target in loader:
            optimizer.zero_grad()
            loss = F.nll_loss(model(data), target)
            loss.backward()
            optimizer.step()
        scheduler.step()
    model.eval()
    correct, test_loss = 0, 0.0
    with torch.no_grad():
        for data, target in loader:
            output = model(data)
            test_loss += F.nll_loss(output, target, reduction="sum").item()
            pred = output.argmax(dim=1, keepdim=True)
            correct += pred.eq(target.view_as(pred)).sum().item()
    assert correct / 256 > 0.9 and test_loss / 256 < 0.5
    assert scheduler.get_last_lr() == pytest.approx([0.7**3])
