"""Criteria on the migrated schema, shared by staging and production."""
