"""The OAuth 2.0 developer platform: the authorization server and the service API."""
