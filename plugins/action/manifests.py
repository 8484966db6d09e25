# Copyright: (c) 2026, SuperKuberneteX platform team
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Renders the calling role's manifest templates on the controller, then runs
the manifests module on them (see plugins/modules/manifests.py). In render
mode the files are written here, on the controller, and no module runs: a
render costs templating and a file write, not a module run per component."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import yaml

from ansible import constants as C
from ansible.errors import AnsibleActionFail
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible_collections.superkubernetex.platform.plugins.module_utils.manifests import render_files

try:
    from ansible.template import trust_as_template
except ImportError:  # ansible-core < 2.19
    trust_as_template = None

# Unset options take these platform settings (roles/platform/defaults).
PLATFORM_DEFAULTS = dict(
    field_manager='platform_field_manager',
    render='platform_render',
    render_dir='platform_render_dir',
    kubeconfig='platform_kubeconfig',
    context='platform_kube_context',
)
OPTIONS = frozenset(['component', 'templates', 'wait', 'wait_timeout', 'defer'] + list(PLATFORM_DEFAULTS))

# With this play variable true (playbooks/platform.yml), a call with
# defer: true renders its files and queues them in this host fact; the next
# call without defer, or whose files hold a Secret while the fact cache is a
# persistent one (or the play's final one, templates: []), sends the queue and its own files to the API in one module
# run, in order, and waits for every workload a queued call asked to wait
# for.
BATCH_VARIABLE = 'platform_manifests_batch'

# libyaml's parser when PyYAML has it (same documents, an eighth of the time
# of the pure Python one on the platform's templates).
YAML_LOADER = getattr(yaml, 'CSafeLoader', yaml.SafeLoader)
QUEUE_FACT = 'platform_manifests_queue'


# The fact cache plugins that keep host facts in the controller's memory only,
# for the run: nothing is written out.
MEMORY_FACT_CACHES = frozenset(['memory', 'ansible.builtin.memory', 'ansible.legacy.memory'])


def fact_cache_in_memory():
    """Whether the run's fact cache (CACHE_PLUGIN, ANSIBLE_CACHE_PLUGIN,
    [defaults] fact_caching) keeps host facts in memory only."""
    return str(C.config.get_config_value('CACHE_PLUGIN') or 'memory') in MEMORY_FACT_CACHES


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _VALID_ARGS = OPTIONS

    def render_template(self, name, task_vars):
        source = self._find_needle('templates', name + '.j2')
        text = self._loader.get_text_file_contents(source)
        if trust_as_template is not None:
            text = trust_as_template(text)
        searchpath = list(task_vars.get('ansible_search_path', [])) + [os.path.dirname(source)]
        templar = self._templar.copy_with_new_env(searchpath=searchpath, available_variables=task_vars)
        if trust_as_template is not None:
            return templar.template(text, escape_backslashes=False, preserve_trailing_newlines=True)
        return templar.do_template(text, escape_backslashes=False, preserve_trailing_newlines=True)

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        task_vars = task_vars or {}
        args = dict(self._task.args)
        unknown = sorted(set(args) - OPTIONS)
        if unknown:
            raise AnsibleActionFail('superkubernetex.platform.manifests: unknown option(s) %s; expected %s'
                                    % (', '.join(unknown), ', '.join(sorted(OPTIONS))))
        templates = args.pop('templates', None)
        if not isinstance(templates, list) or not all(isinstance(t, str) for t in templates):
            raise AnsibleActionFail('superkubernetex.platform.manifests: templates must be a list of '
                                    'template names (without .j2) of the calling role, got %r' % (templates,))
        defer = boolean(args.pop('defer', False) or False, strict=False)
        if not args.get('component'):
            raise AnsibleActionFail('superkubernetex.platform.manifests: component is required')
        for option, variable in PLATFORM_DEFAULTS.items():
            if args.get(option) is None and variable in task_vars:
                args[option] = self._templar.template(task_vars[variable])

        files = []
        for name in templates:
            text = str(self.render_template(name, task_vars))
            try:
                documents = [d for d in yaml.load_all(text, Loader=YAML_LOADER) if d]
            except yaml.YAMLError as e:
                raise AnsibleActionFail('template %s.j2 of %s does not render to YAML: %s'
                                        % (name, args.get('component'), e))
            for d in documents:
                if not isinstance(d, dict) or not d.get('kind') or not (d.get('metadata') or {}).get('name'):
                    raise AnsibleActionFail('template %s.j2 of %s renders a document that is not a Kubernetes '
                                            'object with kind and metadata.name' % (name, args.get('component')))
            files.append(dict(name=name, text=text, documents=documents, component=str(args['component']),
                              wait=boolean(args.get('wait') or False, strict=False),
                              wait_timeout=int(args.get('wait_timeout') or 600),
                              secret=any(d.get('kind') == 'Secret' for d in documents)))

        if boolean(args.get('render') or False, strict=False):
            if not args.get('render_dir'):
                raise AnsibleActionFail('superkubernetex.platform.manifests: render mode needs render_dir '
                                        '(platform_render_dir)')
            render_dir = os.path.expanduser(str(args['render_dir']))
            objects, diffs = render_files(render_dir, str(args['component']), files,
                                          check_mode=bool(self._task.check_mode))
            result.update(changed=any(o['action'] != 'unchanged' for o in objects), objects=objects)
            if self._task.diff:
                result['diff'] = diffs
            return result

        # The API needs the parsed documents only: the text stays out of the
        # queue (a host fact, copied into every later task's variables).
        for item in files:
            item.pop('text')
        queued = list((task_vars.get('ansible_facts') or {}).get(QUEUE_FACT) or [])
        # A Secret enters the queue only while the fact cache is Ansible's
        # memory one (the default): the queue is a host fact, which a
        # persistent cache (jsonfile, redis, AWX's fact storage) writes out.
        # With one, a call whose files hold a Secret sends at once, the
        # queue first.
        holds_secret = any(item['secret'] for item in files)
        if (defer and (not holds_secret or fact_cache_in_memory())
                and boolean(task_vars.get(BATCH_VARIABLE) or False, strict=False)):
            queued += files
            # Every rendered document of the queue would be printed under -v.
            result.update(changed=False, ansible_facts={QUEUE_FACT: queued}, _ansible_no_log=True,
                          msg='%d file(s) of %s queued for the next apply' % (len(files), args['component']))
            return result
        files = queued + files
        if not files:
            result.update(changed=False, objects=[], msg='nothing to apply')
            return result
        args['files'] = files
        if queued:
            result['ansible_facts'] = {QUEUE_FACT: []}

        module_result = self._execute_module(module_name='superkubernetex.platform.manifests', module_args=args,
                                             task_vars=task_vars)
        # The invocation holds the rendered documents, Secret values included.
        module_result.pop('invocation', None)
        result.update(module_result)
        return result
