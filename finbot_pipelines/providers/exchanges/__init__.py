"""Crypto exchanges through ccxt: ``kraken``, ``binance`` and any ccxt exchange (``ccxt``).

:mod:`.options` (options, credentials, specs; no ccxt), :mod:`.valuation` (pure:
currency codes, paths through the exchange's markets, prices), :mod:`.client`
(the ccxt client of one fetch, error translation), :mod:`.provider` (the fetch).
"""
