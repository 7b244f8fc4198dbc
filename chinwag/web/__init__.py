"""The HTTP side of chinwag: OAuth endpoints, sign-in, consent and connected-apps pages."""
