"""What it means: pure folds of events into state, Redis read models, rebuilds."""
