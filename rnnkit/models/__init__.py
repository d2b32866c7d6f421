"""Task models built from the shared layers: language model, classifier, tagger, seq2seq."""
