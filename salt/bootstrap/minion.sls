{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import bootstrap with context %}
{%- set minion = bootstrap.minion %}

include:
  - {{ tplroot }}.package

# The minion's key pair is made here, on the node, before the minion first
# starts; tools/bootstrap.py reads the public half over SSH and has the
# masters accept exactly that one.
bootstrap-minion-key-generated:
  cmd.run:
    - name: >-
        umask 077 &&
        openssl genrsa -out {{ minion.pki }}/minion.pem 2048 &&
        openssl rsa -in {{ minion.pki }}/minion.pem -pubout -out {{ minion.pki }}/minion.pub
    - creates: {{ minion.pki }}/minion.pem
    - require:
      - file: bootstrap-minion-pki-directory

bootstrap-minion-pki-directory:
  file.directory:
    - name: {{ minion.pki }}
    - mode: "0700"
    - makedirs: true

# Its id, roles grain, masters and the master key's fingerprint, from the
# topology (tools/bootstrap.py).
bootstrap-minion-config-file:
  file.serialize:
    - name: {{ minion.config }}
    - serializer: yaml
    - dataset_pillar: bootstrap:nodes:{{ grains['id'] }}
    - makedirs: true
    - mode: "0644"

bootstrap-minion-service-running:
  service.running:
    - name: {{ minion.service }}
    - enable: true
    - watch:
      - file: bootstrap-minion-config-file
    - require:
      - cmd: bootstrap-minion-key-generated
{%- if bootstrap.install == 'present' %}
      - cmd: bootstrap-package-salt-present
{%- else %}
      - pkg: bootstrap-package-salt-installed
{%- endif %}
