"""Configuration: every frozen config object, read from YAML by one checker."""
