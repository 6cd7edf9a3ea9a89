{#- A role's service changed state on a node (cluster_watch beacon).
    Down: take the node out of HAProxy everywhere (drain) and start the
    service again. Up again: put the node back in rotation. -#}
{%- set event = data.get('data', data) %}
{%- set node = data['id'] %}
{%- set down = ('failed', 'inactive') %}
{%- if event.get('kind') == 'service' and event.get('state') in down %}

reactor-service-drain-{{ node }}:
  local.haproxy_runtime.set_server_everywhere:
    - tgt: 'roles:director'
    - tgt_type: grain
    - args:
      - server: {{ node }}
      - state: drain

reactor-service-start-{{ event.name }}-{{ node }}:
  local.service.start:
    - tgt: {{ node }}
    - args:
      - name: {{ event.name }}
{%- elif event.get('kind') == 'service' and event.get('state') == 'active' and event.get('previous') != 'reloading' %}

reactor-service-ready-{{ node }}:
  local.haproxy_runtime.set_server_everywhere:
    - tgt: 'roles:director'
    - tgt_type: grain
    - args:
      - server: {{ node }}
      - state: ready
{%- endif %}
