"""Tasks: thin compositions of data, model, loss and metrics (one module per pipeline)."""
