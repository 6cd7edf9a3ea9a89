{#- A role's service changed state on a node (cluster_watch beacon).
    Down: take the node out of HAProxy and IPVS everywhere (drain) and start
    the service again. Up again: put the node back in rotation. (Directors
    without IPVS answer that ipvs.set_node is not available: nothing to do.) -#}
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

reactor-service-ipvs-drain-{{ node }}:
  local.ipvs.set_node:
    - tgt: 'roles:director'
    - tgt_type: grain
    - args:
      - node: {{ node }}
      - admin_state: drain

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

reactor-service-ipvs-ready-{{ node }}:
  local.ipvs.set_node:
    - tgt: 'roles:director'
    - tgt_type: grain
    - args:
      - node: {{ node }}
      - admin_state: ready
{%- endif %}
