# Copyright: (c) 2026, SuperKuberneteX platform team
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Action of superkubernetex.platform.warn: print a warning, change nothing."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleActionFail
from ansible.module_utils.six import string_types
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(('msg',))
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        msg = self._task.args.get('msg')
        if isinstance(msg, list):
            msg = '\n'.join(str(line) for line in msg)
        if not isinstance(msg, string_types) or not msg.strip():
            raise AnsibleActionFail('msg: a non-empty string (or list of lines) is required')
        display.warning(msg)
        result.update(changed=False, msg=msg)
        return result
