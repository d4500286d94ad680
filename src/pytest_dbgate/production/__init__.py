"""The production deploy: exactly what staging passed, once."""
