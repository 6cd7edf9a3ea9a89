{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import model, node with context %}
# Alertmanager beside Prometheus, on the topology's monitoring server: it
# delivers the alert rules' alerts to the alert log and the topology's webhooks.
{%- if model.monitoring and model.monitoring.server.name == node.name %}
include:
  - {{ tplroot }}.package
  - {{ tplroot }}.log
  - {{ tplroot }}.config
  - {{ tplroot }}.service
{%- endif %}
