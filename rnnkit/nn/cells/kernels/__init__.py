"""Compiled (numba) time loops of the cells, one module per cell beside its NumPy reference
in :mod:`rnnkit.nn.cells`: same functions, same arguments, same cache, same results; and
:mod:`.scan`, the linear recurrence of the min cells (:mod:`rnnkit.nn.minrnn`).  What they
share: :mod:`.packed` (the recurrent product on weights packed once per call), :mod:`.common`
(BLAS from compiled code, argument preparation) and :mod:`.vmath` (vectorisable ``exp``).

Imported only by :mod:`rnnkit.nn.cells.dispatch` on first use (importing numba takes about a
second); every kernel is compiled on its first call for a dtype and kept in numba's on-disk
cache (``cache=True``), so later processes load it instead of compiling again.
"""
