{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import prometheus with context %}

include:
  - {{ tplroot }}.config

# Arguments are read at start (a restart); the scrape configuration by a
# reload, without losing a scrape.
prometheus-service-running:
  service.running:
    - name: {{ prometheus.service }}
    - enable: true
    - watch:
      - file: prometheus-config-args-managed
    - require:
      - file: prometheus-config-file-managed

prometheus-service-reload:
  cmd.run:
    - name: systemctl reload {{ prometheus.service }}
    - onchanges:
      - file: prometheus-config-file-managed
      - file: prometheus-rules-file-managed
    - require:
      - service: prometheus-service-running
