{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import alertmanager with context %}
{%- set log = alertmanager.log %}

alertmanager-log-script-managed:
  file.managed:
    - name: {{ log.script }}
    - source: salt://{{ tplroot }}/files/alert-log.py
    - mode: "0755"

alertmanager-log-unit-managed:
  file.managed:
    - name: /etc/systemd/system/{{ log.unit }}.service
    - source: salt://{{ tplroot }}/files/alert-log.service.jinja
    - template: jinja
    - mode: "0644"
    - context:
        settings: {{ alertmanager | json }}

# Alertmanager wants its receiver: it starts with Alertmanager at boot, and
# needs no enabling of its own (each `systemctl enable` reloads systemd).
alertmanager-log-wanted:
  file.managed:
    - name: /etc/systemd/system/{{ alertmanager.service }}.service.d/{{ log.unit }}.conf
    - makedirs: true
    - mode: "0644"
    - contents: |
        # Managed by Salt (alertmanager formula).
        [Unit]
        Wants={{ log.unit }}.service

alertmanager-log-service-running:
  service.running:
    - name: {{ log.unit }}
    - require:
      - file: alertmanager-log-wanted
    - watch:
      - file: alertmanager-log-script-managed
      - file: alertmanager-log-unit-managed
