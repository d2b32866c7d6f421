"""Gate saturation on hand-set weights."""


import numpy as np
import pytest

from rnnkit.inspect.gates import GateMonitor, format_gates, gate_saturation
from rnnkit.nn.recurrent import GRU, LSTM, RNN
from rnnkit.tasks.lm.model import LanguageModel, LMConfig


def _zero(layer):
    for row in layer.dirs:
        for unit in row:
            for v in unit.param.values():
                v[...] = 0
    return layer


def _by_gate(stats):
    return {s.gate: s for s in stats}


def test_lstm_hand_set_biases():
    lstm = _zero(LSTM(2, 4, rng=0, dtype="float64"))
    b = lstm.dirs[0][0].param["b"]
    b[0:4] = [5, 5, 0, 0]  # i: half the units at sigmoid(5) = 0.993
    b[4:8] = -5  # f: all at 0.0067
    b[8:12] = [3, -3, 0.5, 0]  # g: tanh(3) = 0.995 high, tanh(-3) low, the rest not
    b[12:16] = 1  # o: 0.73, not saturated
    s = _by_gate(gate_saturation(lstm, np.zeros((3, 5, 2))))
    assert (s["i"].high, s["i"].low, s["i"].saturated) == (0.5, 0.0, 0.5)
    assert (s["f"].low, s["f"].high) == (1.0, 0.0)
    assert (s["g"].high, s["g"].low, s["g"].activation) == (0.25, 0.25, "tanh")
    assert s["o"].saturated == 0.0
    np.testing.assert_allclose(s["o"].mean, 1 / (1 + np.exp(-1)))
    assert s["i"].count == 3 * 5 * 4
    assert "rnn" not in format_gates(list(s.values())) and "lstm.layers.0.fwd.f" in format_gates(
        list(s.values()))


def test_gru_and_relu_rnn_hand_set():
    gru = _zero(GRU(2, 3, rng=0, dtype="float64"))
    gru.dirs[0][0].param["b"][...] = [3] * 3 + [-3] * 3 + [2] * 3  # r high, z low, n = tanh 2
    s = _by_gate(gate_saturation(gru, np.zeros((2, 4, 2))))
    assert s["r"].high == 1 and s["z"].low == 1 and s["n"].high == 1
    rnn = _zero(RNN(2, 3, nonlinearity="relu", rng=0))
    rnn.dirs[0][0].param["b"][...] = [-1, -1, 1]
    (h,) = gate_saturation(rnn, np.zeros((2, 4, 2)))
    assert (h.gate, h.activation, h.low, h.high) == ("h", "relu", pytest.approx(2 / 3), 0.0)


def test_padded_steps_are_not_counted():
    lstm = _zero(LSTM(2, 3, bidirectional=True, rng=0, dtype="float64"))
    for unit in lstm.dirs[0]:
        unit.param["W_x"][0, 0:3] = 10.0  # i saturates where x[..., 0] = 1
    x = np.zeros((2, 4, 2))
    x[..., 0] = 1
    x[1, 2:, 0] = 0  # padded steps: i = 0.5 there, if they were counted
    lengths = [4, 2]
    with GateMonitor(lstm) as mon:
        out, _, _ = lstm.forward(x, lengths=lengths)
    ref, _, _ = lstm.forward(x, lengths=lengths)
    np.testing.assert_array_equal(out, ref)  # watching changes nothing
    assert "forward" not in vars(lstm) and lstm._hooks == ()  # nothing patched; hook removed
    stats = mon.stats()
    assert {s.direction for s in stats} == {"fwd", "bwd"}
    for s in stats:
        assert s.count == 6 * 3  # 4 + 2 real steps, 3 units
        if s.gate == "i":
            assert s.high == 1.0
    rec = mon.record()
    assert rec["gates/lstm.layers.0.bwd.i.saturated"] == 1.0
    # with a backward hook too, the cells run one step at a time: the same figures
    from rnnkit.inspect.gradflow import recording

    with recording(lstm), GateMonitor(lstm) as stepwise:
        lstm.forward(x, lengths=lengths)
    assert stepwise.record() == pytest.approx(rec, rel=1e-12)


def test_whole_model_runs_with_ids_and_monitor_can_be_off():
    lm = LanguageModel(LMConfig(vocab_size=6, cell="gru", embed_size=3, hidden_size=4,
                                num_layers=2), rng=0)
    ids = np.random.default_rng(0).integers(0, 6, (2, 7))
    stats = gate_saturation(lm, ids)
    assert len(stats) == 2 * 3 and all(s.count == 2 * 7 * 4 for s in stats)
    assert stats[0].name == "rnn.layers.0.fwd.r"
    probed = gate_saturation(lm, B=3, T=5)  # no batch: each layer alone on N(0, 1) inputs
    assert all(s.count == 3 * 5 * 4 for s in probed)
    with GateMonitor(lm, enabled=False) as mon:
        lm.forward(ids)
    assert mon.stats() == [] and mon.record() == {}


def test_monitor_sees_no_grad_forwards_too():
    """An evaluation loss (no-grad forward, which keeps no activations) is counted, and its
    result is the one without the monitor."""
    lm = LanguageModel(LMConfig(vocab_size=6, cell="lstm", embed_size=3, hidden_size=4,
                                num_layers=1), rng=0)
    ids = np.random.default_rng(1).integers(0, 6, (2, 7))
    want = lm.loss(ids, ids, backward=False)[0]
    with GateMonitor(lm) as mon:
        got = lm.loss(ids, ids, backward=False)[0]
    assert got == want
    assert len(mon.stats()) == 4 and all(s.count == 2 * 7 * 4 for s in mon.stats())
