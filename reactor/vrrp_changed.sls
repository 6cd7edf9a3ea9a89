{#- A director's VRRP state changed (cluster_watch beacon): record it in the
    master's log and event bus as a cluster event others can react to. Event
    data is the minion's: it goes into the states as data (JSON), never as
    YAML text, and no state ID carries any of it. -#}
{%- set event = data.get('data', data) %}
{%- if event.get('kind') == 'vrrp' %}

reactor-vrrp-record:
  runner.event.send:
    - args:
      - tag: cluster/director/transition
      - data:
          director: {{ data['id'] | json }}
          instance: {{ event.get('name') | json }}
          state: {{ event.get('state') | json }}
          previous: {{ event.get('previous') | json }}

{#- Who holds the VIPs is published in the Salt mine (vip.held, see
    pillar/beacons/director.sls): refresh it now rather than at the next
    mine_interval, so `salt-run mine.get 'roles:director' vip.held grain`
    and anything reading it see the new master at once. Once per sync group
    transition (its instances move together). #}
{%- if (event.get('name') | string).startswith('GROUP-') %}
reactor-vrrp-mine:
  local.mine.update:
    - tgt: {{ data['id'] | json }}
{%- endif %}
{%- endif %}
