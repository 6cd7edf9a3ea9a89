{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import common with context %}

common-hosts-file-managed:
  file.managed:
    - name: {{ common.hosts_file }}
    - source: salt://{{ tplroot }}/files/hosts.jinja
    - template: jinja
    - mode: "0644"
