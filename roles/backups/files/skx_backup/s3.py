"""The S3-compatible export: a minimal client on the Python standard
library, and the upload, read-back and retention of the backups.

The toolbox image carries python3 but not boto3, so the backup jobs sign
their requests themselves (AWS Signature Version 4, path-style addressing,
which every S3-compatible server accepts: AWS, MinIO, Ceph RGW, Garage...).
Only what the backups need: PUT from a file, streaming GET, HEAD, list and
delete. Objects are limited to 5 GiB (a single PUT; no multipart upload).
"""
import datetime
import hashlib
import hmac
import http.client
import os
import ssl
import urllib.parse
import xml.etree.ElementTree as ET

from .common import SIDECARS, STAMP_FORMAT, Failed, Refused, log, read_secret_file

UNSIGNED_EMPTY = hashlib.sha256(b"").hexdigest()
_S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
_CHUNK = 1024 * 1024


class S3Error(Exception):
    """An S3 request failed; the message names the operation and status."""


def _quote(value, safe="-_.~"):
    return urllib.parse.quote(value, safe=safe)


def _hmac(key, msg):
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def sign_v4(method, host, path, query, headers, payload_hash, access_key,
            secret_key, region, now=None, service="s3"):
    """Return the headers of a request signed with AWS Signature Version 4.

    `path` is the already URI-encoded absolute path, `query` a dict of
    unencoded query parameters, `headers` extra headers to sign. The result
    carries Host, X-Amz-Date, X-Amz-Content-Sha256 and Authorization.
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = now.strftime("%Y%m%d")
    signed = {k.lower(): " ".join(str(v).strip().split()) for k, v in headers.items()}
    signed["host"] = host
    signed["x-amz-date"] = amz_date
    signed["x-amz-content-sha256"] = payload_hash
    names = sorted(signed)
    canonical_query = "&".join(
        f"{_quote(k)}={_quote(str(v))}" for k, v in sorted(query.items()))
    canonical_request = "\n".join([
        method, path, canonical_query,
        "".join(f"{n}:{signed[n]}\n" for n in names),
        ";".join(names), payload_hash])
    scope = f"{day}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join([
        "AWS4-HMAC-SHA256", amz_date, scope,
        hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()])
    key = _hmac(("AWS4" + secret_key).encode("utf-8"), day)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    out = dict(headers)
    out.update({
        "Host": host,
        "X-Amz-Date": amz_date,
        "X-Amz-Content-Sha256": payload_hash,
        "Authorization": (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
                          f"SignedHeaders={';'.join(names)}, Signature={signature}"),
    })
    return out


class S3Client:
    """Path-style client for one bucket of an S3-compatible endpoint."""

    def __init__(self, endpoint, bucket, access_key, secret_key,
                 region="us-east-1", ca_file=None, timeout=300):
        url = urllib.parse.urlsplit(endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise S3Error(f"S3 endpoint {endpoint!r} is not an http(s) URL")
        self.scheme = url.scheme
        self.host = url.netloc
        self.base = url.path.rstrip("/")
        self.bucket = bucket
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.timeout = timeout
        self.context = ssl.create_default_context(cafile=ca_file) if url.scheme == "https" else None

    def _path(self, key=""):
        path = f"{self.base}/{_quote(self.bucket)}"
        if key:
            path += "/" + _quote(key, safe="-_.~/")
        return path

    def _connection(self):
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, timeout=self.timeout, context=self.context)
        return http.client.HTTPConnection(self.host, timeout=self.timeout)

    def _request(self, method, key="", query=None, headers=None, body=None,
                 payload_hash=UNSIGNED_EMPTY, expect=(200,)):
        query = query or {}
        path = self._path(key)
        signed = sign_v4(method, self.host, path, query, headers or {}, payload_hash,
                         self.access_key, self.secret_key, self.region)
        target = path
        if query:
            target += "?" + "&".join(f"{_quote(k)}={_quote(str(v))}" for k, v in sorted(query.items()))
        conn = self._connection()
        conn.request(method, target, body=body, headers=signed)
        resp = conn.getresponse()
        if resp.status not in expect:
            detail = resp.read(2000).decode("utf-8", "replace")
            conn.close()
            raise S3Error(f"S3 {method} {self.bucket}/{key} answered HTTP {resp.status}: {detail}")
        return conn, resp

    def put_file(self, key, filename, sha256_hex, size, metadata=None):
        """Upload a file; the signed payload hash lets the server reject a
        body that changed in transit."""
        headers = {"Content-Length": str(size), "Content-Type": "application/octet-stream"}
        for name, value in (metadata or {}).items():
            headers[f"x-amz-meta-{name}"] = value
        with open(filename, "rb") as body:
            conn, resp = self._request("PUT", key, headers=headers, body=body,
                                       payload_hash=sha256_hex)
            resp.read()
            conn.close()

    def put_bytes(self, key, data, content_type="text/plain"):
        headers = {"Content-Length": str(len(data)), "Content-Type": content_type}
        conn, resp = self._request("PUT", key, headers=headers, body=data,
                                   payload_hash=hashlib.sha256(data).hexdigest())
        resp.read()
        conn.close()

    def sha256_of(self, key):
        """Download an object and return (sha256 hex, size): the proof that
        what the bucket serves is what was uploaded."""
        conn, resp = self._request("GET", key)
        digest = hashlib.sha256()
        size = 0
        while True:
            chunk = resp.read(_CHUNK)
            if not chunk:
                break
            digest.update(chunk)
            size += len(chunk)
        conn.close()
        return digest.hexdigest(), size

    def download(self, key, filename):
        conn, resp = self._request("GET", key)
        with open(filename, "wb") as out:
            while True:
                chunk = resp.read(_CHUNK)
                if not chunk:
                    break
                out.write(chunk)
        conn.close()

    def list(self, prefix):
        """Yield (key, size) of every object under prefix."""
        token = None
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            conn, resp = self._request("GET", query=query)
            root = ET.fromstring(resp.read())
            conn.close()
            for item in root.iter(f"{_S3_NS}Contents"):
                yield item.findtext(f"{_S3_NS}Key"), int(item.findtext(f"{_S3_NS}Size") or 0)
            if root.findtext(f"{_S3_NS}IsTruncated") != "true":
                return
            token = root.findtext(f"{_S3_NS}NextContinuationToken")

    def delete(self, key):
        conn, resp = self._request("DELETE", key, expect=(200, 204))
        resp.read()
        conn.close()


# ------------------------------------------------------------------ export

def s3_client(args):
    if not args.s3_endpoint:
        return None
    if not args.s3_bucket:
        raise Refused("SKX_S3_ENDPOINT is set but SKX_S3_BUCKET is empty: name the bucket")
    if args.s3_credentials_dir:
        access = read_secret_file(args.s3_credentials_dir, "access_key_id")
        secret = read_secret_file(args.s3_credentials_dir, "secret_access_key")
    else:
        access = os.environ.get("AWS_ACCESS_KEY_ID", "")
        secret = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
    if not access or not secret:
        raise Refused("S3 export: no credentials (SKX_S3_CREDENTIALS_DIR with files "
                      "access_key_id and secret_access_key)")
    return S3Client(args.s3_endpoint, args.s3_bucket, access, secret,
                    region=args.s3_region, ca_file=args.s3_ca_file or None)


def s3_key(args, *parts):
    return "/".join(p.strip("/") for p in (args.s3_prefix,) + parts if p and p.strip("/"))


def s3_export(args, subdir, path, digest, pattern):
    """Upload a backup and its checksum file, then download it back and
    compare checksums: an export that cannot be read back is a failure."""
    client = s3_client(args)
    if client is None:
        return
    name = os.path.basename(path)
    key = s3_key(args, subdir, name)
    size = os.path.getsize(path)
    try:
        client.put_file(key, path, digest, size, metadata={"sha256": digest})
        remote, remote_size = client.sha256_of(key)
        if remote != digest or remote_size != size:
            raise Failed(f"S3 export of {name} does not read back identical: sha256 {remote} "
                         f"({remote_size} bytes), expected {digest} ({size} bytes)")
        with open(path + ".sha256", "rb") as f:
            client.put_bytes(key + ".sha256", f.read())
        if os.path.exists(path + ".json"):
            with open(path + ".json", "rb") as f:
                client.put_bytes(key + ".json", f.read(), "application/json")
    except (S3Error, OSError) as exc:
        raise Failed(f"S3 export of {name} to {args.s3_bucket}/{key} failed: {exc}") from None
    log(f"s3: exported {name} to {args.s3_bucket}/{key}, read back with sha256 {digest}")
    s3_prune(args, client, subdir, pattern)


def s3_prune(args, client, subdir, pattern, now=None):
    """Remove exported backups older than the S3 retention (by the time in
    their name), always keeping the newest."""
    days = args.s3_retention_days
    if days <= 0:
        return []
    now = now or datetime.datetime.now(datetime.timezone.utc)
    prefix = s3_key(args, subdir) + "/"
    backups = {}
    for key, _ in client.list(prefix):
        m = pattern.match(key[len(prefix):])
        if m:
            backups[key] = datetime.datetime.strptime(m.group("stamp"), STAMP_FORMAT).replace(
                tzinfo=datetime.timezone.utc)
    newest = max(backups, key=backups.get, default=None)
    removed = []
    for key, created in sorted(backups.items()):
        if key != newest and created < now - datetime.timedelta(days=days):
            for suffix in ("",) + SIDECARS:
                client.delete(key + suffix)
            removed.append(key)
            log(f"s3 retention: removed {key}")
    return removed
