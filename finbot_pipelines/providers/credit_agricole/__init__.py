"""``credit_agricole``: Crédit Agricole (France) personal banking, scraped with a headless
browser (see :mod:`.provider`; options and credentials in :mod:`.options`)."""
