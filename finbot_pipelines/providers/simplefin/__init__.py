"""The ``simplefin`` provider: SimpleFIN servers (the SimpleFIN Bridge)."""
