#!/usr/bin/env python3
"""Print the nginx configuration that lets tls-alpn-01 (RFC 8737) work on a server nginx already runs on 443.

nginx keeps port 443 and looks at each ClientHello without decrypting anything (ssl_preread):
handshakes that offer ALPN acme-tls/1, which only an ACME CA sends, go to the challenge step on
a local port; every other connection goes to nginx's own HTTPS sites, moved to a local port.
It needs nginx's stream module with ssl_preread (Debian: apt install libnginx-mod-stream).

  python tools/nginx_tls_alpn.py                 # the defaults below
  python tools/nginx_tls_alpn.py --challenge 127.0.0.1:10443 --https 127.0.0.1:8443

Then run the challenge step with --bind 127.0.0.1 --tls-port 10443.
"""

from __future__ import annotations

import argparse

PUBLIC = "443"
CHALLENGE = "127.0.0.1:10443"
HTTPS = "127.0.0.1:8443"


def stream_block(public: str = PUBLIC, challenge: str = CHALLENGE, https: str = HTTPS) -> str:
    """The ``stream { }`` block, for the top level of nginx.conf (next to ``http { }``, not inside it)."""
    listens = [public] if ":" in public else [public, f"[::]:{public}"]
    return "\n".join([
        "stream {",
        "    # $ssl_preread_alpn_protocols: the ALPN protocols the client offers, comma-separated.",
        "    map $ssl_preread_alpn_protocols $tls_upstream {",
        f"        \"~(^|,)acme-tls/1(,|$)\"  {challenge};  # the CA's tls-alpn-01 handshakes: the challenge step",
        f"        default                  {https};  # everything else: the HTTPS sites",
        "    }",
        "    server {",
        *(f"        listen {address};" for address in listens),
        "        ssl_preread on;",
        "        proxy_pass $tls_upstream;",
        "    }",
        "}",
    ]) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--public", default=PUBLIC, help="what nginx listens on for everyone (default: %(default)s)")
    p.add_argument("--challenge", default=CHALLENGE, help="where the challenge step listens (default: %(default)s)")
    p.add_argument("--https", default=HTTPS,
                   help="where the HTTPS server blocks listen now, instead of 443 (default: %(default)s)")
    args = p.parse_args()
    print(stream_block(args.public, args.challenge, args.https), end="")


if __name__ == "__main__":
    main()
