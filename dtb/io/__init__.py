"""Files: run directories, SONATA spikes, dense series, checkpoints, BIDS tables,
exports, and the atomic, verified writes they share.  Knows nothing of the engine's
internals."""
