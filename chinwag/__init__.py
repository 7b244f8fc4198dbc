"""chinwag: an XMPP messaging server with an OAuth 2.0 developer platform."""

__version__ = "0.1.0"
