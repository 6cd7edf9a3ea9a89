{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import node with context %}
# Prometheus's node exporter on every node the monitoring server scrapes:
# the machine's numbers, and the *.prom files of the textfile collector.
{%- if 'node' in node.exporters %}
include:
  - {{ tplroot }}.package
  - {{ tplroot }}.config
  - {{ tplroot }}.service
{%- endif %}
