"""The modules added for public example programs through a real file and print():
each one's state_dict saved with gn.save (safetensors) and loaded into a fresh
module gives the same outputs, and print(module) shows its arguments as PyTorch's
repr does."""

from __future__ import annotations

import numpy as np
import pytest

import gpunet as gn

nn = gn.nn
rng = np.random.default_rng(0)
CASES = {
    "EmbeddingBag": (lambda: nn.EmbeddingBag(10, 4, mode="max", padding_idx=1),
                     lambda: (gn.tensor([1, 2, 5, 9, 3]), gn.tensor([0, 2])),
                     "EmbeddingBag(10, 4, mode='max')"),
    "Bilinear": (lambda: nn.Bilinear(3, 2, 4),
                 lambda: (gn.tensor(rng.standard_normal((5, 3)).astype("float32")),
                          gn.tensor(rng.standard_normal((5, 2)).astype("float32"))),
                 "Bilinear(in1_features=3, in2_features=2, out_features=4, bias=True)"),
    "ConvTranspose1d": (lambda: nn.ConvTranspose1d(3, 2, 3, stride=2),
                        lambda: (gn.tensor(rng.standard_normal((2, 3, 5)).astype("float32")),),
                        "ConvTranspose1d(3, 2, kernel_size=(3,), stride=(2,))"),
    "AdaptiveMaxPool2d": (lambda: nn.AdaptiveMaxPool2d((2, 3)),
                          lambda: (gn.tensor(rng.standard_normal((2, 3, 5, 7)).astype("float32")),),
                          "AdaptiveMaxPool2d(output_size=(2, 3))"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
def test_saved_and_loaded_through_a_file_and_printed(name, tmp_path):
    make, inputs, shown = CASES[name]
    gn.manual_seed(1)
    model = make()
    args = inputs()
    want = model(*args).numpy()
    gn.save(model.state_dict(), tmp_path / "m.safetensors")
    gn.manual_seed(2)  # other starting weights: the file must replace them
    again = make()
    again.load_state_dict(gn.load(tmp_path / "m.safetensors"))
    np.testing.assert_array_equal(again(*args).numpy(), want)
    assert shown in repr(model)
