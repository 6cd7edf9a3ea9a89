{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import apache_exporter with context %}

include:
  - {{ tplroot }}.config

# Its arguments and confinement are read at start: a change restarts it (a
# scrape in between fails, nothing else depends on it).
apache_exporter-service-running:
  service.running:
    - name: {{ apache_exporter.service }}
    - enable: true
    - watch:
      - file: apache_exporter-config-file-managed
      - file: apache_exporter-config-hardening
