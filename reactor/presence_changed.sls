{#- The master's presence events (presence_events: True): a minion whose
    connection is gone is drained (HAProxy and IPVS, on every director) so new
    clients go elsewhere while its sessions finish; one that is back is made
    ready again. Directors and the NAS are not backends: nothing to drain. -#}
{%- set event = data.get('data', data) %}
{%- for state, minions in (('drain', event.get('lost', [])), ('ready', event.get('new', []))) %}
{%- for minion in minions if minion is string and minion.startswith(('web', 'dns')) %}

reactor-presence-{{ state }}-{{ minion }}:
  local.haproxy_runtime.set_server_everywhere:
    - tgt: 'roles:director'
    - tgt_type: grain
    - args:
      - server: {{ minion }}
      - state: {{ state }}

reactor-presence-ipvs-{{ state }}-{{ minion }}:
  local.ipvs.set_node:
    - tgt: 'roles:director'
    - tgt_type: grain
    - args:
      - node: {{ minion }}
      - admin_state: {{ state }}
{%- endfor %}
{%- endfor %}
