"""Sparse autoencoders: load (sae-lens), train, check against the model, score latents."""
