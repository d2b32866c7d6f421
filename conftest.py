import importlib.util

# The package docstrings are tests too (--doctest-modules); the interop examples need PyTorch.
collect_ignore = [] if importlib.util.find_spec("torch") else ["rnnkit/interop.py"]
