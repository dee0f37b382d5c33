"""One module per CLI stage; each exposes `COMMANDS`, registered by `micromotion.cli`."""
