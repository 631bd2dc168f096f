"""tornado_grok: an event-driven Tornado gateway that streams the xAI Grok API behind OpenAI-compatible endpoints."""

__version__ = "0.1.0"
