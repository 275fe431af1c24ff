"""rayscale: what a Ray cluster buys you for hyperparameter search, measured honestly.

Four layers, one direction: ``options`` (what was asked) → ``work`` (running it) → ``results`` (the
versioned bundle and every figure derived from it) → ``views`` (tables, plots, progress); the
``cli`` parses, makes one call, and shows the result (docs/development.md)."""
