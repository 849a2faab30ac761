"""pytest plugin (placeholder until the embedded server lands)."""
