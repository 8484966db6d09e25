# Copyright: (c) 2026, SuperKuberneteX platform team
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Reach a port of a pod from the control node without exposing it.

``PortForward`` opens a Unix socket in a private temporary directory (mode
0700, so no other local user can use it) and carries every connection made
to it to the pod through the Kubernetes API server, the mechanism behind
``kubectl port-forward``: one websocket per connection to the pod's
``portforward`` subresource. Nothing is published outside the cluster (no
NodePort, no LoadBalancer), no kubectl binary is needed, and access is what
the caller's RBAC allows (``pods/portforward`` in that namespace).

The socket is named ``.s.PGSQL.<port>`` so libpq (psycopg, pg_dump) uses it
with ``host=<directory>`` and ``port=<port>``; redis-py uses ``path``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import socket
import tempfile
import threading

from ansible_collections.superkubernetex.platform.plugins.module_utils.kubeapi import ApiError

# The portforward protocol (v4.channel.k8s.io): every binary message starts
# with its channel byte, 0 for the port's data and 1 for its errors; the
# first message of each channel holds the port number (2 bytes) only.
DATA, ERROR = 0, 1
OPCODE_CLOSE = 0x8


class PortForwardError(Exception):
    pass


def resolve_pod(api, namespace, pod=None, selector=None):
    """The name of the one Running pod named ``pod``, or labelled ``selector``
    (for example the PostgreSQL primary, which Patroni labels ``role=primary``:
    whichever member holds the leader lock); PortForwardError otherwise."""
    if selector:
        try:
            pods = api.list('v1', 'Pod', namespace, label_selector=selector)
        except ApiError as e:
            raise PortForwardError('cannot list the pods labelled %s in %s: %s' % (selector, namespace, e.message))
        running = sorted(p['metadata']['name'] for p in pods
                         if (p.get('status') or {}).get('phase') == 'Running'
                         and not p['metadata'].get('deletionTimestamp'))
        if len(running) != 1:
            raise PortForwardError('%s Running pod(s) labelled %s in %s (%s), one expected%s' % (
                len(running), selector, namespace, ', '.join(running) or 'none',
                ': a failover may be under way, run again in a moment' if not running else ''))
        return running[0]
    try:
        found = api.get('v1', 'Pod', pod, namespace)
    except ApiError as e:
        raise PortForwardError('cannot read pod %s/%s: %s' % (namespace, pod, e.message))
    if found is None:
        raise PortForwardError('pod %s/%s does not exist' % (namespace, pod))
    phase = (found.get('status') or {}).get('phase')
    if phase != 'Running':
        raise PortForwardError('pod %s/%s is %s, not Running' % (namespace, pod, phase))
    return pod


class PortForward(object):
    """Context manager: ``with PortForward(api, 'skx-data', 'postgres-1', 5432) as pf:``
    or ``PortForward(api, 'skx-data', None, 5432, selector='role=primary')``
    (api: a module_utils.kubeapi.KubeClient) then connect to
    ``pf.directory``/``pf.port`` (libpq) or ``pf.path``. With a selector,
    the pod is resolved once, on entry: every connection goes to it."""

    def __init__(self, api, namespace, pod, port, selector=None):
        self.api = api
        self.namespace = namespace
        self.pod = pod
        self.selector = selector
        self.port = int(port)
        self._listener = None
        self.directory = None
        self.path = None

    def __enter__(self):
        self.pod = resolve_pod(self.api, self.namespace, self.pod, self.selector)
        self.directory = tempfile.mkdtemp(prefix='skx-pf-')
        self.path = os.path.join(self.directory, '.s.PGSQL.%d' % self.port)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(16)
        thread = threading.Thread(target=self._accept, name='port-forward %s' % self.pod)
        thread.daemon = True
        thread.start()
        return self

    def __exit__(self, *exc):
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        shutil.rmtree(self.directory, ignore_errors=True)
        return False

    def _accept(self):
        while True:
            try:
                local, dummy = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._pipe, args=(local,))
            thread.daemon = True
            thread.start()

    def _pipe(self, local):
        try:
            ws = self.api.websocket('/api/v1/namespaces/%s/pods/%s/portforward' % (self.namespace, self.pod),
                                    dict(ports=self.port))
        except Exception:
            local.close()  # the client sees its connection closed and reports it
            return
        upstream = threading.Thread(target=self._upstream, args=(local, ws))
        upstream.daemon = True
        upstream.start()
        started = set()
        try:
            while True:
                opcode, data = ws.recv_data()
                if opcode == OPCODE_CLOSE or not data:
                    return
                channel, payload = data[0], data[1:]
                if channel not in started:
                    started.add(channel)
                    payload = payload[2:]
                if channel == DATA and payload:
                    local.sendall(payload)
                elif channel == ERROR and payload:
                    return  # the pod refused the port: the client sees a closed connection
        except Exception:
            return
        finally:
            local.close()
            ws.shutdown()

    @staticmethod
    def _upstream(local, ws):
        try:
            while True:
                data = local.recv(65536)
                if not data:
                    return
                ws.send_binary(bytes(bytearray([DATA])) + data)
        except Exception:
            return
        finally:
            # Ends the exchange: the API server answers with its own close,
            # which ends the reading side above.
            try:
                ws.send_close()
            except Exception:
                pass
