# Copyright: (c) 2026, SuperKuberneteX platform team
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Reach a port of a pod from the control node without exposing it.

``PortForward`` opens a Unix socket in a private temporary directory (mode
0700, so no other local user can use it) and carries every connection made
to it to the pod through the Kubernetes API server, the mechanism behind
``kubectl port-forward``. Nothing is published outside the cluster (no
NodePort, no LoadBalancer), no kubectl binary is needed, and access is what
the caller's RBAC allows (``pods/portforward`` in that namespace).

The socket is named ``.s.PGSQL.<port>`` so libpq (psycopg, pg_dump) uses it
with ``host=<directory>`` and ``port=<port>``; redis-py uses ``path``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import select
import shutil
import socket
import tempfile
import threading

try:
    from kubernetes import client
    from kubernetes.stream import portforward
except ImportError:
    pass  # callers check HAS_KUBERNETES from module_utils.kube first


class PortForwardError(Exception):
    pass


class PortForward(object):
    """Context manager: ``with PortForward(api, 'skx-data', 'postgres-0', 5432) as pf:``
    then connect to ``pf.directory``/``pf.port`` (libpq) or ``pf.path``."""

    def __init__(self, api_client, namespace, pod, port):
        self.namespace = namespace
        self.pod = pod
        self.port = int(port)
        self._core = client.CoreV1Api(api_client)
        self._listener = None
        self.directory = None
        self.path = None

    def __enter__(self):
        try:
            phase = self._core.read_namespaced_pod(self.pod, self.namespace).status.phase
        except Exception as e:
            raise PortForwardError('cannot read pod %s/%s: %s' % (self.namespace, self.pod, e))
        if phase != 'Running':
            raise PortForwardError('pod %s/%s is %s, not Running' % (self.namespace, self.pod, phase))
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
        remote = None
        try:
            forward = portforward(self._core.connect_get_namespaced_pod_portforward,
                                  self.pod, self.namespace, ports=str(self.port))
            remote = forward.socket(self.port)
            remote.setblocking(True)
            while True:
                readable = select.select([local, remote], [], [])[0]
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (remote if sock is local else local).sendall(data)
        except Exception:
            return  # the client sees its connection closed and reports it
        finally:
            local.close()
            if remote is not None:
                remote.close()
