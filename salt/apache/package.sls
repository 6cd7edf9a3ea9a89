{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import apache with context %}

apache-package-installed:
  pkg.installed:
    - pkgs: {{ apache.packages | json }}
    - refresh: false

apache-package-check-script:
  file.managed:
    - name: {{ apache.check_script }}
    - source: salt://{{ tplroot }}/files/check-candidate.sh
    - mode: "0755"
