"""Request handlers; each module ends with its `default_handlers`, joined in app.py."""
