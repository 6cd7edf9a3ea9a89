{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import apache_exporter with context %}

include:
  - {{ tplroot }}.package

# The exporter parses its arguments before it does anything: given the
# candidate's ARGS and --version, it fails on any argument it would refuse.
apache_exporter-config-file-managed:
  file.managed:
    - name: {{ apache_exporter.config }}
    - source: salt://{{ tplroot }}/files/default.jinja
    - template: jinja
    - mode: "0644"
    - check_cmd: sh -c '. "$1" && exec "$0" $ARGS --version' {{ apache_exporter.binary }}
    - context:
        settings: {{ apache_exporter | json }}
    - require:
      - pkg: apache_exporter-package-installed

# Fixed text, nothing rendered into it.
apache_exporter-config-hardening:
  file.managed:
    - name: {{ apache_exporter.hardening }}
    - source: salt://{{ tplroot }}/files/hardening.conf
    - makedirs: true
    - mode: "0644"
    - require:
      - pkg: apache_exporter-package-installed
