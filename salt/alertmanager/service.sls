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

# Once it answers ready: a SIGHUP that reaches it before its handler is in
# place ends it (seen when a first highstate started it and reloaded it at once).
alertmanager-service-reload:
  cmd.run:
    - name: >-
        curl -fsS -o /dev/null --retry 60 --retry-connrefused --retry-delay 1
        http://{{ alertmanager.listen }}:{{ alertmanager.port }}/-/ready
        && systemctl reload {{ alertmanager.service }}
    - onchanges:
      - file: alertmanager-config-file-managed
    - require:
      - service: alertmanager-service-running
