{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import node with context %}
# Prometheus's bind exporter on the DNS servers the monitoring server
# scrapes: bind's query, answer and cache counters, read from its
# statistics channel on the loopback.
{%- if 'bind' in node.exporters %}
include:
  - {{ tplroot }}.package
  - {{ tplroot }}.config
  - {{ tplroot }}.service
{%- endif %}
