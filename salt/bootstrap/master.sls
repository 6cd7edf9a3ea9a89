{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import bootstrap with context %}
{%- set master = bootstrap.master %}

include:
  - {{ tplroot }}.package

# The repository's formulas, pillar and modules, as the operator's
# checkout has them (its secrets are never served: they are made below).
{%- for dir in master.checkout_dirs %}

bootstrap-master-checkout-{{ dir }}:
  file.recurse:
    - name: {{ master.checkout }}/{{ dir }}
    - source: salt://{{ dir }}
    - clean: true
    - dir_mode: "0755"
    - file_mode: "0644"
    - makedirs: true
{%- endfor %}
{%- for file in master.checkout_files %}

bootstrap-master-checkout-{{ file }}:
  file.managed:
    - name: {{ master.checkout }}/{{ file }}
    - source: salt://{{ file }}
    - makedirs: true
    - mode: "0644"
{%- endfor %}

bootstrap-master-secrets-directory:
  file.directory:
    - name: {{ master.secrets.rsplit('/', 1)[0] }}
    - mode: "0700"
    - makedirs: true

bootstrap-master-secrets-generated:
  cmd.run:
    - name: python3 {{ master.checkout }}/tools/gen_secrets.py {{ master.secrets }}
    - creates: {{ master.secrets }}
    - require:
      - file: bootstrap-master-secrets-directory
      - file: bootstrap-master-checkout-tools/gen_secrets.py

bootstrap-master-site-pillar:
  file.serialize:
    - name: {{ master.site_pillar }}
    - serializer: yaml
    - dataset_pillar: bootstrap:site_pillar
    - mode: "0600"

bootstrap-master-config-file:
  file.serialize:
    - name: {{ master.config }}
    - serializer: yaml
    - dataset_pillar: bootstrap:master_settings
    - makedirs: true
    - mode: "0644"

# The master's id, pinned to its node's: Salt 3008 names the master's key
# pair after its id (<id>.pem, with master.pem a link to it), and an id
# derived from the hostname changes once the cluster's DNS resolves the
# node's full name: at its next start the master would make a new key
# pair, which every minion refuses.
bootstrap-master-id-file:
  file.serialize:
    - name: {{ master.id_config }}
    - serializer: yaml
    - dataset:
        id: {{ (grains['id'] ~ master.id_suffix) | json }}
    - makedirs: true
    - mode: "0644"

bootstrap-master-service-running:
  service.running:
    - name: {{ master.service }}
    - enable: true
    - watch:
      - file: bootstrap-master-config-file
      - file: bootstrap-master-id-file
    - require:
      - cmd: bootstrap-master-secrets-generated
      - file: bootstrap-master-site-pillar
{%- for dir in master.checkout_dirs %}
      - file: bootstrap-master-checkout-{{ dir }}
{%- endfor %}
{%- if bootstrap.install == 'present' %}
      - cmd: bootstrap-package-salt-present
{%- else %}
      - pkg: bootstrap-package-salt-installed
{%- endif %}
