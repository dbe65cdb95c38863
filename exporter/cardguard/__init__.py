"""cardguard: a Prometheus exporter and cardinality guard for Go services."""

__version__ = "0.1.0"
