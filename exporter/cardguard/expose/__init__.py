"""What cardguard serves and prints: collectors, the HTTP server, /probe, fleet, renderers."""
