{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import model, prometheus, alertmanager with context %}
{#- Every scrape job of the model, its targets labelled with their node. #}
{%- set own = prometheus.listen ~ ":" ~ prometheus.port %}
{%- set manager = alertmanager.listen ~ ":" ~ alertmanager.port %}
{%- set alerting = {"alertmanagers": [{"static_configs": [{"targets": [manager]}]}]} %}
{#- Alertmanager is scraped too: ExporterDown says when it stops. #}
{%- set server = {"node": model.monitoring.server.name} %}
{%- set scrape = [{"job_name": "prometheus", "static_configs": [{"targets": [own], "labels": server}]},
                  {"job_name": "alertmanager", "static_configs": [{"targets": [manager], "labels": server}]}] %}
{%- for job, spec in model.monitoring.jobs | dictsort %}
{%-   set groups = [] %}
{%-   for target in spec.targets %}
{%-     set labels = {"node": target.name} %}
{%-     do groups.append({"targets": [target.address ~ ":" ~ spec.port], "labels": labels}) %}
{%-   endfor %}
{%-   do scrape.append({"job_name": job, "static_configs": groups}) %}
{%- endfor %}

include:
  - {{ tplroot }}.package
  - {{ tplroot }}.rules

# `promtool check config` checks the candidate before it replaces the live
# file; a change is loaded by a reload (SIGHUP), history and all.
prometheus-config-file-managed:
  file.serialize:
    - name: {{ prometheus.config }}
    - serializer: yaml
    - mode: "0644"
    - check_cmd: promtool check config
    - dataset:
        global:
          scrape_interval: {{ prometheus.interval }}
          scrape_timeout: {{ prometheus.timeout }}
          evaluation_interval: {{ prometheus.interval }}
        rule_files: [{{ prometheus.rules }}]
        alerting: {{ alerting | json }}
        scrape_configs: {{ scrape | json }}
    - require:
      - pkg: prometheus-package-installed
      - file: prometheus-rules-file-managed

# The daemon parses its arguments first: with the candidate's ARGS and
# --version, it fails on any it would refuse.
prometheus-config-args-managed:
  file.managed:
    - name: {{ prometheus.args_file }}
    - source: salt://{{ tplroot }}/files/default.jinja
    - template: jinja
    - mode: "0644"
    - check_cmd: sh -c '. "$1" && exec "$0" $ARGS --version' {{ prometheus.binary }}
    - context:
        settings: {{ prometheus | json }}
    - require:
      - pkg: prometheus-package-installed
