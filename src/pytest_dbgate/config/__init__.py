"""The gate's configuration: every option declared once, read once into frozen records."""
