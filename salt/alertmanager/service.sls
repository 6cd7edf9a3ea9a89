{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import alertmanager with context %}

include:
  - {{ tplroot }}.config
  - {{ tplroot }}.log

# Arguments are read at start (a restart); the configuration by a reload.
alertmanager-service-running:
  service.running:
    - name: {{ alertmanager.service }}
    - enable: true
    - watch:
      - file: alertmanager-config-args-managed
    - require:
      - file: alertmanager-config-file-managed
      - service: alertmanager-log-service-running

alertmanager-service-reload:
  cmd.run:
    - name: systemctl reload {{ alertmanager.service }}
    - onchanges:
      - file: alertmanager-config-file-managed
    - require:
      - service: alertmanager-service-running
