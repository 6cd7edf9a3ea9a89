{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import haproxy, stats_auth with context %}

include:
  - {{ tplroot }}.package

# The standby binds the VIPs too, before it holds them, so a failover needs no
# HAProxy restart.
haproxy-config-nonlocal-bind:
  sysctl.present:
    - name: net.ipv4.ip_nonlocal_bind
    - value: 1

# `haproxy -c` checks the candidate before it replaces the live file.
haproxy-config-file-managed:
  file.managed:
    - name: {{ haproxy.config }}
    - source: salt://{{ tplroot }}/files/haproxy.cfg.jinja
    - template: jinja
    - mode: "0640"
    - group: haproxy
    - check_cmd: haproxy -c -q -f
    - context:
        settings: {{ haproxy | json }}
        stats_auth: {{ stats_auth | json }}
    - require:
      - pkg: haproxy-package-installed

# A reload keeps each server's runtime state (a drained server stays
# drained): saved before the new worker starts, loaded by it.
haproxy-config-save-state-script:
  file.managed:
    - name: {{ haproxy.save_state_script }}
    - source: salt://{{ tplroot }}/files/save-server-state.py
    - mode: "0755"

haproxy-config-reload-keeps-state:
  file.managed:
    - name: {{ haproxy.reload_dropin }}
    - source: salt://{{ tplroot }}/files/keep-server-state.conf.jinja
    - template: jinja
    - makedirs: true
    - context:
        settings: {{ haproxy | json }}
    - require:
      - file: haproxy-config-save-state-script

# systemd does not see a drop-in directory that appeared after it loaded the
# unit (HAProxy runs since its package was installed): reload systemd so that
# the reload which follows runs the ExecReload above.
haproxy-config-reload-keeps-state-loaded:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: haproxy-config-reload-keeps-state
