{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import apache, model with context %}
{%- set nfs = model.nfs %}
{%- set copy = nfs['copy'] if nfs else None %}
{%- set marker = salt['cluster.settings']('webcontent', {}).marker %}
{%- set unit = '/etc/systemd/system/' ~ apache.copy_unit %}
{%- set rsync_unit = '/etc/systemd/system/' ~ apache.rsync_unit ~ '.service' %}
{%- set dropin = '/etc/systemd/system/' ~ apache.service ~ '.service.d/' ~ apache.copy_unit ~ '.conf' %}
# Apache serves a copy of the docroot on this node's own disk (nfs.copy),
# refreshed from the nas's export by a timer and before Apache starts.
include:
  - {{ tplroot }}.package
  - {{ tplroot }}.docroot
{%- if copy %}

apache-copy-script:
  file.managed:
    - name: {{ apache.copy_script }}
    - source: salt://{{ tplroot }}/files/docroot-copy.sh
    - mode: "0755"
    - require:
      - pkg: apache-package-installed

apache-copy-directory:
  file.directory:
    - name: {{ copy.path }}
    - makedirs: true
    - mode: "0755"

apache-copy-service-unit:
  file.managed:
    - name: {{ unit }}.service
    - source: salt://{{ tplroot }}/files/docroot-copy.service.jinja
    - template: jinja
    - context:
        settings: {{ apache | json }}
        copy: {{ copy | json }}
        source: {{ nfs.docroot | json }}
        marker: {{ marker | json }}
{%- if salt['grains.get']('cluster_kernel:nfs_client', False) %}
        mountpoint: {{ nfs.mountpoint | json }}
{%- else %}
        mountpoint: ""
{%- endif %}

apache-copy-timer-unit:
  file.managed:
    - name: {{ unit }}.timer
    - source: salt://{{ tplroot }}/files/docroot-copy.timer.jinja
    - template: jinja
    - context:
        copy: {{ copy | json }}

# Apache starts with a fresh copy (when the nas answers): a node that was
# down serves what the export holds now, not what it held then. It wants the
# timer that keeps the copy fresh and the rsync daemon that offers it to the
# nas: they start with Apache at boot, and need no enabling of their own
# (each `systemctl enable` reloads systemd).
apache-copy-apache-dropin:
  file.managed:
    - name: {{ dropin }}
    - makedirs: true
    - contents: |
        # Managed by Salt (apache formula).
        [Unit]
        Wants={{ apache.copy_unit }}.service {{ apache.copy_unit }}.timer {{ apache.rsync_unit }}.service
        After={{ apache.copy_unit }}.service

apache-copy-daemon-reload:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: apache-copy-service-unit
      - file: apache-copy-timer-unit
      - file: apache-copy-apache-dropin
      - file: apache-copy-rsyncd-unit

# The first copy, or one made anew after its unit or script changed: before
# Apache is (re)loaded with it as its docroot.
apache-copy-refreshed:
  cmd.run:
    - name: systemctl start {{ apache.copy_unit }}.service
    - onchanges:
      - file: apache-copy-script
      - file: apache-copy-directory
      - file: apache-copy-service-unit
    - require:
      - cmd: apache-copy-daemon-reload
{%- if salt['grains.get']('cluster_kernel:nfs_client', False) %}
      - mount: apache-docroot-nfs-mounted
{%- else %}
      - file: apache-docroot-local-directory
{%- endif %}

apache-copy-timer-running:
  service.running:
    - name: {{ apache.copy_unit }}.timer
    - require:
      - cmd: apache-copy-refreshed

# The copy, read-only to the nas alone (an rsync daemon of its own): a nas
# rebuilt without its data restores its export from it. rsync has no
# checker of its own: the file is rendered from the validated model only.
apache-copy-rsyncd-config:
  file.managed:
    - name: {{ apache.rsyncd_config }}
    - source: salt://{{ tplroot }}/files/rsyncd.conf.jinja
    - template: jinja
    - mode: "0644"
    - context:
        copy: {{ copy | json }}
        rsync: {{ copy.rsync | json }}
        nas: {{ nfs.server_address | json }}
        lock_file: /run/{{ apache.rsync_unit }}/lock

apache-copy-rsyncd-unit:
  file.managed:
    - name: {{ rsync_unit }}
    - source: salt://{{ tplroot }}/files/docroot-rsync.service.jinja
    - template: jinja
    - context:
        copy: {{ copy | json }}
        config: {{ apache.rsyncd_config | json }}
        runtime_directory: {{ apache.rsync_unit }}

apache-copy-rsyncd-running:
  service.running:
    - name: {{ apache.rsync_unit }}
    - watch:
      - file: apache-copy-rsyncd-config
      - file: apache-copy-rsyncd-unit
    - require:
      - cmd: apache-copy-daemon-reload
      - cmd: apache-copy-refreshed
      - pkg: apache-package-installed
{%- else %}

# No copy (nfs.copy unset): Apache serves the mount; nothing of a copy is left.
apache-copy-timer-dead:
  service.dead:
    - name: {{ apache.copy_unit }}.timer
    - enable: false

apache-copy-rsyncd-dead:
  service.dead:
    - name: {{ apache.rsync_unit }}
    - enable: false

apache-copy-units-absent:
  file.absent:
    - names:
      - {{ dropin }}
      - {{ unit }}.timer
      - {{ unit }}.service
      - {{ rsync_unit }}
      - {{ apache.rsyncd_config }}
    - require:
      - service: apache-copy-timer-dead
      - service: apache-copy-rsyncd-dead

apache-copy-daemon-reload:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: apache-copy-units-absent
{%- endif %}
