"""``google_sheets``: accounts and holdings kept by hand in a Google Sheet (:mod:`.provider`)."""
