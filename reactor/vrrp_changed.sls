{#- A director's VRRP state changed (cluster_watch beacon): record it in the
    master's log and event bus as a cluster event others can react to. -#}
{%- set event = data.get('data', data) %}
{%- if event.get('kind') == 'vrrp' %}

reactor-vrrp-record-{{ data['id'] }}:
  runner.event.send:
    - args:
      - tag: cluster/director/transition
      - data:
          director: {{ data['id'] }}
          instance: {{ event.name }}
          state: {{ event.state }}
          previous: {{ event.previous }}

{#- Who holds the VIPs is published in the Salt mine (vip.held, see
    pillar/beacons/director.sls): refresh it now rather than at the next
    mine_interval, so `salt-run mine.get 'roles:director' vip.held grain`
    and anything reading it see the new master at once. Once per sync group
    transition (its instances move together). #}
{%- if event.name.startswith('GROUP-') %}
reactor-vrrp-mine-{{ data['id'] }}:
  local.mine.update:
    - tgt: {{ data['id'] }}
{%- endif %}
{%- endif %}
