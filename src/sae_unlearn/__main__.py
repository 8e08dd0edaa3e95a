"""``python -m sae_unlearn``: the CLI (what ``accelerate launch -m sae_unlearn ...`` runs)."""

from sae_unlearn.cli import app

app()
