"""The sequence family's examples, in short runs: the GRU forecaster beats the
seasonal-naive and naive forecasts on the held-out sunspot years, the character
LSTM gets below the unigram entropy of its text, and an LSTM solves the adding
problem where a SimpleRNN stays at the mean guess."""

import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))


@pytest.mark.slow
def test_gru_forecaster_beats_both_naive_forecasts():
    pytest.importorskip("statsmodels")
    import forecast_sunspots

    scores = forecast_sunspots.main(["--epochs", "30"])
    # one-year-ahead MAE over 1969-2008; the naive forecasts score 25.7 and 22.7
    assert scores["gru"] < 0.75 * min(scores["seasonal naive"], scores["naive"]), scores


@pytest.mark.slow
def test_char_lstm_learns_below_the_unigram_entropy():
    import char_lstm

    args = "--epochs 4 --units 64 --chars 30000 --length 50 --batch-size 32 --lr 1e-2"
    out = char_lstm.main(args.split())
    # context-free guessing costs ~4.7 bits/char; a few epochs of context must beat it
    assert out["val_bits_per_char"] < out["unigram_bits"] - 0.5, out


@pytest.mark.slow
def test_lstm_solves_a_short_adding_problem_that_simple_rnn_does_not():
    import adding_problem

    args = "--length 30 --units 32 --samples 8000 --epochs 4 --seed 0"
    scores = adding_problem.main(args.split())
    # guessing the mean scores 0.167; 500 steps take the LSTM off that plateau (to
    # ~0.004) while the SimpleRNN stays on it (~0.17), for seeds 0, 1 and 2 alike
    assert scores["lstm"] < 0.02, scores
    assert scores["simple_rnn"] > 0.1, scores
