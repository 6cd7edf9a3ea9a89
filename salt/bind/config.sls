{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import bind, model with context %}

include:
  - {{ tplroot }}.package

bind-config-zone-directory:
  file.directory:
    - name: {{ bind.zone_dir }}
    - user: root
    - group: bind
    - mode: "0755"
    - makedirs: true
    - require:
      - pkg: bind-package-installed
{%- for zone in model.dns.zones %}
{%-   set path = bind.zone_dir ~ '/db.' ~ zone.name %}
{#-   The serial moves on only when the records change (their digest). #}
{%-   set serial = salt['cluster.zone_serial'](path, zone.digest) %}

# named-checkzone validates each zone before it replaces the live file.
bind-config-zone-{{ zone.name }}:
  file.managed:
    - name: {{ path }}
    - source: salt://{{ tplroot }}/files/zone.jinja
    - template: jinja
    - mode: "0644"
    - check_cmd: named-checkzone -q {{ zone.name }}
    - context:
        zone: {{ zone | json }}
        serial: {{ serial }}
    - require:
      - file: bind-config-zone-directory
{%- endfor %}

bind-config-options:
  file.managed:
    - name: {{ bind.options_file }}
    - source: salt://{{ tplroot }}/files/named.conf.options.jinja
    - template: jinja
    - mode: "0644"
    - group: bind
    - check_cmd: named-checkconf
    - context:
        settings: {{ bind | json }}
    - require:
      - pkg: bind-package-installed

bind-config-local:
  file.managed:
    - name: {{ bind.local_file }}
    - source: salt://{{ tplroot }}/files/named.conf.local.jinja
    - template: jinja
    - mode: "0644"
    - group: bind
    - check_cmd: named-checkconf
    - context:
        zones: {{ model.dns.zones | json }}
        zone_dir: {{ bind.zone_dir }}
    - require:
      - pkg: bind-package-installed
