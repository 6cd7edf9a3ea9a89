{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import bind_exporter with context %}

include:
  - {{ tplroot }}.config

# Its arguments are read at start: a changed file restarts it (a scrape in
# between fails, nothing else depends on it).
bind_exporter-service-running:
  service.running:
    - name: {{ bind_exporter.service }}
    - enable: true
    - watch:
      - file: bind_exporter-config-file-managed
