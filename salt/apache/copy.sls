{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import apache, model with context %}
{%- set nfs = model.nfs %}
{%- set copy = nfs['copy'] if nfs else None %}
{%- set marker = salt['cluster.settings']('webcontent', {}).marker %}
{%- set unit = '/etc/systemd/system/' ~ apache.copy_unit %}
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

apache-copy-timer-unit:
  file.managed:
    - name: {{ unit }}.timer
    - source: salt://{{ tplroot }}/files/docroot-copy.timer.jinja
    - template: jinja
    - context:
        copy: {{ copy | json }}

# Apache starts with a fresh copy (when the nas answers): a node that was
# down serves what the export holds now, not what it held then.
apache-copy-apache-dropin:
  file.managed:
    - name: {{ dropin }}
    - makedirs: true
    - contents: |
        # Managed by Salt (apache formula).
        [Unit]
        Wants={{ apache.copy_unit }}.service
        After={{ apache.copy_unit }}.service

apache-copy-daemon-reload:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: apache-copy-service-unit
      - file: apache-copy-timer-unit
      - file: apache-copy-apache-dropin

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
    - enable: true
    - require:
      - cmd: apache-copy-refreshed
{%- else %}

# No copy (nfs.copy unset): Apache serves the mount; nothing of a copy is left.
apache-copy-timer-dead:
  service.dead:
    - name: {{ apache.copy_unit }}.timer
    - enable: false

apache-copy-units-absent:
  file.absent:
    - names:
      - {{ dropin }}
      - {{ unit }}.timer
      - {{ unit }}.service
    - require:
      - service: apache-copy-timer-dead

apache-copy-daemon-reload:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: apache-copy-units-absent
{%- endif %}
