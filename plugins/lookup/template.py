# Copyright: (c) 2026, SuperKuberneteX platform team
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""ansible.builtin.template without its deep copy of every variable."""

from __future__ import annotations

import os
from collections import ChainMap

from ansible.errors import AnsibleError
from ansible.plugins.loader import lookup_loader
from ansible.plugins.lookup import LookupBase
from ansible.utils.display import Display

# The fast path uses ansible-core 2.19's templating internals (the
# requirements pin it); any other core, or an internal that changed shape,
# gets the builtin lookup: slower, same result.
try:
    from ansible.template import trust_as_template
    from ansible._internal._templating import _template_vars
    from ansible._internal._templating._engine import TemplateOptions, TemplateOverrides
except ImportError:
    trust_as_template = None

DOCUMENTATION = r"""
name: template
short_description: A role's template rendered with the caller's variables, for checksums and inlined files
description:
  - Renders each template file as M(ansible.builtin.template)'s lookup does,
    with the same search path, the same template_* variables and the same
    result, for the manifest templates that hash or inline another template
    of their role (C(checksum/config), a pod spec shared by several jobs).
  - The builtin lookup deep-copies every variable of the task before each
    template (0.1 to 0.2 s per call with the platform's variables, most of
    the cost of a component's render); here the template sees the caller's
    variables under a layer that holds the template_* variables and
    O(template_vars), and nothing is copied. Templating does not change the
    variables it reads.
  - It relies on ansible-core 2.19 internals; with another ansible-core, or
    when one of them fails, it runs the builtin lookup instead.
options:
  _terms:
    description: Template files, searched for as the builtin lookup does (the role's templates/ first).
    required: true
  template_vars:
    description: Variables added for these templates only.
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Hash the role's ConfigMap into a pod annotation
  ansible.builtin.debug:
    msg: "{{ lookup('superkubernetex.platform.template', 'configmap.yaml.j2') | hash('sha256') }}"
"""

RETURN = r"""
_raw:
  description: The rendered text of each template.
  type: list
  elements: str
"""

# The builtin lookup's defaults, passed as it passes them.
_OVERRIDES = dict(variable_start_string='{{', variable_end_string='}}', comment_start_string='{#',
                  comment_end_string='#}', trim_blocks=True)


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        if trust_as_template is not None:
            try:
                return self._run_fast(terms, variables, **kwargs)
            except (AttributeError, TypeError, NameError) as e:  # an internal of another shape
                Display().warning('superkubernetex.platform.template: this ansible-core\'s templating internals '
                                  'differ from 2.19\'s (%s); using the builtin template lookup' % e)
        builtin = lookup_loader.get('ansible.builtin.template', loader=self._loader, templar=self._templar)
        return builtin.run(terms, variables=variables, **kwargs)

    def _run_fast(self, terms, variables, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        extra = self.get_option('template_vars') or {}
        variables = variables if variables is not None else {}
        ret = []
        for term in terms:
            path = self.find_file_in_search_path(variables, 'templates', term)
            if not path:
                raise AnsibleError('the template file %s could not be found for the lookup' % term)
            text = trust_as_template(self._loader.get_text_file_contents(path))
            searchpath = [os.path.dirname(path)]
            for p in variables.get('ansible_search_path', []):
                searchpath += [os.path.join(p, 'templates'), p]
            layer = _template_vars.generate_ansible_template_vars(
                path=term, fullpath=path, include_ansible_managed='ansible_managed' not in variables)
            layer.update(extra)
            templar = self._templar.copy_with_new_env(available_variables=ChainMap(layer, variables),
                                                      searchpath=searchpath)
            ret.append(templar._engine.template(text, options=TemplateOptions(
                escape_backslashes=False, overrides=TemplateOverrides.from_kwargs(_OVERRIDES))))
        return ret
