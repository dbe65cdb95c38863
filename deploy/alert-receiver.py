"""A webhook receiver for the demo stack: prints every Alertmanager notification it gets."""

import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        for alert in body.get("alerts", []):
            labels = alert.get("labels", {})
            print(
                f"{self.path} {alert.get('status')} {labels.get('alertname')} "
                f"severity={labels.get('severity')} target={labels.get('target', '')}: "
                f"{alert.get('annotations', {}).get('summary', '')}",
                flush=True,
            )
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9095
    HTTPServer(("", port), Handler).serve_forever()
