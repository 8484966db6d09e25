# Copyright: (c) 2026, SuperKuberneteX platform team
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""A small Kubernetes REST client for the modules that only read, apply and
delete objects (manifests, kube_info).

Why not the kubernetes Python client: importing it and building its dynamic
client's discovery takes about 0.6 s per module run, most of what an
idempotent module run costs (docs/benchmarks.md). This client uses the
standard library's HTTPS connection, one per module run, kept alive, and
asks discovery only for the API groups the run touches.

Credentials, as kubectl reads them from the kubeconfig: client certificate
and key (file or data), bearer token (inline or tokenFile), basic auth, and
exec credential plugins (EKS, GKE, AKS, OIDC helpers); the cluster's CA (file
or data), tls-server-name and insecure-skip-tls-verify. Without a kubeconfig
it uses the pod's service account. The legacy auth-provider entries and
proxy-url are refused with a message. Port-forward (module_utils/
portforward.py) goes through websocket(), with websocket-client.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import json
import os
import ssl
import subprocess
import tempfile
import time

try:
    from http.client import HTTPSConnection, HTTPConnection, HTTPException
    from urllib.parse import urlencode, urlsplit, quote
except ImportError:  # Python 2 is not supported by the collection
    HTTPSConnection = HTTPConnection = HTTPException = None

try:
    import yaml
except ImportError:
    yaml = None

try:
    from importlib.util import find_spec
    HAS_WEBSOCKET = find_spec('websocket') is not None
except ImportError:
    HAS_WEBSOCKET = False

SERVICE_ACCOUNT = '/var/run/secrets/kubernetes.io/serviceaccount'


class KubeConfigError(Exception):
    """The kubeconfig (or the in-cluster environment) cannot give a client."""


class ApiError(Exception):
    """The API answered with an error status."""

    def __init__(self, status, message, body=None):
        super(ApiError, self).__init__('%s %s' % (status, message))
        self.status = status
        self.message = message
        self.body = body


class NotFound(ApiError):
    pass


def _load_yaml(path):
    if yaml is None:
        raise KubeConfigError('PyYAML is required to read a kubeconfig')
    with open(path) as f:
        return yaml.safe_load(f) or {}


def _merged_kubeconfig(paths):
    """kubectl's merge of several kubeconfig files: for each named entry the
    first file that has it wins, and so does the first current-context.
    Each entry remembers its file's folder (relative paths are relative to
    it)."""
    merged = dict(clusters={}, users={}, contexts={}, current=None)
    for path in paths:
        if not os.path.exists(path):
            continue
        data = _load_yaml(path)
        base = os.path.dirname(os.path.abspath(path))
        for section, key in (('clusters', 'cluster'), ('users', 'user'), ('contexts', 'context')):
            for entry in data.get(section) or []:
                if isinstance(entry, dict) and entry.get('name') not in merged[section]:
                    merged[section][entry.get('name')] = (entry.get(key) or {}, base)
        if merged['current'] is None and data.get('current-context'):
            merged['current'] = data['current-context']
    return merged


def _path(value, base):
    value = os.path.expanduser(str(value))
    return value if os.path.isabs(value) else os.path.join(base, value)


def _exec_credential(spec, base):
    """Run an exec credential plugin (client.authentication.k8s.io) and
    return its status: token, or clientCertificateData and clientKeyData."""
    command = spec.get('command')
    if not command:
        raise KubeConfigError('the kubeconfig user has an exec entry without command')
    if '/' in command and not os.path.isabs(command):
        command = os.path.join(base, command)
    env = dict(os.environ)
    for item in spec.get('env') or []:
        env[str(item.get('name'))] = str(item.get('value'))
    env['KUBERNETES_EXEC_INFO'] = json.dumps(dict(
        apiVersion=spec.get('apiVersion') or 'client.authentication.k8s.io/v1',
        kind='ExecCredential', spec=dict(interactive=False)))
    try:
        out = subprocess.run([command] + [str(a) for a in spec.get('args') or []], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise KubeConfigError('the kubeconfig exec credential plugin %s did not run: %s' % (command, e))
    if out.returncode != 0:
        raise KubeConfigError('the kubeconfig exec credential plugin %s failed (exit %d): %s'
                              % (command, out.returncode, out.stderr.decode('utf-8', 'replace').strip()[-500:]))
    try:
        return json.loads(out.stdout.decode('utf-8')).get('status') or {}
    except ValueError:
        raise KubeConfigError('the kubeconfig exec credential plugin %s printed no ExecCredential JSON' % command)


class _Credentials(object):
    """What a connection needs: server URL, TLS context, headers."""

    def __init__(self, server, context, headers, server_name=None):
        self.server = server
        self.context = context
        self.headers = headers
        self.server_name = server_name


def _tls_context(cluster, base):
    if cluster.get('insecure-skip-tls-verify'):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if cluster.get('certificate-authority-data'):
        return ssl.create_default_context(
            cadata=base64.b64decode(cluster['certificate-authority-data']).decode('ascii'))
    if cluster.get('certificate-authority'):
        return ssl.create_default_context(cafile=_path(cluster['certificate-authority'], base))
    return ssl.create_default_context()


def _load_client_cert(context, cert_pem, key_pem):
    """ssl loads a certificate chain from files only: write both to a private
    temporary file, load it, remove it at once."""
    fd, path = tempfile.mkstemp(prefix='skx-client-', suffix='.pem')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(cert_pem.rstrip(b'\n') + b'\n' + key_pem)
        context.load_cert_chain(path)
    finally:
        os.unlink(path)


def credentials(kubeconfig=None, context=None):
    """The server, TLS context and headers for a kubeconfig file (default:
    KUBECONFIG, then ~/.kube/config) and context (default: its current one),
    or the pod's service account when no kubeconfig exists."""
    if kubeconfig:
        paths = [os.path.expanduser(kubeconfig)]
        if not os.path.exists(paths[0]):
            raise KubeConfigError('kubeconfig %s does not exist' % kubeconfig)
    else:
        paths = [os.path.expanduser(p) for p in
                 (os.environ.get('KUBECONFIG') or '~/.kube/config').split(os.pathsep) if p]
    if not any(os.path.exists(p) for p in paths):
        if context:
            raise KubeConfigError('context %s asked for, but no kubeconfig found (%s)' % (context, ', '.join(paths)))
        return _in_cluster(paths)
    config = _merged_kubeconfig(paths)
    name = context or config['current']
    if not name or name not in config['contexts']:
        raise KubeConfigError('the kubeconfig (%s) has no context %s' % (', '.join(paths), name or '(none set)'))
    ctx = config['contexts'][name][0]
    if ctx.get('cluster') not in config['clusters']:
        raise KubeConfigError('context %s names cluster %s, which the kubeconfig lacks' % (name, ctx.get('cluster')))
    cluster, cluster_base = config['clusters'][ctx['cluster']]
    user, user_base = config['users'].get(ctx.get('user'), ({}, ''))
    if cluster.get('proxy-url'):
        raise KubeConfigError('cluster %s goes through proxy-url, which this collection does not support: '
                              'reach the API directly' % ctx['cluster'])
    if user.get('auth-provider'):
        raise KubeConfigError('user %s uses a legacy auth-provider (%s): use an exec credential plugin instead'
                              % (ctx.get('user'), (user['auth-provider'] or {}).get('name')))
    server = str(cluster.get('server') or '')
    if not server:
        raise KubeConfigError('cluster %s has no server' % ctx['cluster'])
    tls = _tls_context(cluster, cluster_base) if server.startswith('https') else None
    headers = {}
    cert = key = None
    if user.get('client-certificate-data'):
        cert = base64.b64decode(user['client-certificate-data'])
    elif user.get('client-certificate'):
        with open(_path(user['client-certificate'], user_base), 'rb') as f:
            cert = f.read()
    if user.get('client-key-data'):
        key = base64.b64decode(user['client-key-data'])
    elif user.get('client-key'):
        with open(_path(user['client-key'], user_base), 'rb') as f:
            key = f.read()
    token = user.get('token')
    if not token and user.get('tokenFile'):
        with open(_path(user['tokenFile'], user_base)) as f:
            token = f.read().strip()
    if user.get('exec'):
        status = _exec_credential(user['exec'], user_base)
        token = status.get('token') or token
        if status.get('clientCertificateData'):
            cert = status['clientCertificateData'].encode('ascii')
            key = (status.get('clientKeyData') or '').encode('ascii')
    if cert and key and tls is not None:
        _load_client_cert(tls, cert, key)
    if token:
        headers['Authorization'] = 'Bearer ' + token
    elif user.get('username'):
        pair = ('%s:%s' % (user['username'], user.get('password') or '')).encode('utf-8')
        headers['Authorization'] = 'Basic ' + base64.b64encode(pair).decode('ascii')
    return _Credentials(server, tls, headers, cluster.get('tls-server-name'))


def _in_cluster(paths):
    host, port = os.environ.get('KUBERNETES_SERVICE_HOST'), os.environ.get('KUBERNETES_SERVICE_PORT')
    token_file = os.path.join(SERVICE_ACCOUNT, 'token')
    if not host or not os.path.exists(token_file):
        raise KubeConfigError('no kubeconfig found (%s) and not running in a pod: set kubeconfig or KUBECONFIG'
                              % ', '.join(paths))
    with open(token_file) as f:
        token = f.read().strip()
    if ':' in host:
        host = '[%s]' % host
    tls = ssl.create_default_context(cafile=os.path.join(SERVICE_ACCOUNT, 'ca.crt'))
    return _Credentials('https://%s:%s' % (host, port or '443'), tls, {'Authorization': 'Bearer ' + token})


class _HTTPSConnection(HTTPSConnection if HTTPSConnection else object):
    """An HTTPS connection that checks the certificate against
    tls-server-name when the kubeconfig sets one, else against the host."""

    server_name = None

    def connect(self):
        HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.server_name or self.host)


class KubeClient(object):
    """One connection to the API server, reused for every request."""

    def __init__(self, kubeconfig=None, context=None, timeout=60):
        creds = credentials(kubeconfig, context)
        url = urlsplit(creds.server)
        self.url = url
        self.tls = creds.context
        self.server_name = creds.server_name
        self.prefix = url.path.rstrip('/')
        self.headers = dict(creds.headers, Accept='application/json')
        self.timeout = timeout
        host, port = url.hostname, url.port
        if url.scheme == 'https':
            server_name = creds.server_name

            def connect():
                conn = _HTTPSConnection(host, port or 443, context=creds.context, timeout=timeout)
                conn.server_name = server_name
                return conn
        else:
            def connect():
                return HTTPConnection(host, port or 80, timeout=timeout)
        self._connect = connect
        self._conn = None
        self._groups = {}

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method, path, query=None, body=None, content_type='application/json'):
        """Send one request; return the decoded JSON answer. Raises NotFound
        (404) or ApiError (other error status, the API's message)."""
        url = self.prefix + path
        if query:
            url += '?' + urlencode([(k, v) for k, v in query.items() if v is not None])
        headers = dict(self.headers)
        payload = None
        if body is not None:
            payload = json.dumps(body).encode('utf-8')
            headers['Content-Type'] = content_type
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = self._connect()
            try:
                self._conn.request(method, url, body=payload, headers=headers)
                response = self._conn.getresponse()
                data = response.read()
                break
            except (HTTPException, OSError) as e:
                # A kept-alive connection the server closed: reconnect once.
                self.close()
                if attempt == 2:
                    raise ApiError(0, 'cannot reach the API server: %s' % e)
        try:
            decoded = json.loads(data.decode('utf-8')) if data else {}
        except ValueError:
            decoded = {'message': data.decode('utf-8', 'replace')[:500]}
        if response.status >= 400:
            message = decoded.get('message') if isinstance(decoded, dict) else None
            cls = NotFound if response.status == 404 else ApiError
            raise cls(response.status, message or response.reason, decoded)
        return decoded

    def websocket(self, path, query=None, subprotocols=('v4.channel.k8s.io',)):
        """A websocket to path (exec, attach, portforward), through
        websocket-client, with this client's credentials; blocking, no
        timeout once open."""
        import websocket as websocket_client
        scheme = 'wss' if self.url.scheme == 'https' else 'ws'
        url = '%s://%s%s%s' % (scheme, self.url.netloc, self.prefix, path)
        if query:
            url += '?' + urlencode(query)
        headers = ['%s: %s' % (k, v) for k, v in self.headers.items() if k != 'Accept']
        sslopt = dict(context=self.tls) if self.tls is not None else {}
        if self.server_name:
            sslopt['server_hostname'] = self.server_name
        ws = websocket_client.create_connection(url, header=headers, sslopt=sslopt, subprotocols=list(subprotocols),
                                                timeout=self.timeout, enable_multithread=True)
        ws.settimeout(None)
        return ws

    # Discovery, asked once per API group version and run.
    def resource(self, api_version, kind, refresh=False):
        """(plural name, namespaced) of kind in api_version, None when the API
        does not serve it."""
        if refresh or api_version not in self._groups:
            path = '/api/v1' if api_version == 'v1' else '/apis/' + api_version
            try:
                listing = self.request('GET', path).get('resources') or []
            except NotFound:
                listing = []
            self._groups[api_version] = dict(
                (r['kind'], (r['name'], bool(r.get('namespaced')))) for r in listing if '/' not in r['name'])
        return self._groups[api_version].get(kind)

    def path(self, api_version, kind, namespace=None, name=None):
        found = self.resource(api_version, kind)
        if found is None:
            raise NotFound(404, 'the API serves no %s in %s' % (kind, api_version))
        plural, namespaced = found
        base = '/api/v1' if api_version == 'v1' else '/apis/' + api_version
        if namespaced and namespace:
            base += '/namespaces/' + quote(namespace, safe='')
        base += '/' + plural
        if name:
            base += '/' + quote(name, safe='')
        return base

    def get(self, api_version, kind, name, namespace=None):
        """The object, or None when it does not exist."""
        try:
            return self.request('GET', self.path(api_version, kind, namespace, name))
        except NotFound:
            return None

    def list(self, api_version, kind, namespace=None, label_selector=None, field_selector=None):
        answer = self.request('GET', self.path(api_version, kind, namespace),
                              query=dict(labelSelector=label_selector, fieldSelector=field_selector))
        items = answer.get('items') or []
        for item in items:
            # A list's items carry neither (kubectl adds them back too).
            item.setdefault('apiVersion', api_version)
            item.setdefault('kind', kind)
        return items

    def apply(self, obj, field_manager, dry_run=False):
        """Server-side apply of obj, conflicts forced; returns the object as stored."""
        metadata = obj.get('metadata') or {}
        query = dict(fieldManager=field_manager, force='true', dryRun='All' if dry_run else None)
        return self.request('PATCH', self.path(obj['apiVersion'], obj['kind'], metadata.get('namespace'),
                                               metadata['name']),
                            query=query, body=obj, content_type='application/apply-patch+yaml')

    def delete(self, api_version, kind, name, namespace=None, dry_run=False):
        """Delete the object (foreground propagation); False when it was absent."""
        try:
            # With a body, the API server reads the options from it only: a
            # dryRun query parameter next to it would be ignored.
            options = dict(kind='DeleteOptions', apiVersion='v1', propagationPolicy='Foreground')
            if dry_run:
                options['dryRun'] = ['All']
            self.request('DELETE', self.path(api_version, kind, namespace, name), body=options)
            return True
        except NotFound:
            return False

    def wait_gone(self, api_version, kind, name, namespace=None, timeout=300, interval=1.0):
        deadline = time.time() + timeout
        while self.get(api_version, kind, name, namespace) is not None:
            if time.time() > deadline:
                raise ApiError(0, '%s %s still exists after %ss' % (kind, name, timeout))
            time.sleep(interval)
