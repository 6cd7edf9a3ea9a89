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

# Once it answers ready: a SIGHUP that reaches it before its handler is in
# place ends it (seen when a first highstate started it and reloaded it at once).
prometheus-service-reload:
  cmd.run:
    - name: >-
        curl -fsS -o /dev/null --retry 60 --retry-connrefused --retry-delay 1
        http://{{ prometheus.listen }}:{{ prometheus.port }}/-/ready
        && systemctl reload {{ prometheus.service }}
    - onchanges:
      - file: prometheus-config-file-managed
      - file: prometheus-rules-file-managed
    - require:
      - service: prometheus-service-running
