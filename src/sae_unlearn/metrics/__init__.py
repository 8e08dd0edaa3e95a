"""Evaluation: behaviour (recall, perplexity, degeneration) and internals (latent alignment)."""
