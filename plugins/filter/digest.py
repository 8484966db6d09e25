# Copyright: SuperKuberneteX platform team
# Apache License 2.0 (see LICENSE)
"""A restart-on-change value that reveals nothing of what it is computed from."""

from __future__ import annotations

import hashlib
import hmac

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
name: keyed_digest
short_description: HMAC-SHA256 of a text with a key, for restart-on-change annotations of Secrets
description:
  - Returns the hex HMAC-SHA256 of the input with I(key). A pod template
    annotation (C(checksum/secret)) then changes whenever the Secret it is
    computed from changes, and shows nothing of it. Without the key, which
    stays in a Secret of the cluster, the value of a weak password cannot be
    guessed offline from the annotation, as it could from a plain SHA-256.
positional: key
options:
  _input:
    description: The text, usually the rendered Secret.
    type: str
    required: true
  key:
    description: The key, at least 32 characters (the platform's checksum key).
    type: str
    required: true
"""


def keyed_digest(text, key):
    if not isinstance(key, str) or len(key) < 32:
        raise AnsibleFilterError("keyed_digest: the key must be a text of at least 32 characters")
    return hmac.new(key.encode("utf-8"), str(text).encode("utf-8"), hashlib.sha256).hexdigest()


class FilterModule:
    def filters(self):
        return {"keyed_digest": keyed_digest}
