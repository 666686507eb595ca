"""``aegon_targetplan``: Aegon Targetplan (UK workplace pensions), scraped with a headless
browser (see :mod:`.provider`; options and credentials in :mod:`.options`)."""
