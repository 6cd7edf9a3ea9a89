{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import common, node with context %}

common-hostname-file-managed:
  file.managed:
    - name: {{ common.hostname_file }}
    - contents: {{ node.name | json }}
    - mode: "0644"

# The running hostname follows the file when it changes (boot reads the file).
common-hostname-cmd-set:
  cmd.run:
    - name: hostname {{ node.name }}
    - onchanges:
      - file: common-hostname-file-managed
