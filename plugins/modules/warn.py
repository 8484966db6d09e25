#!/usr/bin/python
# Copyright: (c) 2026, SuperKuberneteX platform team
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: warn
short_description: Print a warning at the end of a run, changing nothing
version_added: 0.1.0
description:
  - Shows O(msg) as an Ansible warning (C([WARNING]), repeated in the recap
    output of most callbacks), for a condition the operator must act on but
    that must not fail the run, such as a tenant found on the cluster that
    the instances list no longer names.
  - Runs on the control node only (an action plugin); this file holds its
    documentation.
author:
  - SuperKuberneteX platform team (@superkubernetex)
options:
  msg:
    description:
      - The warning text, or a list of lines.
    type: raw
    required: true
attributes:
  check_mode:
    description: Changes nothing, so it runs in check mode too.
    support: full
  diff_mode:
    description: Has nothing to show in diff mode.
    support: none
'''

EXAMPLES = r'''
- name: Say which tenants are no longer listed
  superkubernetex.platform.warn:
    msg: "Tenants on the cluster but not in platform_instances: instance4"
'''

RETURN = r'''
msg:
  description: The warning shown.
  returned: always
  type: str
'''
