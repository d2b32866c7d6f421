"""Recurrent weight spectra against numpy.linalg."""


import numpy as np

from rnnkit.inspect.spectrum import format_spectrum, recurrent_spectrum, spectrum_record
from rnnkit.nn.recurrent import GRU, RNN
from rnnkit.tasks.lm.model import LanguageModel, LMConfig


def test_every_gate_block_against_numpy_linalg():
    gru = GRU(3, 5, num_layers=2, bidirectional=True, init="uniform", init_scale=0.8, rng=0)
    blocks = recurrent_spectrum(gru)
    assert len(blocks) == 2 * 2 * 3
    assert [b.name for b in blocks[:4]] == ["gru.layers.0.fwd.r", "gru.layers.0.fwd.z",
                                            "gru.layers.0.fwd.n", "gru.layers.0.bwd.r"]
    for b in blocks:
        d = ("fwd", "bwd").index(b.direction)
        k = "rzn".index(b.gate)
        W = gru.dirs[b.layer][d].param["W_h"][:, 5 * k : 5 * (k + 1)].astype(np.float64)
        np.testing.assert_allclose(b.singular_values, np.linalg.svd(W)[1], rtol=1e-10)
        np.testing.assert_allclose(b.spectral_radius, max(abs(np.linalg.eigvals(W))),
                                   rtol=1e-10)
        assert b.sigma_max >= b.spectral_radius - 1e-12  # rho <= ||W||_2


def test_hand_set_matrix_and_record():
    rnn = RNN(2, 2, rng=0)
    rnn.dirs[0][0].param["W_h"][...] = [[0.0, 2.0], [0.5, 0.0]]  # eigenvalues +-1, sigma 2, 0.5
    (b,) = recurrent_spectrum(rnn)
    np.testing.assert_allclose(b.singular_values, [2.0, 0.5], rtol=1e-6)
    np.testing.assert_allclose(b.spectral_radius, 1.0, rtol=1e-6)
    rec = spectrum_record(rnn)
    assert rec == {"spectrum/rnn.layers.0.fwd.h.sigma_max": b.sigma_max,
                   "spectrum/rnn.layers.0.fwd.h.sigma_min": b.sigma_min,
                   "spectrum/rnn.layers.0.fwd.h.rho": b.spectral_radius}
    assert "rnn.layers.0.fwd.h" in format_spectrum([b])
    assert set(spectrum_record(rnn, radius=False)) == set(rec) - {
        "spectrum/rnn.layers.0.fwd.h.rho"}


def test_models_are_searched_for_layers():
    lm = LanguageModel(LMConfig(vocab_size=5, cell="lstm", embed_size=3, hidden_size=4,
                                num_layers=2), rng=0)
    names = [b.name for b in recurrent_spectrum(lm)]
    assert names[0] == "rnn.layers.0.fwd.i" and names[-1] == "rnn.layers.1.fwd.o"
