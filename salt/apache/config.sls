{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import apache, model, node with context %}
{%- set base = apache.tls_dir ~ "/" ~ node.fqdn %}
include:
  - {{ tplroot }}.package
  - {{ tplroot }}.tls

{#- Ports the directors' layer 7 backends use on this role. #}
{%- set l7_ports = model.haproxy.backends.values() | selectattr('mode', 'equalto', 'http')
      | selectattr('role', 'in', node.roles) | map(attribute='port') | unique | sort | list %}
{#- Ports the directors' layer 4 backends send the PROXY protocol to. #}
{%- set proxy_ports = [] %}
{%- for be in model.haproxy.backends.values() | selectattr('proxy_protocol') | selectattr('role', 'in', node.roles) %}
{%-   if be.port not in proxy_ports | map(attribute='port') %}
{%-     do proxy_ports.append({'port': be.port, 'tls': be.tls}) %}
{%-   endif %}
{%- endfor %}
{%- set sites = {
      "000-default": "salt://" ~ tplroot ~ "/files/site-http.conf.jinja",
      "default-ssl": "salt://" ~ tplroot ~ "/files/site-https.conf.jinja",
      "cluster-l7": "salt://" ~ tplroot ~ "/files/site-l7.conf.jinja",
      "cluster-proxy": "salt://" ~ tplroot ~ "/files/site-proxy.conf.jinja",
      "cluster-status": "salt://" ~ tplroot ~ "/files/site-status.conf.jinja",
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
{%- for site, source in sites.items() %}

apache-config-site-{{ site }}:
  file.managed:
    - name: {{ apache.confdir }}/sites-available/{{ site }}.conf
    - source: {{ source }}
    - template: jinja
    - check_cmd: {{ apache.check_script }} sites-available/{{ site }}.conf
    - context:
        cert: {{ base }}.crt
        key: {{ base }}.key
        ports: {{ l7_ports | json }}
        proxy_ports: {{ proxy_ports | sort(attribute='port') | json }}
        status: {{ apache.status | json }}
    - require:
      - file: apache-package-check-script
      - x509: apache-tls-certificate
      - apache_conf: apache-config-module-ssl
      - apache_conf: apache-config-module-remoteip
      - apache_conf: apache-config-module-status

apache-config-site-{{ site }}-enabled:
  apache_conf.enabled:
    - name: {{ site }}
    - kind: site
    - confdir: {{ apache.confdir }}
    - require:
      - file: apache-config-site-{{ site }}
{%- endfor %}

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
