"""Pure parsers: bytes in, typed values out (exposition formats, the TSDB status API)."""
