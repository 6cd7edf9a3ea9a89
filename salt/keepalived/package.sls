{%- from "keepalived/map.jinja" import keepalived %}

keepalived-package-installed:
  pkg.installed:
    - pkgs: [{{ keepalived.package }}, ipvsadm]
    - refresh: false
