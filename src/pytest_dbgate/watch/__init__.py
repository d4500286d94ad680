"""The watch: production after a deploy, against the baseline before it."""
