"""The model: bundle format, training, evaluation, compilation and the native predictor."""
