{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import apache, model, node with context %}
{%- set base = apache.tls_dir ~ "/" ~ node.fqdn %}
include:
  - {{ tplroot }}.package
  - {{ tplroot }}.tls

{#- The ports of the directors' backends on this role: layer 7 (mode http)
    and layer 4 with the PROXY protocol (tls: Apache ends TLS there). #}
{%- set mine = model.haproxy.backends.values() | selectattr('role', 'in', node.roles) | list %}
{%- set l7_ports = mine | selectattr('mode', 'equalto', 'http') | map(attribute='port') | unique | sort | list %}
{%- set l4_ports = [] %}
{%- for backend in mine | selectattr('proxy_protocol') | sort(attribute='port') %}
{%-   if backend.port not in l4_ports | map(attribute='port') %}
{%-     do l4_ports.append({'port': backend.port, 'tls': backend.tls}) %}
{%-   endif %}
{%- endfor %}
{%- set sites = {
      "000-default": {"source": "site-http.conf.jinja", "ports": []},
      "cluster-l4": {"source": "site-l4.conf.jinja", "ports": l4_ports},
      "cluster-l7": {"source": "site-l7.conf.jinja", "ports": l7_ports},
    } %}

{%- for module in apache.modules %}

# Debian's a2enmod, through the repo's apache_conf state (_states).
apache-config-module-{{ module }}:
  apache_conf.enabled:
    - name: {{ module }}
    - kind: module
    - confdir: {{ apache.confdir }}
    - require:
      - pkg: apache-package-installed
{%- endfor %}

# Each site is checked by `apache2ctl -t` on a copy of the configuration with
# the candidate in place, before it replaces the live file.
{%- for site, spec in sites.items() %}

apache-config-site-{{ site }}:
  file.managed:
    - name: {{ apache.confdir }}/sites-available/{{ site }}.conf
    - source: salt://{{ tplroot }}/files/{{ spec.source }}
    - template: jinja
    - check_cmd: {{ apache.check_script }} sites-available/{{ site }}.conf
    - context:
        cert: {{ base }}.crt
        key: {{ base }}.key
        ports: {{ spec.ports | json }}
    - require:
      - file: apache-package-check-script
      - x509: apache-tls-certificate
      - apache_conf: apache-config-module-ssl
      - apache_conf: apache-config-module-remoteip

apache-config-site-{{ site }}-enabled:
  apache_conf.enabled:
    - name: {{ site }}
    - kind: site
    - confdir: {{ apache.confdir }}
    - require:
      - file: apache-config-site-{{ site }}
{%- endfor %}

# Debian's TLS site on 443: TLS is ended on the layer 4 ports (cluster-l4).
apache-config-site-default-ssl-disabled:
  apache_conf.disabled:
    - name: default-ssl
    - kind: site
    - confdir: {{ apache.confdir }}

# The prefork MPM's process counts (apache:mpm_prefork), checked like the sites.
apache-config-mpm-prefork:
  file.managed:
    - name: {{ apache.confdir }}/mods-available/mpm_prefork.conf
    - source: salt://{{ tplroot }}/files/mpm_prefork.conf.jinja
    - template: jinja
    - check_cmd: {{ apache.check_script }} mods-available/mpm_prefork.conf
    - context:
        settings: {{ apache.mpm_prefork | json }}
    - require:
      - file: apache-package-check-script
