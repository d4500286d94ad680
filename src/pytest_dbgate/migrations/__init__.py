"""Migration files read, parsed and applied exactly once; the tools' own history tables."""
