"""The one error of the identity side: a registration, discovery or feedback refused."""

from __future__ import annotations


class IdentityError(ValueError):
    """Something about a provider's ERC-8004 identity the tool refuses; the message says
    what and, where it can, what to do. Raised before anything is written or sent."""
