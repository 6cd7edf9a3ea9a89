{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import node_exporter with context %}

include:
  - {{ tplroot }}.config

# Its arguments are read at start: a changed file restarts it (a scrape in
# between fails, nothing else depends on it).
node_exporter-service-running:
  service.running:
    - name: {{ node_exporter.service }}
    - enable: true
    - watch:
      - file: node_exporter-config-file-managed
