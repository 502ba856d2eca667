"""The models of PyTorch's "NLP from scratch" tutorials, as written there with
only the imports changed to gpunet's: the char-RNN name classifier (a hand-written
RNN cell, ``torch.cat``, ``topk``, ``lineToTensor``'s item assignment) and the
seq2seq translator's GRU encoder with a Bahdanau attention decoder (``bmm``,
``squeeze``/``unsqueeze``, ``torch.empty(...).fill_``, greedy ``topk`` decoding).
Each trains on a tiny fixed task and must learn it."""

# ruff: noqa: UP008, RUF059
# mypy: ignore-errors

from __future__ import annotations

import gpunet as torch
import gpunet.nn as nn
import gpunet.nn.functional as F
from gpunet import optim

N_LETTERS = 6


class RNN(nn.Module):
    def __init__(self, input_size, hidden_size, output_size):
        super(RNN, self).__init__()
        self.hidden_size = hidden_size
        self.i2h = nn.Linear(input_size + hidden_size, hidden_size)
        self.h2o = nn.Linear(hidden_size, output_size)
        self.softmax = nn.LogSoftmax(dim=1)

    def forward(self, input, hidden):
        combined = torch.cat((input, hidden), 1)
        hidden = self.i2h(combined)
        output = self.h2o(hidden)
        output = self.softmax(output)
        return output, hidden

    def initHidden(self):
        return torch.zeros(1, self.hidden_size)


def lineToTensor(line):
    tensor = torch.zeros(len(line), 1, N_LETTERS)
    for li, letter in enumerate(line):
        tensor[li][0]["abcdef".index(letter)] = 1
    return tensor


def test_char_rnn_classifier_learns_two_names():
    torch.manual_seed(0)
    rnn = RNN(N_LETTERS, 16, 2)
    criterion = nn.NLLLoss()
    names = [("abc", 0), ("fed", 1)]
    losses = []
    for _ in range(60):
        total = 0.0
        for name, category in names:
            category_tensor = torch.tensor([category], dtype=torch.long)
            line_tensor = lineToTensor(name)
            hidden = rnn.initHidden()
            rnn.zero_grad()
            for i in range(line_tensor.size()[0]):
                output, hidden = rnn(line_tensor[i], hidden)
            loss = criterion(output, category_tensor)
            loss.backward()
            with torch.no_grad():  # the tutorial's p.data.add_(p.grad.data, alpha=-lr)
                for p in rnn.parameters():
                    p.add_(p.grad, alpha=-0.05)
            total += loss.item()
        losses.append(total)
    assert losses[-1] < 0.2 * losses[0], losses[::10]
    for name, category in names:
        hidden = rnn.initHidden()
        line_tensor = lineToTensor(name)
        for i in range(line_tensor.size()[0]):
            output, hidden = rnn(line_tensor[i], hidden)
        top_n, top_i = output.topk(1)
        assert top_i[0].item() == category


class EncoderRNN(nn.Module):
    def __init__(self, input_size, hidden_size, dropout_p=0.1):
        super(EncoderRNN, self).__init__()
        self.hidden_size = hidden_size
        self.embedding = nn.Embedding(input_size, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True)
        self.dropout = nn.Dropout(dropout_p)

    def forward(self, input):
        embedded = self.dropout(self.embedding(input))
        output, hidden = self.gru(embedded)
        return output, hidden


class BahdanauAttention(nn.Module):
    def __init__(self, hidden_size):
        super(BahdanauAttention, self).__init__()
        self.Wa = nn.Linear(hidden_size, hidden_size)
        self.Ua = nn.Linear(hidden_size, hidden_size)
        self.Va = nn.Linear(hidden_size, 1)

    def forward(self, query, keys):
        scores = self.Va(torch.tanh(self.Wa(query) + self.Ua(keys)))
        scores = scores.squeeze(2).unsqueeze(1)
        weights = F.softmax(scores, dim=-1)
        context = torch.bmm(weights, keys)
        return context, weights


SOS_token, MAX_LENGTH = 0, 4


class AttnDecoderRNN(nn.Module):
    def __init__(self, hidden_size, output_size, dropout_p=0.1):
        super(AttnDecoderRNN, self).__init__()
        self.embedding = nn.Embedding(output_size, hidden_size)
        self.attention = BahdanauAttention(hidden_size)
        self.gru = nn.GRU(2 * hidden_size, hidden_size, batch_first=True)
        self.out = nn.Linear(hidden_size, output_size)
        self.dropout = nn.Dropout(dropout_p)

    def forward(self, encoder_outputs, encoder_hidden, target_tensor=None):
        batch_size = encoder_outputs.size(0)
        decoder_input = torch.empty(batch_size, 1, dtype=torch.long).fill_(SOS_token)
        decoder_hidden = encoder_hidden
        decoder_outputs = []
        attentions = []
        for i in range(MAX_LENGTH):
            decoder_output, decoder_hidden, attn_weights = self.forward_step(
                decoder_input, decoder_hidden, encoder_outputs
            )
            decoder_outputs.append(decoder_output)
            attentions.append(attn_weights)
            if target_tensor is not None:
                decoder_input = target_tensor[:, i].unsqueeze(1)  # Teacher forcing
            else:
                _, topi = decoder_output.topk(1)
                decoder_input = topi.squeeze(-1).detach()
        decoder_outputs = torch.cat(decoder_outputs, dim=1)
        decoder_outputs = F.log_softmax(decoder_outputs, dim=-1)
        attentions = torch.cat(attentions, dim=1)
        return decoder_outputs, decoder_hidden, attentions

    def forward_step(self, input, hidden, encoder_outputs):
        embedded = self.dropout(self.embedding(input))
        query = hidden.permute(1, 0, 2)
        context, attn_weights = self.attention(query, encoder_outputs)
        input_gru = torch.cat((embedded, context), dim=2)
        output, hidden = self.gru(input_gru, hidden)
        output = self.out(output)
        return output, hidden, attn_weights


def test_seq2seq_attention_learns_to_reverse():
    torch.manual_seed(0)
    vocab, hidden = 6, 24
    encoder, decoder = EncoderRNN(vocab, hidden), AttnDecoderRNN(hidden, vocab)
    encoder_optimizer = optim.Adam(encoder.parameters(), lr=0.02)
    decoder_optimizer = optim.Adam(decoder.parameters(), lr=0.02)
    criterion = nn.NLLLoss()
    input_tensor = torch.tensor([[1, 2, 3, 4], [2, 5, 1, 3], [4, 4, 2, 1]])
    target_tensor = input_tensor.flip(1)
    losses = []
    for _ in range(40):
        encoder_optimizer.zero_grad()
        decoder_optimizer.zero_grad()
        encoder_outputs, encoder_hidden = encoder(input_tensor)
        decoder_outputs, _, _ = decoder(encoder_outputs, encoder_hidden, target_tensor)
        loss = criterion(decoder_outputs.view(-1, decoder_outputs.size(-1)), target_tensor.view(-1))
        loss.backward()
        encoder_optimizer.step()
        decoder_optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], losses[::8]
    encoder.eval()
    decoder.eval()
    with torch.no_grad():
        decoder_outputs, _, attentions = decoder(*encoder(input_tensor))
        _, topi = decoder_outputs.topk(1)
        decoded_ids = topi.squeeze()
    assert decoded_ids.tolist() == target_tensor.tolist()
    assert attentions.shape == (3, MAX_LENGTH, 4)
