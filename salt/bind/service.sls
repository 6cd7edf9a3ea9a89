{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import bind, model with context %}

include:
  - {{ tplroot }}.config

# Reload (rndc reload) picks up changed zones and configuration without
# dropping the server's cache or its sockets.
bind-service-running:
  service.running:
    - name: {{ bind.service }}
    - enable: true
    - reload: true
    - watch:
      - file: bind-config-options
      - file: bind-config-local
{%- for zone in model.dns.zones %}
      - file: bind-config-zone-{{ zone.name }}
{%- endfor %}
