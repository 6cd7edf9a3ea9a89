{%- from "common/map.jinja" import common %}

common-hosts-file-managed:
  file.managed:
    - name: {{ common.hosts_file }}
    - source: salt://common/files/hosts.jinja
    - template: jinja
    - mode: "0644"
