{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import bootstrap with context %}
{%- set repo = bootstrap.repository %}
{%- set packages = [bootstrap.minion.package] %}
{%- if grains['id'] in bootstrap.get('masters', []) %}
{%-   do packages.append(bootstrap.master.package) %}
{%- endif %}
{%- if bootstrap.install == 'present' %}

# Salt came with the machine's image: check that it is the pinned release.
bootstrap-package-salt-present:
  cmd.run:
    - name: echo "Salt {{ bootstrap.version }} is not installed" >&2; exit 1
    - unless: salt-call --version | grep -q '^salt-call {{ bootstrap.version }}[.]'
{%- else %}

bootstrap-package-repository-key:
  file.managed:
    - name: {{ repo.keyring }}
    - source: {{ repo.key_url }}
{%-   if repo.key_hash %}
    - source_hash: {{ repo.key_hash }}
{%-   else %}
    - skip_verify: true
{%-   endif %}
    - makedirs: true
    - mode: "0644"

bootstrap-package-repository-sources:
  file.managed:
    - name: {{ repo.sources }}
    - mode: "0644"
    - contents: |
        Types: deb
        URIs: {{ repo.uri }}
        Suites: {{ repo.suite }}
        Components: {{ repo.component }}
        Signed-By: {{ repo.keyring }}

# Upgrades stay within the pinned release.
bootstrap-package-repository-pin:
  file.managed:
    - name: {{ repo.pin }}
    - mode: "0644"
    - contents: |
        Package: salt-*
        Pin: version {{ bootstrap.version }}.*
        Pin-Priority: 1001

bootstrap-package-salt-installed:
  pkg.installed:
    - pkgs: {{ packages | json }}
    - refresh: true
    - require:
      - file: bootstrap-package-repository-key
      - file: bootstrap-package-repository-sources
      - file: bootstrap-package-repository-pin
{%- endif %}
