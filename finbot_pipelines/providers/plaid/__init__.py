"""``plaid``: bank, card, loan and brokerage accounts through Plaid (plaid-python).

:mod:`.options` (options, credentials, spec: no SDK), :mod:`.client` (the SDK
client, its calls and error mapping), :mod:`.mapping` (Plaid answers -> a
snapshot, pure), :mod:`.provider` (the provider), :mod:`.link` (linking an Item:
``finbot accounts link plaid``).
"""
