"""Entities, their facts, the synthetic world and the known/unknown split."""
