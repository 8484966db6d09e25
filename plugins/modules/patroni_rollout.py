#!/usr/bin/python
# Copyright: (c) 2026, SuperKuberneteX platform team
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: patroni_rollout
short_description: Roll a Patroni StatefulSet's members to its current template, replicas first, then a switchover
version_added: 0.4.0
description:
  - >-
    The PostgreSQL StatefulSet updates its pods C(OnDelete), so that the
    controller never restarts the primary like any other pod (a write
    outage). This module replaces the members that do not run the
    StatefulSet's current revision, each once the one before is Ready
    again, in this order. First the members that are not the primary
    (highest ordinal first). Then, when another member is Ready on the
    current revision, a switchover through Patroni's REST API
    (C(POST /switchover) with the leader only, so Patroni picks the
    candidate, a synchronous standby in synchronous mode). Last the
    former primary.
  - >-
    A single member is simply restarted, and so is the primary when no
    other member is Ready on the current revision (with a warning).
  - >-
    With fewer members than before, it first waits until the controller
    has removed those past the new count.
  - >-
    Then waits until every member of the StatefulSet is Ready on the
    current revision (so it also waits for the members a first deploy or
    a scale-up creates).
  - >-
    Reaches the REST API through a port-forward opened by the Kubernetes
    API to the primary pod, as M(superkubernetex.platform.patroni_cluster).
author:
  - SuperKuberneteX platform team (@superkubernetex)
options:
  namespace:
    description: Namespace of the StatefulSet.
    type: str
    required: true
  name:
    description: Name of the StatefulSet.
    type: str
    required: true
  primary_selector:
    description: Label selector of the primary pod (Patroni's role label with the members' labels).
    type: str
    required: true
  timeout:
    description: Seconds each step (a member Ready again, a new primary) may take.
    type: int
    default: 600
extends_documentation_fragment:
  - superkubernetex.platform.kube
  - superkubernetex.platform.patroni
attributes:
  check_mode:
    description:
      - Reports the members the StatefulSet in the cluster already marks
        outdated and whether it would switch over; changes nothing. A
        template change that the same preview shows for the StatefulSet
        replaces every member when applied (the primary last, after a
        switchover).
    support: full
  diff_mode:
    description: None.
    support: none
'''

EXAMPLES = r'''
- name: Bring the PostgreSQL members to the StatefulSet's template without a write outage
  superkubernetex.platform.patroni_rollout:
    namespace: skx-data
    name: postgres
    primary_selector: app.kubernetes.io/name=postgres,cluster-name=postgres,role=primary
    username: patroni
    password: "{{ patroni_restapi_password }}"
'''

RETURN = r'''
replaced:
  description: The pods replaced (or that check mode would replace), in order.
  returned: always
  type: list
  elements: str
switchover:
  description: The switchover made (or that check mode would make), as C(from -> to); empty when none.
  returned: always
  type: str
'''

import re
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.superkubernetex.platform.plugins.module_utils.kube import kube_argument_spec
from ansible_collections.superkubernetex.platform.plugins.module_utils.kubeapi import (
    ApiError, KubeClient, KubeConfigError)
from ansible_collections.superkubernetex.platform.plugins.module_utils.portforward import (
    PortForward, PortForwardError)
from ansible_collections.superkubernetex.platform.plugins.module_utils.patroni_api import call, patroni_argument_spec

REVISION_LABEL = 'controller-revision-hash'


class RolloutError(Exception):
    pass


def ordinal(name):
    match = re.search(r'-(\d+)$', name)
    return int(match.group(1)) if match else -1


def ready(pod):
    conditions = (pod.get('status') or {}).get('conditions') or []
    return (pod.get('metadata') or {}).get('deletionTimestamp') is None and any(
        c.get('type') == 'Ready' and c.get('status') == 'True' for c in conditions)


def revision(pod):
    return ((pod.get('metadata') or {}).get('labels') or {}).get(REVISION_LABEL)


def plan(pods, update_revision, primaries, replicas):
    """(members to replace before a switchover, the primary to replace after
    it or None): the outdated members that are not the primary, highest
    ordinal first, then the outdated primary. Pods at or past the ordinal
    `replicas` are left out: the controller removes them (fewer members)."""
    outdated = [p['metadata']['name'] for p in pods
                if revision(p) != update_revision and 0 <= ordinal(p['metadata']['name']) < replicas]
    primary = next((name for name in outdated if name in primaries), None)
    others = sorted((name for name in outdated if name != primary), key=ordinal, reverse=True)
    return others, primary


def selector_of(statefulset):
    labels = (((statefulset.get('spec') or {}).get('selector') or {}).get('matchLabels') or {})
    return ','.join('%s=%s' % item for item in sorted(labels.items()))


class Rollout(object):
    def __init__(self, api, params, sleep=time.sleep, clock=time.time):
        self.api, self.p, self.sleep, self.clock = api, params, sleep, clock
        self.namespace = params['namespace']

    def until(self, what, fn, interval=1.0):
        deadline = self.clock() + self.p['timeout']
        while True:
            value = fn()
            if value:
                return value
            if self.clock() > deadline:
                raise RolloutError('timed out after %s s waiting for %s' % (self.p['timeout'], what))
            self.sleep(interval)

    def statefulset(self):
        """The StatefulSet once its controller has seen its latest spec (None
        when it does not exist)."""
        if self.api.get('apps/v1', 'StatefulSet', self.p['name'], self.namespace) is None:
            return None

        def seen():
            sts = self.api.get('apps/v1', 'StatefulSet', self.p['name'], self.namespace)
            if sts is None:
                raise RolloutError('StatefulSet %s/%s was deleted during the run' % (self.namespace, self.p['name']))
            status = sts.get('status') or {}
            if (status.get('observedGeneration') or 0) >= (sts['metadata'].get('generation') or 0) \
                    and status.get('updateRevision'):
                return sts
            return None
        return self.until('the StatefulSet controller to read the new spec', seen)

    def pods(self, selector):
        return self.api.list('v1', 'Pod', self.namespace, label_selector=selector)

    def primaries(self):
        return [p['metadata']['name'] for p in self.pods(self.p['primary_selector'])
                if (p.get('status') or {}).get('phase') == 'Running' and ready(p)]

    def member_ready(self, name, update_revision, old_uid=None):
        def check():
            pod = self.api.get('v1', 'Pod', name, self.namespace)
            return bool(pod and pod['metadata'].get('uid') != old_uid and revision(pod) == update_revision
                        and ready(pod))
        self.until('%s Ready on revision %s' % (name, update_revision), check)

    def replace(self, name, update_revision):
        pod = self.api.get('v1', 'Pod', name, self.namespace)
        uid = pod['metadata'].get('uid') if pod else None
        if pod is not None:
            self.api.delete('v1', 'Pod', name, self.namespace)
        self.member_ready(name, update_revision, uid)

    def removed(self, selector, replicas):
        """Waits until the members past `replicas` are gone (fewer members:
        the controller removes them, highest first); until then the
        remaining ones may not be restarted, nor the synchronous standby
        moved."""
        self.until('the members from %s-%d on to be removed' % (self.p['name'], replicas),
                   lambda: not [p for p in self.pods(selector) if ordinal(p['metadata']['name']) >= replicas])

    def candidates(self, selector, update_revision, primary):
        """The members other than primary that are Ready on the update revision."""
        return [p['metadata']['name'] for p in self.pods(selector)
                if p['metadata']['name'] != primary and revision(p) == update_revision and ready(p)]

    def switchover(self, leader):
        """Patroni's switchover away from leader; returns the new primary."""
        auth = (self.p['username'], self.p['password']) if self.p['username'] else None
        with PortForward(self.api, self.namespace, leader, self.p['port']) as pf:
            status, text = call(pf.path, 'POST', '/switchover', {'leader': leader}, auth, timeout=self.p['timeout'])
        if status != 200:
            raise RolloutError('POST /switchover on %s answered %s: %s' % (leader, status, text.strip()[:300]))

        def moved():
            names = self.primaries()
            return names[0] if len(names) == 1 and names[0] != leader else None
        return self.until('a primary other than %s' % leader, moved, interval=0.5)


def main():
    argument_spec = kube_argument_spec()
    argument_spec.update(patroni_argument_spec())
    argument_spec.update(
        namespace=dict(type='str', required=True),
        name=dict(type='str', required=True),
        primary_selector=dict(type='str', required=True),
        timeout=dict(type='int', default=600),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_together=[('username', 'password')])
    p = module.params
    try:
        api = KubeClient(p['kubeconfig'], p['context'])
    except (KubeConfigError, IOError, OSError, ValueError) as e:
        module.fail_json(msg='cannot reach the cluster: %s' % e)
    rollout = Rollout(api, p)
    result = dict(changed=False, replaced=[], switchover='')
    try:
        sts = rollout.statefulset()
        if sts is None:
            if module.check_mode:
                # A preview before the first deploy: the StatefulSet's
                # creation is what the manifests' task reports.
                module.exit_json(**result)
            raise RolloutError('StatefulSet %s/%s does not exist' % (p['namespace'], p['name']))
        update_revision = sts['status']['updateRevision']
        want = (sts.get('spec') or {}).get('replicas', 1)
        if not module.check_mode:
            rollout.removed(selector_of(sts), want)
        members = rollout.pods(selector_of(sts))
        others, primary = plan(members, update_revision, rollout.primaries(), want)
        result['changed'] = bool(others or primary)
        if module.check_mode:
            result['replaced'] = others + ([primary] if primary else [])
            if primary and (others or rollout.candidates(selector_of(sts), update_revision, primary)):
                result['switchover'] = '%s -> another member' % primary
            module.exit_json(**result)
        for name in others:
            rollout.replace(name, update_revision)
            result['replaced'].append(name)
        if primary:
            if rollout.candidates(selector_of(sts), update_revision, primary):
                result['switchover'] = '%s -> %s' % (primary, rollout.switchover(primary))
            elif want > 1:
                module.warn('no other PostgreSQL member was Ready on the new template (a member that cannot be '
                            'scheduled next to the primary, whose pod still has the former anti-affinity?): '
                            '%s restarts without a switchover, a write outage' % primary)
            rollout.replace(primary, update_revision)
            result['replaced'].append(primary)
        for index in range(want):
            rollout.member_ready('%s-%d' % (p['name'], index), update_revision)
    except RolloutError as e:
        module.fail_json(msg='%s (replaced so far: %s)' % (e, ', '.join(result['replaced']) or 'none'), **result)
    except PortForwardError as e:
        module.fail_json(msg='cannot reach Patroni\'s REST API: %s' % e, **result)
    except (ApiError, IOError, OSError, ValueError) as e:
        module.fail_json(msg='the rollout stopped: %s (replaced so far: %s)'
                             % (e, ', '.join(result['replaced']) or 'none'), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
