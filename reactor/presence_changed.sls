{#- The master's presence events (presence_events: True): minions whose
    connection is gone are drained (HAProxy and IPVS, on every director) so new
    clients go elsewhere while their sessions finish; those that are back are
    made ready again. One job per director and direction; nodes the directors
    do not balance to (directors, nas) are skipped by balancer.set_nodes. -#}
{%- set event = data.get('data', data) %}
{%- for state, minions in (('drain', event.get('lost', [])), ('ready', event.get('new', []))) %}
{%- if minions %}

reactor-presence-{{ state }}:
  local.balancer.set_nodes:
    - tgt: 'roles:director'
    - tgt_type: grain
    - args:
      - nodes: {{ minions | list | json }}
      - admin_state: {{ state }}
{%- endif %}
{%- endfor %}
