{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import node with context %}
# Prometheus's Apache exporter on the web servers the monitoring server
# scrapes: Apache's workers, requests and traffic, read from its status
# page on the loopback.
{%- if 'apache' in node.exporters %}
include:
  - {{ tplroot }}.package
  - {{ tplroot }}.config
  - {{ tplroot }}.service
{%- endif %}
