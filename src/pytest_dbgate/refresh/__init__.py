"""Staging refreshed from the source: dump, restore, dump files, the snapshot cache."""
