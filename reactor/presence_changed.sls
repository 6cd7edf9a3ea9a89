{#- The master's presence events (presence_events: True): minions whose
    connection is gone are drained (HAProxy and IPVS, on every director) when
    the directors' health checks see them down too, so that they come back
    into rotation only with their minion; those that are back are made ready
    again. A lost connection alone is no failure: a restarted salt-master sees
    no minion for a moment, and draining on that took the whole web tier out
    (found by the benchmark's drills). One job per director and direction;
    nodes the directors do not balance to (directors, nas) are skipped. -#}
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
      - unless_serving: {{ state == 'drain' }}
{%- endif %}
{%- endfor %}
