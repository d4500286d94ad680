"""What every mode shares: the run and its steps, criteria and items, results, the gate record,
errors with their remedies, interruptions, password masking."""
