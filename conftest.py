import importlib.util

# The package docstrings are tests too (--doctest-modules); the interop examples need PyTorch,
# the web app of ``rnnkit serve`` needs Starlette (the ``deploy`` extra).
collect_ignore = [] if importlib.util.find_spec("torch") else ["rnnkit/interop.py"]
if importlib.util.find_spec("starlette") is None:
    collect_ignore.append("rnnkit/serve/app.py")
