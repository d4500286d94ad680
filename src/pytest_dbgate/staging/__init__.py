"""The staging gate: refresh, migrate, observe, measure, judge, record."""
