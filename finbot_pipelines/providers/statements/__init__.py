"""``statements``: balances, positions and transactions read from statement files (OFX/QFX, CSV)."""
