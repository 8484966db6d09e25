# Copyright: (c) 2026, SuperKuberneteX platform team
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""One exchange with Patroni's REST API through a port-forward's local socket
(patroni_cluster, patroni_rollout)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import json
import socket


def patroni_argument_spec():
    """The REST API's options (doc fragment superkubernetex.platform.patroni)."""
    return dict(
        port=dict(type='int', default=8008),
        username=dict(type='str'),
        password=dict(type='str', no_log=True),
    )


def call(path, method, url, body=None, auth=None, timeout=30):
    """One HTTP/1.0 exchange with Patroni's REST API through the port-forward's
    socket: (status, text). Patroni answers without a Content-Length and
    ends its body by closing its connection, which a port-forward does not
    carry back; so the body ends where its JSON document is complete (or
    at the Content-Length, when one is given)."""
    data = json.dumps(body).encode('utf-8') if body is not None else b''
    head = ['%s %s HTTP/1.0' % (method, url), 'Host: patroni', 'Accept: application/json',
            'Content-Length: %d' % len(data)]
    if body is not None:
        head.append('Content-Type: application/json')
    if auth:
        head.append('Authorization: Basic ' + base64.b64encode(('%s:%s' % auth).encode('utf-8')).decode('ascii'))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        sock.sendall(('\r\n'.join(head) + '\r\n\r\n').encode('ascii') + data)
        received, sep, payload, status = b'', b'', b'', None
        while True:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                if not sep:
                    raise
                # A body that is not JSON (an error's text): what came in
                # the second after the headers.
                return status, payload.decode('utf-8', 'replace')
            received += chunk
            header, sep, payload = received.partition(b'\r\n\r\n')
            if sep:
                sock.settimeout(min(timeout, 1))
                lines = header.decode('latin-1').split('\r\n')
                status = int(lines[0].split()[1])
                length = [int(v) for k, _colon, v in (line.partition(':') for line in lines[1:])
                          if k.strip().lower() == 'content-length']
                text = payload.decode('utf-8', 'replace')
                if length and len(payload) >= length[0]:
                    return status, payload[:length[0]].decode('utf-8', 'replace')
                if not length and complete_json(text):
                    return status, text
            if not chunk:
                if sep:
                    return status, payload.decode('utf-8', 'replace')
                raise ValueError('the connection closed before an answer')
    finally:
        sock.close()


def complete_json(text):
    try:
        json.loads(text)
        return True
    except ValueError:
        return False
