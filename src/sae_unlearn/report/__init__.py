"""Outputs for people (Markdown with plots) and machines (JSON)."""
