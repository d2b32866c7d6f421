"""Deployment: ONNX export (:mod:`rnnkit.deploy.export`) and int8 weights
(:mod:`rnnkit.deploy.quantize`).  ``onnx`` is imported only by the export, when it runs."""
