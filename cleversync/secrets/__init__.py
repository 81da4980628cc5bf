"""Secret stores: Azure Key Vault in Azure, a local JSON file on a laptop, one interface."""

from __future__ import annotations

from cleversync.secrets.base import SecretStore

__all__ = ["SecretStore"]
