{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import model, node with context %}
# Prometheus on the topology's monitoring server (by default the nas): it
# scrapes every exporter of the model's scrape jobs.
{%- if model.monitoring and model.monitoring.server.name == node.name %}
include:
  - {{ tplroot }}.package
  - {{ tplroot }}.config
  - {{ tplroot }}.service
{%- endif %}
