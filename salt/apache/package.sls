{%- from "apache/map.jinja" import apache %}

apache-package-installed:
  pkg.installed:
    - pkgs: {{ apache.packages | json }}
    - refresh: false

apache-package-check-script:
  file.managed:
    - name: {{ apache.check_script }}
    - source: salt://apache/files/check-candidate.sh
    - mode: "0755"
