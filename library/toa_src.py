#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: toa-fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: toa_src
short_description: Put a set of small text files into one directory in a single step
description:
  - Writes every file of I(files) into I(dest) (created when missing) whose content differs,
    and sets the mode, owner and group of each file and of I(dest). Files already right are
    not touched; files in I(dest) that I(files) does not name are left alone.
  - Made for the TOA module source the role registers with DKMS (about 50 kB), in one module run
    instead of one C(copy) round trip per file, with the same result.
  - Check mode writes nothing and reports what would change; diff mode shows each changed file.
options:
  dest:
    description: Absolute path of the directory to fill.
    type: path
    required: true
  files:
    description:
      - File name (a plain name, no directory part) mapped to its whole content as text
        (written as UTF-8, byte for byte; no newline is added or removed).
    type: dict
    required: true
  mode:
    description: Mode of every file.
    type: str
    default: '0644'
  directory_mode:
    description: Mode of I(dest).
    type: str
    default: '0755'
  owner:
    description: Owner of I(dest) and of every file.
    type: str
    default: root
  group:
    description: Group of I(dest) and of every file.
    type: str
    default: root
author:
  - toa-fleet contributors (!UNKNOWN)
'''

EXAMPLES = r'''
- name: Put the TOA module source in /usr/src for DKMS
  toa_src:
    dest: /usr/src/toa-1.0.0
    files:
      Kbuild: "{{ lookup('ansible.builtin.file', 'toa-src/Kbuild', rstrip=false) }}"
      dkms.conf: "{{ lookup('ansible.builtin.file', 'toa-src/dkms.conf', rstrip=false) }}"
  register: toa_src_result
'''

RETURN = r'''
dest:
  description: The directory.
  returned: always
  type: str
  sample: /usr/src/toa-1.0.0
written:
  description: Files whose content was (in check mode, would be) written, sorted.
  returned: always
  type: list
  elements: str
  sample: [toa_main.c]
attributes_changed:
  description: Paths whose mode, owner or group was (would be) changed without a content change.
  returned: always
  type: list
  elements: str
'''

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_native

# File contents as the task gives them: text (unicode on Python 2) or bytes.
TEXT_TYPES = (type(u''), bytes)


def bad_names(names):
    """File names that are not plain names inside one directory."""
    return sorted(n for n in names
                  if not n or n in ('.', '..') or '/' in n or '\0' in n)


def current_bytes(path):
    """Content of @path, or None when it does not exist as a regular file."""
    if not os.path.isfile(path) or os.path.islink(path):
        return None
    with open(path, 'rb') as handle:
        return handle.read()


def write_atomic(module, dest, name, data):
    """Write @data to dest/name through a temporary file in the same directory."""
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % name, dir=dest)
    try:
        with os.fdopen(fd, 'wb') as handle:
            handle.write(data)
        module.atomic_move(tmp, os.path.join(dest, name))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def fs_args(path, mode, owner, group):
    """Arguments for set_fs_attributes_if_different; the SELinux context stays as it is."""
    return {'path': path, 'mode': mode, 'owner': owner, 'group': group,
            'secontext': [None, None, None, None], 'attributes': None}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            dest=dict(type='path', required=True),
            files=dict(type='dict', required=True),
            mode=dict(type='str', default='0644'),
            directory_mode=dict(type='str', default='0755'),
            owner=dict(type='str', default='root'),
            group=dict(type='str', default='root'),
        ),
        supports_check_mode=True,
    )
    p = module.params
    dest = p['dest']
    files = p['files']
    if not os.path.isabs(dest):
        module.fail_json(msg='dest must be an absolute path, got %r' % dest)
    bad = bad_names(files)
    if bad:
        module.fail_json(msg='files: names must be plain file names without a directory part; '
                             'fix %s' % ', '.join(repr(n) for n in bad))
    not_text = sorted(n for n, v in files.items() if not isinstance(v, TEXT_TYPES))
    if not_text:
        module.fail_json(msg='files: every value must be the file content as a string; fix %s'
                             % ', '.join(repr(n) for n in not_text))
    if os.path.exists(dest) and not os.path.isdir(dest):
        module.fail_json(msg='dest %s exists and is not a directory: remove it or choose another '
                             'dest' % dest)

    changed = False
    written = []
    attributes = []
    diffs = []
    created = not os.path.isdir(dest)
    if created:
        changed = True
        diffs.append({'before_header': dest, 'after_header': dest,
                      'before': {'state': 'absent'}, 'after': {'state': 'directory'}})
        if not module.check_mode:
            try:
                os.makedirs(dest)
            except OSError as exc:
                module.fail_json(msg='cannot create %s: %s' % (dest, to_native(exc)))
    if not created or not module.check_mode:
        dir_args = fs_args(dest, p['directory_mode'], p['owner'], p['group'])
        if module.set_fs_attributes_if_different(dir_args, False) and not created:
            attributes.append(dest)
            changed = True

    for name in sorted(files):
        path = os.path.join(dest, name)
        data = to_bytes(files[name], errors='surrogate_or_strict')
        before = None if created else current_bytes(path)
        if before != data:
            changed = True
            written.append(name)
            if module._diff:
                diffs.append({'before_header': path, 'after_header': path,
                              'before': '' if before is None else to_native(before, errors='replace'),
                              'after': to_native(data)})
            if module.check_mode:
                continue
            try:
                write_atomic(module, dest, name, data)
            except (IOError, OSError) as exc:
                module.fail_json(msg='cannot write %s: %s' % (path, to_native(exc)),
                                 written=written[:-1])
        if module.check_mode and (created or name in written):
            continue
        file_args = fs_args(path, p['mode'], p['owner'], p['group'])
        if module.set_fs_attributes_if_different(file_args, False) and name not in written:
            attributes.append(path)
            changed = True

    result = {'changed': changed, 'dest': dest, 'written': written,
              'attributes_changed': attributes}
    if module._diff and diffs:
        result['diff'] = diffs
    module.exit_json(**result)


if __name__ == '__main__':
    main()
