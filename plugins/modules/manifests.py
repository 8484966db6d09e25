#!/usr/bin/python
# Copyright: (c) 2026, SuperKuberneteX platform team
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: manifests
short_description: Apply the manifest templates of one component in one batch, or write them to the render directory
version_added: 0.2.0
description:
  - The one way the collection's roles send objects to the cluster. The
    action plugin renders O(templates) (names of C(.j2) files in the
    C(templates/) folder of the calling role, without C(.j2)) with the task's
    variables; the module then applies every object they hold with one API
    client, in file order, by server-side apply with O(field_manager),
    conflicts forced.
  - The result says for each object whether it was created, configured
    (changed) or unchanged; with C(--diff), one diff per changed object (the
    live object before and after, without status and server-written
    metadata).
  - In check mode every object is sent as a server-side dry run, so the
    preview is what the API would store, defaults and admission included.
    An object whose namespace does not exist yet, or whose kind the API does
    not serve yet (a custom resource whose definition comes in the same run),
    cannot be dry-run; it is reported as to be created and not sent.
  - In render mode (O(render=true)) the rendered files are written to
    O(render_dir)/O(component)/ and nothing is sent to a cluster; the same
    template feeds the cluster and C(build/manifests). The action plugin
    writes them on the controller itself, without running the module.
  - Secret values never appear in the result or a diff; a diff marks each
    key C((hidden)), or C((hidden, changed)) when its value changes.
  - Options left unset take the platform's settings (role
    C(superkubernetex.platform.platform)), O(field_manager) from
    C(platform_field_manager), O(render) from C(platform_render),
    O(render_dir) from C(platform_render_dir), O(kubeconfig) from
    C(platform_kubeconfig), O(context) from C(platform_kube_context).
author:
  - SuperKuberneteX platform team (@superkubernetex)
options:
  component:
    description: Name of the component, used in messages and as the folder under O(render_dir).
    type: str
    required: true
  templates:
    description:
      - Template names (without C(.j2)) in the calling role's C(templates/)
        folder, rendered by the action plugin. Each may hold several YAML
        documents. An empty list sends what earlier O(defer) calls queued.
    type: list
    elements: str
    required: true
  field_manager:
    description: Field manager of the server-side apply.
    type: str
  render:
    description: Write the rendered files to O(render_dir) instead of applying them.
    type: bool
  render_dir:
    description: Directory the rendered files go to (under O(component)/), with O(render=true).
    type: path
  wait:
    description:
      - After the batch, wait until every Deployment, StatefulSet and
        DaemonSet it holds has rolled out (every pod runs the current
        template and is available), all at once. A converged platform passes
        at the first look. Not in check mode or render mode.
    type: bool
    default: false
  wait_timeout:
    description: Seconds the wait may take for the whole batch.
    type: int
    default: 600
  defer:
    description:
      - In a play that sets C(platform_manifests_batch=true)
        (C(playbooks/platform.yml)), render the files now but send them
        later, with the next call that does not defer (or the play's last
        call, O(templates=[])), in one module run with one API client for
        all of them, in the order they were queued, and one wait for every
        workload the queued calls asked to wait for. The queue is the host fact
        C(platform_manifests_queue); a deferring task's result is hidden
        (it would print every queued document).
      - A call whose files hold a Secret is deferred only while the fact
        cache is Ansible's memory one (the default, C(fact_caching=memory)),
        which keeps host facts in the controller's memory for the run, as
        it keeps registered results. With a persistent fact cache
        (jsonfile, redis, AWX's fact storage), which would write the queue
        out, such a call sends the queue and its own files at once.
      - Elsewhere (a role used alone, render mode) the files are sent or
        written at once.
      - Only for calls that nothing later in the play needs applied at once
        (a port-forward to a pod, a read of the object).
    type: bool
    default: false
extends_documentation_fragment:
  - superkubernetex.platform.kube
notes:
  - The rendered documents reach the module as the internal option
    C(files); the action plugin leaves the module's invocation out of the
    result, since it holds Secret values.
'''

EXAMPLES = r'''
- name: Apply the namespaces, quotas, default limits and network policies
  superkubernetex.platform.manifests:
    component: namespaces
    templates: [namespaces.yaml, quotas.yaml, network-policies.yaml]
'''

RETURN = r'''
objects:
  description: Every object of the batch, in order, with what was done to it.
  returned: always
  type: list
  elements: dict
  contains:
    object:
      description: kind/namespace/name (kind/name for cluster-wide objects).
      type: str
    action:
      description: >-
        created, configured or unchanged; in check mode the same words for
        what would happen; unsent when the object could not be dry-run
        (namespace or kind not there yet) and would be created; written or
        unchanged in render mode, for a file.
      type: str
'''

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.superkubernetex.platform.plugins.module_utils.kube import kube_argument_spec
from ansible_collections.superkubernetex.platform.plugins.module_utils.kubeapi import (
    ApiError, KubeClient, KubeConfigError)
from ansible_collections.superkubernetex.platform.plugins.module_utils.manifests import (
    WORKLOAD_KINDS, RolloutFailed, changed, comparable, masked, object_label, render_files, rolled_out)

try:
    import yaml
except ImportError:
    yaml = None

# A custom resource definition applied earlier in the same batch takes a
# moment to be served: discovery is asked again this many times, a second
# apart, before its objects fail.
DISCOVERY_RETRIES = 30


def dump(obj):
    return yaml.safe_dump(obj, default_flow_style=False, sort_keys=True) if obj is not None else ''


class Batch(object):
    def __init__(self, module, api):
        self.module = module
        self.api = api
        self.check = module.check_mode
        self.namespaces = {}

    def namespace_exists(self, name):
        if name not in self.namespaces:
            self.namespaces[name] = self.api.get('v1', 'Namespace', name) is not None
        return self.namespaces[name]

    def served(self, obj):
        """Whether the API serves obj's kind (asked again for a while outside
        check mode: its definition may have been applied a moment ago)."""
        attempts = 1 if self.check else DISCOVERY_RETRIES
        for attempt in range(attempts):
            if self.api.resource(obj['apiVersion'], obj['kind'], refresh=attempt > 0) is not None:
                return True
            if attempt + 1 < attempts:
                time.sleep(1)
        return False

    @staticmethod
    def unsent(obj, reason):
        """What check mode says of an object the API cannot dry-run yet: it
        would be created, shown as the manifest holds it."""
        label = object_label(obj)
        header = '%s (would be created; not sent to the API: %s)' % (label, reason)
        return (dict(object=label, action='unsent', reason=reason),
                dict(before_header=header, after_header=header, before='', after=dump(masked(obj))))

    def apply(self, obj):
        label = object_label(obj)
        namespace = (obj.get('metadata') or {}).get('namespace')
        if self.check and namespace and not self.namespace_exists(namespace):
            return self.unsent(obj, 'namespace %s not created yet' % namespace)
        if not self.served(obj):
            if self.check:
                return self.unsent(obj, '%s %s not served yet' % (obj['apiVersion'], obj['kind']))
            self.module.fail_json(msg='%s: the API serves no %s in %s (is its CustomResourceDefinition '
                                      'installed?)' % (label, obj['kind'], obj['apiVersion']))
        try:
            before = self.api.get(obj['apiVersion'], obj['kind'], obj['metadata']['name'], namespace)
            after = self.api.apply(obj, self.module.params['field_manager'], dry_run=self.check)
        except ApiError as e:
            self.module.fail_json(msg='%s: the API refused the apply: %s' % (label, e.message))
        if before is None:
            action = 'created'
        elif changed(before, after):
            action = 'configured'
        else:
            action = 'unchanged'
        diff = None
        if action != 'unchanged':
            diff = dict(before_header=label, after_header=label,
                        before=dump(masked(comparable(before))), after=dump(masked(comparable(after), before)))
        return dict(object=label, action=action), diff

    def wait(self, objects, timeout):
        """Wait for every workload of objects to roll out, together."""
        pending = [o for o in objects if o['kind'] in WORKLOAD_KINDS]
        deadline = time.time() + timeout
        while pending:
            still = []
            for obj in pending:
                try:
                    live = self.api.get(obj['apiVersion'], obj['kind'], obj['metadata']['name'],
                                        obj['metadata'].get('namespace'))
                    if live is None or not rolled_out(live):
                        still.append(obj)
                except RolloutFailed as e:
                    self.module.fail_json(msg=str(e))
                except ApiError as e:
                    self.module.fail_json(msg='%s: %s' % (object_label(obj), e.message))
            pending = still
            if pending and time.time() > deadline:
                self.module.fail_json(msg='not rolled out after %ss: %s'
                                          % (timeout, ', '.join(object_label(o) for o in pending)))
            if pending:
                time.sleep(2)


def main():
    argument_spec = kube_argument_spec()
    argument_spec.update(
        component=dict(type='str', required=True),
        field_manager=dict(type='str', required=True),
        render=dict(type='bool', default=False),
        render_dir=dict(type='path'),
        files=dict(type='list', elements='dict', required=True),
        wait=dict(type='bool', default=False),
        wait_timeout=dict(type='int', default=600),
        # Handled by the action plugin (the queue); declared for the docs.
        defer=dict(type='bool', default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_if=[('render', True, ('render_dir',))])
    if yaml is None:
        module.fail_json(msg='PyYAML is required by superkubernetex.platform.manifests')

    if module.params['render']:
        objects, diffs = render_files(module.params['render_dir'], module.params['component'],
                                      module.params['files'], module.check_mode)
    else:
        try:
            api = KubeClient(module.params['kubeconfig'], module.params['context'])
        except (KubeConfigError, IOError, OSError, ValueError) as e:
            module.fail_json(msg='cannot reach the cluster for %s: %s' % (module.params['component'], e))
        batch = Batch(module, api)
        objects, diffs = [], []
        for item in module.params['files']:
            for obj in item['documents']:
                entry, diff = batch.apply(obj)
                entry['file'] = item['name']
                entry['component'] = item.get('component') or module.params['component']
                objects.append(entry)
                if diff:
                    diffs.append(diff)
        # A file queued by an earlier call (defer) carries its own wait.
        waited = [item for item in module.params['files'] if item.get('wait', module.params['wait'])]
        if waited and not module.check_mode:
            batch.wait([d for item in waited for d in item['documents']],
                       max(int(item.get('wait_timeout') or module.params['wait_timeout']) for item in waited))
    result = dict(changed=any(o['action'] not in ('unchanged',) for o in objects), objects=objects)
    if module._diff:
        result['diff'] = diffs
    module.exit_json(**result)


if __name__ == '__main__':
    main()
