"""The date-translation example: its data, a quick run of both models, and (slow) the issue's bar."""

import datetime

import numpy as np
import pytest

from gpunn.decoding import beam_search, model_step
from gpunn.examples import translate as example


def test_the_formats_write_one_date_as_people_do():
    written = [f(datetime.date(1979, 5, 3)) for f in example.FORMATS]
    assert written == ["3 may 1979", "03 may 1979", "may 3, 1979", "thursday may 3 1979", "thursday, 3 may 1979",
                       "thu may 3 1979", "05/03/79", "5/3/1979", "03.05.79", "3 may 79"]
    assert max(len(f(datetime.date(1977, 9, 28))) for f in example.FORMATS) <= example.SOURCE_LENGTH


def test_pairs_are_seeded_distinct_and_encode_both_ways():
    pairs = example.date_pairs(500, seed=3)
    assert pairs == example.date_pairs(500, seed=3) and len({iso for _, iso in pairs}) == 500
    source = example.encode_source([human for human, _ in pairs])
    assert source.shape == (500, example.SOURCE_LENGTH) and ((source > 0).sum(1) == [len(h) for h, _ in pairs]).all()
    target_in, target_out = example.encode_target([iso for _, iso in pairs])
    assert (target_in[:, 0] == example.START).all() and (target_out[:, -1] == example.END).all()
    np.testing.assert_array_equal(target_in[:, 1:], target_out[:, :-1])  # teacher forcing: shifted by one
    assert [example.decode_target(t) for t in target_out] == [iso for _, iso in pairs]


def test_both_models_train_translate_and_plot_in_a_quick_run(tmp_path):
    pytest.importorskip("matplotlib")
    results = example.main(["--limit", "600", "--test", "20", "--epochs", "1", "--batch-size", "100",
                            "--plot", str(tmp_path / "attention.png"), "--verbose", "0"])
    assert set(results) == {"rnn", "transformer"} and all(0 <= r <= 1 for r in results.values())
    assert (tmp_path / "attention.png").stat().st_size > 5_000


def test_greedy_translation_is_beam_search_of_width_one():
    model = example.transformer_model(depth=16, heads=2, ff_dim=16, dropout=0.0)
    texts = [human for human, _ in example.date_pairs(3, seed=1)]
    for text, greedy in zip(texts, example.translate(model, texts)):
        (tokens, _), = beam_search(model_step(model, example.encode_source([text])), example.START, example.END,
                                   example.TARGET_LENGTH, beam_width=1)
        assert example.decode_target(tokens) == greedy


@pytest.mark.slow
def test_both_models_reach_the_bar():
    """The issue's bar: >= 99% exact match on 1,000 held-out dates with both models, at the example's defaults.
    Measured on 2 shared CPU cores (NumPy): RNN 100.0% (8 epochs, 252 s of CPU), Transformer 100.0% (10 epochs,
    147 s of CPU); the wall time depends on the machine's load (4 to 30 minutes a model here)."""
    results = example.main(["--verbose", "0"])
    assert results["rnn"] >= 0.99 and results["transformer"] >= 0.99
