"""Cells as pure functions over a whole sequence, each with its backward right beside it.

Every cell module (``rnn``, ``gru``, ``lstm``, and their compiled twins in
:mod:`rnnkit.nn.cells.kernels`) offers the same three functions, all time-major and in
*processing order* (a reversed direction is handed reversed views, so the cells never know
about direction).  A state is one (B, H) array, or ``LSTMState(h, c)`` for the LSTM:

``forward(xp, state0, p, mask=None, full=None, *, grad=True, **options) -> (Hs, state_T, cache)``
    ``xp`` (T, B, G*H): the input projections ``X W_x + b`` of every step, computed by the
    caller in one multiply; it may be overwritten (the cache's ``A`` holds the gate values).
    ``Hs`` (T+1, B, H) holds ``h_0 .. h_T``; ``state_T`` is the final state.  With
    ``grad=False`` no backward will follow and the cache is ``None``.
``backward(dHs, dstate_T, cache, consume=False) -> (dxp, dstate0, dparams)``
    ``dHs`` (T, B, H): gradient of the loss w.r.t. each output (zero at padded steps);
    ``dstate_T`` that of the final state, or None.  ``dxp`` (T, B, G*H) lets the caller form
    ``dW_x``, ``db`` and ``dX`` in one multiply each; ``dparams`` holds ``W_h`` (and
    ``b_hn``, peepholes).  ``consume=True`` lets the cell overwrite the cache.
``step(xp_t, state, p, **options) -> state``
    One step for generation (no cache, O(1) per token).

The optional layers' cells (the projection LSTM in :mod:`rnnkit.nn.lstmp`, the LayerNorm
LSTM and GRU in :mod:`rnnkit.nn.layernorm_rnn`) keep the same contract; their layers return
them from ``Recurrent._cell``, so one driver runs every cell.

``options`` are the cell's equation options, :data:`OPTIONS`: ``nonlinearity`` ("tanh" |
"relu") for the RNN, ``reset_after`` for the GRU; the LSTM's peepholes are the parameters
``p_i, p_f, p_o`` when present.  :func:`rnnkit.nn.cells.dispatch.cell_module` picks the
module (NumPy or compiled).

``mask`` (T, B, 1) bool marks real steps (padding sits at the end of each row, so row b is real
for t < length_b); ``full`` is the number of leading steps at which every row is real, where the
loops skip all masking work.  At a padded step the state is carried unchanged and no gradient
reaches the parameters.  Derivations: docs/derivations.md.
"""

OPTIONS = {"rnn": ("nonlinearity",), "gru": ("reset_after",), "lstm": ()}
