"""Cells as pure functions over a whole sequence, each with its backward right beside it.

Every cell module offers the same four functions, all time-major and in *processing order*
(a reversed direction is handed reversed views, so the cells never know about direction):

``forward(xp, state0, p, mask, full) -> (Hs, cache)``
    ``xp`` (T, B, G*H): the input projections ``X W_x + b`` of every step, computed by the
    caller in one multiply; it is overwritten with the gate activations.  ``Hs`` (T+1, B, H)
    holds ``h_0 .. h_T``.
``backward(dHs, dstate_T, cache) -> (dxp, dstate0, dparams)``
    ``dHs`` (T, B, H): gradient of the loss w.r.t. each output (zero at padded steps).
    ``dxp`` (T, B, G*H) lets the caller form ``dW_x``, ``db`` and ``dX`` in one multiply each.
``step(xp_t, state, p) -> state``
    One step for generation (no cache, O(1) per token).

``mask`` (T, B, 1) bool marks real steps (padding sits at the end of each row, so row b is real
for t < length_b); ``full`` is the number of leading steps at which every row is real, where the
loops skip all masking work.  At a padded step the state is carried unchanged and no gradient
reaches the parameters.  Derivations: docs/derivations.md.
"""
