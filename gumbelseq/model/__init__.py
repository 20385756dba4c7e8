"""The model side: backends and their registry, Gumbel machinery, LSTMs, training, runs, the reproduction."""
