{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import nfs, model, nfs_server with context %}
{%- set share = model.nfs %}
{%- set marker = salt['cluster.settings']('webcontent', {}).marker %}
# The NAS exports the shared docroot to the NFS client nodes' addresses only
# (not the internal network, whose DHCP pool serves anyone). root_squash: a
# web server's root cannot own or rewrite the shared files as root (the seed
# exported with no_root_squash).
include:
  - webcontent

nfs-server-package-installed:
  pkg.installed:
    - pkgs: {{ nfs.packages | json }}
    - refresh: false

nfs-server-export-directory:
  file.directory:
    - name: {{ share.export }}
    - makedirs: true
    - mode: "0755"

{%- if share and share['copy'] %}

nfs-server-restore-script:
  file.managed:
    - name: {{ nfs.restore_script }}
    - source: salt://{{ tplroot }}/files/docroot-restore.sh
    - mode: "0755"

# A nas whose export lost the docroot (a new disk, a rebuilt machine) takes
# it back from a web server's copy before the webcontent formula would make
# a new one: the copies keep refreshing from it (they hold the same marker).
nfs-server-docroot-restored:
  cmd.run:
    - name: {{ ([nfs.restore_script, share.export_docroot, marker] + share['copy'].rsync.sources) | map('quote') | join(' ') }}
    - unless: test -e {{ (share.export_docroot ~ '/' ~ marker) | quote }}
    - require:
      - pkg: nfs-server-package-installed
      - file: nfs-server-restore-script
      - file: nfs-server-export-directory
    - require_in:
      - file: webcontent-directory
{%- endif %}

nfs-server-exports-file:
  file.managed:
    - name: {{ nfs.exports_file }}
    - makedirs: true
    - mode: "0644"
    - contents: |
        # Managed by Salt (nfs formula) from the cluster topology; edits are overwritten.
{%- if share.export_to %}
        {{ share.export }}{% for client in share.export_to %} {{ client }}({{ share.options | join(',') }}){% endfor %}
{%- else %}
        # No node has a role in nfs.clients: nothing is exported (an export
        # line without clients would export to everyone).
{%- endif %}
    - require:
      - pkg: nfs-server-package-installed
{%- if nfs_server %}

# No NFSv4 delegations (nfsd hands them out as leases): a web server that
# read a file holds one, and the nas's own `rm` or `mv` over that file
# waits until every holder gave it back. A web server that is cut, or slow
# to answer the recall, held a publish on the nas for over a minute
# (docs/operations.md, "The docroot"). The copies (nfs.copy) read the export
# every few seconds and gain nothing from them. Set before nfsd starts; a
# running server grants no new one from then on.
nfs-server-leases-disabled:
  sysctl.present:
    - name: fs.leases-enable
    - value: 0

nfs-server-service-running:
  service.running:
    - name: {{ nfs.service }}
    - enable: true
    - require:
      - file: nfs-server-exports-file
      - file: nfs-server-export-directory
      - sysctl: nfs-server-leases-disabled

# New exports take effect without restarting the server.
nfs-server-exportfs-reload:
  cmd.run:
    - name: exportfs -ra
    - onchanges:
      - file: nfs-server-exports-file
    - require:
      - service: nfs-server-service-running
{%- else %}

nfs-server-unavailable:
  test.show_notification:
    - text: >-
        This kernel has no NFS server: {{ share.export }} is prepared and
        listed in {{ nfs.exports_file }}, but not served.
{%- endif %}
