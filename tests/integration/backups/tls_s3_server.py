"""moto's S3 server over HTTPS, as pgBackRest needs it (test_pitr.py).

  .venv/bin/python tests/integration/backups/tls_s3_server.py HOST PORT CERT KEY

What `moto_server --ssl-cert --ssl-key` runs, with one difference: the
connection is closed with a TLS close_notify. Werkzeug's server closes
every connection after its response ("Connection: close") without one;
OpenSSL 3 then reports "unexpected eof while reading" to pgBackRest 2.45,
which fails every PUT (it reads to the end of the stream after an empty
body). Real S3 servers keep connections alive or close them properly.
"""
import signal
import ssl
import sys

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server


def main():
    host, port, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    server = make_server(host, port, DomainDispatcherApplication(create_backend_app), threaded=True,
                         ssl_context=(cert, key))
    plain_shutdown = server.shutdown_request

    def shutdown_request(request):
        if isinstance(request, ssl.SSLSocket):
            try:
                request.settimeout(5)
                request.unwrap()  # sends close_notify
            except (OSError, ValueError):
                pass
        plain_shutdown(request)

    server.shutdown_request = shutdown_request
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"serving S3 on https://{host}:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
