"""The site service: composition root, Screening servicer and its request converters,
metrics, model updater, sync agent, CPU placement."""
