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
{%- endif %}
