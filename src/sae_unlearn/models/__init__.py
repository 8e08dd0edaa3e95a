"""Loading causal LMs, locating their decoder layers, capturing residual-stream activations."""
