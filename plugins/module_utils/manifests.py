# Copyright: (c) 2026, SuperKuberneteX platform team
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""What the manifests module compares and shows, without the API: the
fields that say whether an apply changed an object, and Secret values
replaced by markers so that no diff or result ever carries one."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import os

# Written by the API server or by controllers, never by our manifests: left
# out of the comparison and of the diff.
VOLATILE_METADATA = ('managedFields', 'resourceVersion', 'generation', 'uid', 'creationTimestamp')
SECRET_VALUE_FIELDS = ('data', 'stringData')
HIDDEN = '(hidden)'
HIDDEN_CHANGED = '(hidden, changed)'


def object_label(obj):
    """kind/namespace/name, the name an object is reported by."""
    metadata = obj.get('metadata') or {}
    if metadata.get('namespace'):
        return '%s/%s/%s' % (obj.get('kind'), metadata['namespace'], metadata.get('name'))
    return '%s/%s' % (obj.get('kind'), metadata.get('name'))


def comparable(obj):
    """The object without what the server or its controllers write (status,
    resourceVersion, managedFields...): equal before and after an apply
    exactly when the apply changed nothing we manage."""
    if obj is None:
        return None
    result = copy.deepcopy(obj)
    result.pop('status', None)
    metadata = result.get('metadata') or {}
    for key in VOLATILE_METADATA:
        metadata.pop(key, None)
    return result


def secret_values(obj):
    """A Secret's values as the API stores them (data), whatever form the
    manifest used; empty for any other kind."""
    if not obj or obj.get('kind') != 'Secret':
        return {}
    return dict(obj.get('data') or {})


def masked(obj, before=None):
    """A copy of obj for a diff or a result with every Secret value replaced
    by a marker: HIDDEN_CHANGED where it differs from the same key of before
    (the object as it was), HIDDEN otherwise. Show masked(before) next to
    masked(after, before): a changed value then shows as a changed line."""
    if not obj or obj.get('kind') != 'Secret':
        return obj
    result = copy.deepcopy(obj)
    previous = secret_values(before) if before is not None else None
    for field in SECRET_VALUE_FIELDS:
        values = result.get(field)
        if not values:
            continue
        result[field] = dict(
            (key, HIDDEN_CHANGED if previous is not None and previous.get(key) != value else HIDDEN)
            for key, value in values.items())
    return result


def changed(before, after):
    """Whether applying turned before (None: absent) into a different after."""
    return comparable(before) != comparable(after)


WORKLOAD_KINDS = ('Deployment', 'StatefulSet', 'DaemonSet')


class RolloutFailed(Exception):
    pass


def rolled_out(obj):
    """True once every pod of a Deployment, StatefulSet or DaemonSet (a dict
    as the API returns it) runs the current template and is available, what
    kubectl rollout status waits for. Raises RolloutFailed when the
    Deployment's progress deadline has passed."""
    metadata, spec, status = obj.get('metadata') or {}, obj.get('spec') or {}, obj.get('status') or {}
    if (status.get('observedGeneration') or 0) < (metadata.get('generation') or 0):
        return False
    kind = obj.get('kind')
    if kind == 'DaemonSet':
        want = status.get('desiredNumberScheduled') or 0
        return (status.get('updatedNumberScheduled') or 0) == want and (status.get('numberAvailable') or 0) == want
    want = 1 if spec.get('replicas') is None else spec['replicas']
    if kind == 'Deployment':
        for condition in status.get('conditions') or []:
            if condition.get('type') == 'Progressing' and condition.get('reason') == 'ProgressDeadlineExceeded':
                raise RolloutFailed('%s exceeded its progress deadline: %s'
                                    % (object_label(obj), condition.get('message', '')))
        return all((status.get(field) or 0) == want for field in ('updatedReplicas', 'availableReplicas', 'replicas'))
    return ((status.get('updatedReplicas') or 0) == want and (status.get('readyReplicas') or 0) == want
            and status.get('currentRevision') == status.get('updateRevision'))


def render_files(render_dir, component, files, check_mode=False):
    """Write the rendered files of one component to render_dir/component/,
    each only when its text differs. Returns (objects, diffs) as the module
    does: a Secret's file is never shown in a diff."""
    directory = os.path.join(render_dir, component)
    objects, diffs = [], []
    for item in files:
        path = os.path.join(directory, item['name'])
        current = None
        if os.path.exists(path):
            with open(path) as f:
                current = f.read()
        action = 'unchanged' if current == item['text'] else 'written'
        if action == 'written':
            diffs.append(dict(before_header=path, after_header=path, before=current or '',
                              after=item['text']) if not item.get('secret') else
                         dict(before_header=path, after_header=path, before='', after='(a Secret: not shown)\n'))
            if not check_mode:
                if not os.path.isdir(directory):
                    os.makedirs(directory)
                with open(path, 'w') as f:
                    f.write(item['text'])
                os.chmod(path, 0o644)
        objects.append(dict(object=path, action=action))
    return objects, diffs
