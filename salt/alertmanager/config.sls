{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import model, alertmanager with context %}
{#- One receiver: the alert log, then the topology's webhooks, resolved
    alerts included. Each alert is a notification of its own (group_by
    '...'): a cluster's alerts are few, and each names its node. #}
{%- set log = alertmanager.log %}
{%- set urls = ["http://127.0.0.1:%d/" % log.port] + model.monitoring.webhooks %}
{%- set hooks = [] %}
{%- for url in urls %}
{%-   do hooks.append({"url": url, "send_resolved": true}) %}
{%- endfor %}
{%- set route = {"receiver": "cluster", "group_by": ["..."], "group_wait": alertmanager.group_wait,
                 "group_interval": alertmanager.group_interval, "repeat_interval": alertmanager.repeat_interval} %}

include:
  - {{ tplroot }}.package

# `amtool check-config` checks the candidate before it replaces the live
# file; a change is loaded by a reload (SIGHUP), silences and all.
alertmanager-config-file-managed:
  file.serialize:
    - name: {{ alertmanager.config }}
    - serializer: yaml
    - mode: "0644"
    - check_cmd: amtool check-config
    - dataset:
        route: {{ route | json }}
        receivers:
          - name: cluster
            webhook_configs: {{ hooks | json }}
    - require:
      - pkg: alertmanager-package-installed

# The daemon parses its arguments first: with the candidate's ARGS and
# --version, it fails on any it would refuse.
alertmanager-config-args-managed:
  file.managed:
    - name: {{ alertmanager.args_file }}
    - source: salt://{{ tplroot }}/files/default.jinja
    - template: jinja
    - mode: "0644"
    - check_cmd: sh -c '. "$1" && exec "$0" $ARGS --version' {{ alertmanager.binary }}
    - context:
        settings: {{ alertmanager | json }}
    - require:
      - pkg: alertmanager-package-installed
