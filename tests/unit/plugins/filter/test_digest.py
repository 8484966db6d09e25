import hashlib
import hmac

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.superkubernetex.platform.plugins.filter.digest import keyed_digest

KEY = "k" * 40


def test_the_digest_is_the_hmac_and_changes_with_the_text_and_the_key():
    text = "kind: Secret\nstringData:\n  password: hunter2\n"
    assert keyed_digest(text, KEY) == hmac.new(KEY.encode(), text.encode(), hashlib.sha256).hexdigest()
    assert keyed_digest(text, KEY) != keyed_digest(text.replace("hunter2", "hunter3"), KEY)
    assert keyed_digest(text, KEY) != keyed_digest(text, "j" * 40)
    # Not the plain digest an offline guess could be tested against.
    assert keyed_digest(text, KEY) != hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("key", [None, "", "short-key"])
def test_a_missing_or_short_key_is_refused(key):
    with pytest.raises(AnsibleFilterError, match="at least 32 characters"):
        keyed_digest("x", key)
