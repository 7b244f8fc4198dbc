"""Protocol modules, one file per RFC or XEP, each with a SPEC and a setup(api)."""
