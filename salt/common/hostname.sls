{%- from "common/map.jinja" import common, node %}

common-hostname-file-managed:
  file.managed:
    - name: {{ common.hostname_file }}
    - contents: {{ node.name | json }}
    - mode: "0644"

common-hostname-cmd-set:
  cmd.run:
    - name: hostname {{ node.name }}
    - unless: test "$(hostname)" = {{ node.name }}
    - require:
      - file: common-hostname-file-managed
