"""Per-kind evaluation and prediction for checkpoints other than language models.

``rnnkit eval`` looks up ``rnnkit.tasks.<kind>.evaluate_checkpoint(path, args)`` for a
checkpoint of kind ``<kind>`` ("classifier", "tagger"); it returns a dict of figures printed as
``name: value`` lines.
"""
