{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import apache with context %}

include:
  - {{ tplroot }}.config
  - {{ tplroot }}.copy

# A graceful reload: running requests finish on the old configuration.
apache-service-running:
  service.running:
    - name: {{ apache.service }}
    - enable: true
    - reload: true
    # The copy it serves is there first.
    - require:
      - sls: {{ tplroot }}.copy
    - watch:
      - file: apache-config-site-000-default
      - file: apache-config-site-default-ssl
      - apache_conf: apache-config-site-000-default-enabled
      - apache_conf: apache-config-site-default-ssl-enabled
      - file: apache-config-site-cluster-l7
      - apache_conf: apache-config-site-cluster-l7-enabled
      - file: apache-config-site-cluster-proxy
      - apache_conf: apache-config-site-cluster-proxy-enabled
      - x509: apache-tls-certificate
      - file: apache-config-mpm-prefork
{%- for module in apache.modules %}
      - apache_conf: apache-config-module-{{ module }}
{%- endfor %}
