{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import apache, model, nfs_client with context %}
{%- set nfs = model.nfs %}
{%- if nfs_client %}

# The docroot is the NAS export, mounted over NFS.
apache-docroot-nfs-mounted:
  mount.mounted:
    - name: {{ nfs.mountpoint }}
    - device: {{ nfs.device }}
    - fstype: nfs
    - opts: {{ apache.nfs_options | json }}
    - mkmnt: true
    - persist: true
    - retry:
        attempts: {{ apache.nfs_mount_retry.attempts }}
        interval: {{ apache.nfs_mount_retry.interval }}
    - require:
      - pkg: apache-package-installed
{%- else %}

apache-docroot-nfs-unavailable:
  test.show_notification:
    - text: >-
        This kernel has no NFS client: {{ nfs.docroot }} is a local copy of
        the shared content, not a mount of {{ nfs.device }}.

apache-docroot-local-directory:
  file.directory:
    - name: {{ nfs.docroot }}
    - makedirs: true

include:
  - webcontent
{%- endif %}
