"""One module per endpoint family; each ends with its `default_handlers` routes, joined in app.py."""
