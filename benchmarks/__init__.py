"""Benchmarks: cardguard side by side with its peers (promtool, pprof, prometheus_client)."""
