"""pytorch/examples' word_language_model (model.py and the core of main.py) with
only the imports changed to gpunet's: it trains an LSTM language model with tied
weights, ``clip_grad_norm_`` and hand-written SGD, then samples with
``torch.multinomial``.

One line differs from main.py: ``p.data.add_(p.grad, alpha=-lr)`` is written
``p.add_(p.grad, alpha=-lr)`` under ``torch.no_grad()`` (the same update in
PyTorch), since a gpunet tensor's ``.data`` is its backend array, not a tensor.
"""
# ruff: noqa
# mypy: ignore-errors

import math
import pathlib

import numpy as np
import pytest

import gpunet as torch
import gpunet.nn as nn
import gpunet.nn.functional as F


class RNNModel(nn.Module):
    def __init__(self, rnn_type, ntoken, ninp, nhid, nlayers, dropout=0.5, tie_weights=False):
        super(RNNModel, self).__init__()
        self.ntoken = ntoken
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        if rnn_type in ["LSTM", "GRU"]:
            self.rnn = getattr(nn, rnn_type)(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        if tie_weights:
            self.decoder.weight = self.encoder.weight
        self.init_weights()
        self.rnn_type = rnn_type
        self.nhid = nhid
        self.nlayers = nlayers

    def init_weights(self):
        initrange = 0.1
        nn.init.uniform_(self.encoder.weight, -initrange, initrange)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -initrange, initrange)

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        decoded = self.decoder(output)
        decoded = decoded.view(-1, self.ntoken)
        return F.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        if self.rnn_type == "LSTM":
            return (
                weight.new_zeros(self.nlayers, bsz, self.nhid),
                weight.new_zeros(self.nlayers, bsz, self.nhid),
            )
        return weight.new_zeros(self.nlayers, bsz, self.nhid)


def repackage_hidden(h):
    if isinstance(h, torch.Tensor):
        return h.detach()
    return tuple(repackage_hidden(v) for v in h)


def batchify(data, bsz):
    nbatch = data.size(0) // bsz
    data = data.narrow(0, 0, nbatch * bsz)
    data = data.view(bsz, -1).t().contiguous()
    return data


def get_batch(source, i, bptt=20):
    seq_len = min(bptt, len(source) - 1 - i)
    data = source[i : i + seq_len]
    target = source[i + 1 : i + 1 + seq_len].view(-1)
    return data, target


def run_example():
    torch.manual_seed(0)
    text = (" ".join(["the cat sat on the mat and the dog ate the log"] * 200)).split()
    vocab = sorted(set(text))
    idx = {w: i for i, w in enumerate(vocab)}
    ids = torch.tensor([idx[w] for w in text], dtype=torch.long)
    train_data = batchify(ids, 10)
    ntokens = len(vocab)
    model = RNNModel("LSTM", ntokens, 32, 32, 2, 0.2, tie_weights=True)
    criterion = nn.NLLLoss()
    lr = 5.0
    losses = []
    for epoch in range(1, 4):
        model.train()
        total_loss = 0.0
        hidden = model.init_hidden(10)
        for batch, i in enumerate(range(0, train_data.size(0) - 1, 20)):
            data, targets = get_batch(train_data, i)
            model.zero_grad()
            hidden = repackage_hidden(hidden)
            output, hidden = model(data, hidden)
            loss = criterion(output, targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
            with torch.no_grad():  # p.data is gpunet's array, not a tensor: see the docstring
                for p in model.parameters():
                    p.add_(p.grad, alpha=-lr)
            total_loss += loss.item()
        losses.append(total_loss / (batch + 1))
    model.eval()
    with torch.no_grad():
        hidden = model.init_hidden(1)
        inp = torch.randint(ntokens, (1, 1), dtype=torch.long)
        words = []
        for i in range(10):
            output, hidden = model(inp, hidden)
            word_weights = output.squeeze().div(1.0).exp().cpu()
            word_idx = torch.multinomial(word_weights, 1)[0]
            inp.fill_(word_idx)
            words.append(vocab[int(word_idx)])
    return losses, words


def _torch_run():
    """The same program on PyTorch itself: this file's source with torch's imports."""
    torch_ = pytest.importorskip("torch")
    torch_.set_num_threads(1)
    src = pathlib.Path(__file__).read_text()
    for ours, theirs in (
        ("import gpunet as torch", "import torch"),
        ("import gpunet.nn as nn", "import torch.nn as nn"),
        ("import gpunet.nn.functional as F", "import torch.nn.functional as F"),
    ):
        src = src.replace(ours, theirs, 1)
    ns = {"__name__": "wlm_on_torch"}
    exec(compile(src, __file__, "exec"), ns)
    return ns["run_example"]()


@pytest.mark.slow
def test_word_language_model_trains_and_samples_as_on_torch():
    losses, words = run_example()
    vocab = set("the cat sat on mat and dog ate log".split())
    assert losses[0] < math.log(len(vocab)) and losses[2] < losses[1] < losses[0], losses
    assert len(words) == 10 and set(words) <= vocab
    # PyTorch on the same program (its own initial weights) reaches the same losses
    theirs, _ = _torch_run()
    np.testing.assert_allclose(losses, theirs, rtol=0.01)
