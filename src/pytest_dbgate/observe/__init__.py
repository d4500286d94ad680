"""The lock watch: what each migration holds, and how long simulated traffic waits for it."""
