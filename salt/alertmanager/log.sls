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

alertmanager-log-service-running:
  service.running:
    - name: {{ log.unit }}
    - enable: true
    - watch:
      - file: alertmanager-log-script-managed
      - file: alertmanager-log-unit-managed
