"""Configuration: every frozen config object, one YAML checker, one duration and size grammar."""
