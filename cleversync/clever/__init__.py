"""Clever API access: tokens, the paged client, payload models."""
