{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import bind_exporter with context %}

include:
  - {{ tplroot }}.package

# The exporter parses its arguments before it does anything: given the
# candidate's ARGS and --version, it fails on any argument it would refuse.
bind_exporter-config-file-managed:
  file.managed:
    - name: {{ bind_exporter.config }}
    - source: salt://{{ tplroot }}/files/default.jinja
    - template: jinja
    - mode: "0644"
    - check_cmd: sh -c '. "$1" && exec "$0" $ARGS --version' {{ bind_exporter.binary }}
    - context:
        settings: {{ bind_exporter | json }}
    - require:
      - pkg: bind_exporter-package-installed
