{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import haproxy with context %}

include:
  - {{ tplroot }}.config

# Debian runs HAProxy in master-worker mode: reload starts new workers on the
# new configuration while the old ones finish their connections.
haproxy-service-running:
  service.running:
    - name: {{ haproxy.service }}
    - enable: true
    - reload: true
    - require:
      - sysctl: haproxy-config-nonlocal-bind
      - cmd: haproxy-config-reload-keeps-state-loaded
    - watch:
      - file: haproxy-config-file-managed
