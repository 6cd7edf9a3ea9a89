{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import apache, node with context %}
{%- set base = apache.tls_dir ~ "/" ~ node.fqdn %}

include:
  - {{ tplroot }}.package

apache-tls-private-key:
  x509.private_key_managed:
    - name: {{ base }}.key
    - algo: {{ apache.tls_key.algo }}
    - keysize: {{ apache.tls_key.keysize }}
    - mode: "0600"
    - makedirs: true
    - require:
      - pkg: apache-package-installed

# Self-signed, per node; renewed by Salt when fewer than 30 days remain.
apache-tls-certificate:
  x509.certificate_managed:
    - name: {{ base }}.crt
    - signing_private_key: {{ base }}.key
    - CN: {{ node.fqdn }}
    - subjectAltName: "DNS:{{ node.fqdn }}, DNS:{{ node.name }}, IP:{{ node.address }}"
    - basicConstraints: "critical, CA:false"
    - keyUsage: {{ apache.tls_key.usage | json }}
    - extendedKeyUsage: serverAuth
    - days_valid: {{ apache.cert_days }}
    - days_remaining: 30
    - mode: "0644"
    - require:
      - x509: apache-tls-private-key
