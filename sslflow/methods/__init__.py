"""Self-supervised methods: each turns a batch of views into a loss and logged metrics (no training loop here)."""
