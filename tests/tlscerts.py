"""Real X.509 certificates for TLS tests, made with the openssl CLI at test time.

A throw-away CA signs a server certificate for 127.0.0.1/localhost and a client
certificate; a second CA (``other-ca``) signs an untrusted client certificate.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class Certs:
    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_client_cert: Path
    rogue_client_key: Path


def _run(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _ca(d: Path, name: str) -> None:
    _run(
        "req",
        "-x509",
        *EC,
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.crt",
        "-days",
        "2",
        "-subj",
        f"/CN=cardguard test {name}",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        cwd=d,
    )


def _leaf(d: Path, ca: str, name: str, cn: str, ext: str) -> None:
    _run("req", *EC, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
    (d / f"{name}.ext").write_text(ext)
    _run(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        f"{ca}.crt",
        "-CAkey",
        f"{ca}.key",
        "-CAcreateserial",
        "-out",
        f"{name}.crt",
        "-days",
        "2",
        "-extfile",
        f"{name}.ext",
        cwd=d,
    )


def make_certs(d: Path) -> Certs:
    """Write a CA, server and client certificates into ``d`` and return their paths."""
    d.mkdir(parents=True, exist_ok=True)
    _ca(d, "ca")
    _ca(d, "other-ca")
    common = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
    _leaf(
        d,
        "ca",
        "server",
        "127.0.0.1",
        common + "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    _leaf(
        d,
        "ca",
        "client",
        "prometheus",
        common + "extendedKeyUsage=clientAuth\nsubjectAltName=DNS:prometheus.test\n",
    )
    _leaf(
        d,
        "other-ca",
        "rogue",
        "rogue",
        common + "extendedKeyUsage=clientAuth\nsubjectAltName=DNS:prometheus.test\n",
    )
    return Certs(
        dir=d,
        ca=d / "ca.crt",
        server_cert=d / "server.crt",
        server_key=d / "server.key",
        client_cert=d / "client.crt",
        client_key=d / "client.key",
        rogue_client_cert=d / "rogue.crt",
        rogue_client_key=d / "rogue.key",
    )
