{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import node_exporter with context %}

include:
  - {{ tplroot }}.package

# The exporter parses its arguments before it does anything: given the
# candidate's ARGS and --version, it fails on any argument it would refuse.
node_exporter-config-file-managed:
  file.managed:
    - name: {{ node_exporter.config }}
    - source: salt://{{ tplroot }}/files/default.jinja
    - template: jinja
    - mode: "0644"
    - check_cmd: sh -c '. "$1" && exec "$0" $ARGS --version' {{ node_exporter.binary }}
    - context:
        settings: {{ node_exporter | json }}
    - require:
      - pkg: node_exporter-package-installed

node_exporter-config-textfile-directory:
  file.directory:
    - name: {{ node_exporter.textfile_dir }}
    - mode: "0755"
    - require:
      - pkg: node_exporter-package-installed
