{#- A role's service changed state on a node (cluster_watch beacon).
    Down: start the service again and, for a backend node (web, dns: the
    beacon says backend), take it out of HAProxy and IPVS everywhere (drain).
    Up again: put the backend node back in rotation; not at a unit's first
    start since its minion started (first: a node coming up, no drain to
    undo, and an operator's drain stays). One job per director
    (balancer.set_nodes: HAProxy, and IPVS where the kernel has it).
    Event data is the minion's: every field goes into the states as data
    (JSON), never as YAML text, and no state ID carries any of it. -#}
{%- set event = data.get('data', data) %}
{%- set node = data['id'] %}
{%- set down = ('failed', 'inactive') %}
{%- set backend = event.get('backend', False) %}
{%- if event.get('kind') == 'service' and event.get('state') in down %}
{%- if backend %}

reactor-service-drain:
  local.balancer.set_nodes:
    - tgt: 'roles:director'
    - tgt_type: grain
    - args:
      - nodes: {{ [node] | json }}
      - admin_state: drain
{%- endif %}

reactor-service-start:
  local.service.start:
    - tgt: {{ node | json }}
    - args:
      - name: {{ event.get('name') | json }}
{%- elif backend and event.get('kind') == 'service' and event.get('state') == 'active'
      and event.get('previous') != 'reloading' and not event.get('first', False) %}

reactor-service-ready:
  local.balancer.set_nodes:
    - tgt: 'roles:director'
    - tgt_type: grain
    - args:
      - nodes: {{ [node] | json }}
      - admin_state: ready
{%- endif %}
