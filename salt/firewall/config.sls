{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import firewall, backend, unit with context %}
include:
  - {{ tplroot }}.package
{%- if backend == 'nftables' %}

# `nft -c` checks the candidate against this node's kernel before it replaces
# the live file; the file replaces the formula's table in one transaction.
firewall-config-file-managed:
  file.managed:
    - name: {{ firewall.config }}
    - source: salt://{{ tplroot }}/files/nftables.conf.jinja
    - template: jinja
    - mode: "0755"
    - check_cmd: nft -c -f
    - context:
        settings: {{ firewall | json }}
    - require:
      - pkg: firewall-package-installed
{%- else %}

firewall-config-unavailable:
  test.show_notification:
    - text: >-
        This kernel's nftables cannot filter IP: the host firewall is loaded
        with iptables-restore ({{ unit.service }}.service), from the same rules.

# `iptables-restore --test` checks each candidate before it replaces the live
# file; a restore replaces the filter table in one go (NAT is left alone).
firewall-config-file-managed:
  file.managed:
    - name: {{ unit.config }}
    - source: salt://{{ tplroot }}/files/iptables.v4.jinja
    - template: jinja
    - makedirs: true
    - mode: "0640"
    - check_cmd: iptables-restore --test
    - context:
        settings: {{ firewall | json }}
    - require:
      - pkg: firewall-package-installed

firewall-config-file-v6-managed:
  file.managed:
    - name: {{ unit.config_v6 }}
    - source: salt://{{ tplroot }}/files/iptables.v6.jinja
    - makedirs: true
    - mode: "0640"
    - check_cmd: ip6tables-restore --test
    - require:
      - pkg: firewall-package-installed

firewall-config-unit-managed:
  file.managed:
    - name: /etc/systemd/system/{{ unit.service }}.service
    - source: salt://{{ tplroot }}/files/iptables.service.jinja
    - template: jinja
    - context:
        settings: {{ unit | json }}
{%- endif %}
