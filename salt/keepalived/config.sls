{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import keepalived, auth_pass, ipvs_enabled, ipvs_sync, process_events, model, node with context %}

include:
  - {{ tplroot }}.package

{%- if not ipvs_enabled and model.ipvs.virtual_servers %}

keepalived-config-ipvs-unavailable:
  test.show_notification:
    - text: >-
        This kernel has no IPVS: keepalived runs VRRP only and the virtual
        servers {{ model.ipvs.virtual_servers | map(attribute='name') | join(', ') }}
        are not programmed.
{%- endif %}

keepalived-config-reload-script:
  file.managed:
    - name: {{ keepalived.reload_script }}
    - source: salt://{{ tplroot }}/files/keepalived-reload.sh
    - mode: "0755"

keepalived-config-notify-script:
  file.managed:
    - name: {{ keepalived.notify_script }}
    - source: salt://{{ tplroot }}/files/notify.sh.jinja
    - template: jinja
    - mode: "0755"
    - context:
        state_dir: {{ keepalived.state_dir }}
        textfile_dir: {{ keepalived.textfile_dir }}

# The watcher that writes HAProxy's health into keepalived's track files
# (its service runs before keepalived reads them: keepalived.service).
keepalived-config-haproxy-watch-script:
  file.managed:
    - name: {{ keepalived.watch_script }}
    - source: salt://{{ tplroot }}/files/haproxy-watch.py
    - mode: "0755"

keepalived-config-haproxy-watch-unit:
  file.managed:
    - name: /etc/systemd/system/{{ keepalived.watch_service }}.service
    - source: salt://{{ tplroot }}/files/haproxy-watch.service.jinja
    - template: jinja
    - context:
        settings: {{ keepalived | json }}

# keepalived wants the watcher: it starts with keepalived at boot, and needs
# no enabling of its own (each `systemctl enable` reloads systemd).
keepalived-config-haproxy-watch-wanted:
  file.managed:
    - name: /etc/systemd/system/{{ keepalived.service }}.service.d/haproxy-watch.conf
    - makedirs: true
    - contents: |
        # Managed by Salt (keepalived formula).
        [Unit]
        Wants={{ keepalived.watch_service }}.service

# Not enabled: keepalived wants it (keepalived-config-haproxy-watch-wanted).
# That drop-in is written before the watcher and so before keepalived starts:
# keepalived's start then reloads systemd once, for it (systemd loads the new
# watcher unit when it is first started).
keepalived-service-haproxy-watch-running:
  service.running:
    - name: {{ keepalived.watch_service }}
    - require:
      - file: keepalived-config-haproxy-watch-wanted
    - watch:
      - file: keepalived-config-haproxy-watch-script
      - file: keepalived-config-haproxy-watch-unit

# Realtime scheduling for keepalived's VRRP and checker processes
# (keepalived:realtime), set by this script when keepalived has started
# rather than by keepalived itself (keepalived-realtime.sh.jinja says why).
keepalived-config-realtime-script:
  file.managed:
    - name: {{ keepalived.realtime_script }}
    - source: salt://{{ tplroot }}/files/keepalived-realtime.sh.jinja
    - template: jinja
    - mode: "0755"
    - context:
        realtime: {{ keepalived.realtime | json }}
        pid_files: {{ keepalived.pid_files | json }}

# "-": a keepalived whose processes could not be made realtime still runs
# (Salt sets them at its next run: keepalived-service-realtime-applied).
keepalived-config-realtime-dropin:
  file.managed:
    - name: /etc/systemd/system/{{ keepalived.service }}.service.d/realtime.conf
    - makedirs: true
    - contents: |
        # Managed by Salt (keepalived formula).
        [Service]
        ExecStartPost=-{{ keepalived.realtime_script }}

{%- set sync_unit = '/etc/systemd/system/' ~ keepalived.sync_service ~ '.service' %}
{%- set sync_wanted = '/etc/systemd/system/' ~ keepalived.service ~ '.service.d/' ~ keepalived.sync_service ~ '.conf' %}
{%- if ipvs_sync %}

# IPVS connections shared with the peers (vrrp.ipvs_sync): keepalived wants
# the sync unit, as it wants the watcher.
keepalived-config-ipvs-sync-unit:
  file.managed:
    - name: {{ sync_unit }}
    - source: salt://{{ tplroot }}/files/ipvs-sync.service.jinja
    - template: jinja
    - context:
        settings: {{ keepalived | json }}
        sync: {{ node.vrrp.state_sync | json }}

keepalived-config-ipvs-sync-wanted:
  file.managed:
    - name: {{ sync_wanted }}
    - makedirs: true
    - contents: |
        # Managed by Salt (keepalived formula).
        [Unit]
        Wants={{ keepalived.sync_service }}.service
{%- else %}

# Not shared (vrrp.ipvs_sync off, or no IPVS here): no sync threads, and no
# unit left from when it was on (stopped first: keepalived-service-ipvs-sync-dead).
keepalived-config-ipvs-sync-absent:
  file.absent:
    - names:
      - {{ sync_wanted }}
      - {{ sync_unit }}
    - require:
      - service: keepalived-service-ipvs-sync-dead

keepalived-service-ipvs-sync-dead:
  service.dead:
    - name: {{ keepalived.sync_service }}
    - enable: false
{%- endif %}

# The VRRP key, in a file of its own that the configuration includes: it
# carries a secret, so no diff of it reaches a state's return (job cache,
# terminal, a plan).
keepalived-config-auth-managed:
  file.managed:
    - name: {{ keepalived.auth_file }}
    - mode: "0600"
    - show_changes: false
    - contents: {{ ('auth_pass ' ~ auth_pass) | json }}
    - require:
      - pkg: keepalived-package-installed

# Checked by keepalived itself (inside this node, where the interfaces exist)
# before it replaces the live file.
keepalived-config-file-managed:
  file.managed:
    - name: {{ keepalived.config }}
    - source: salt://{{ tplroot }}/files/keepalived.conf.jinja
    - template: jinja
    - mode: "0600"
    - check_cmd: keepalived --config-test --use-file
    - context:
        settings: {{ keepalived | json }}
        ipvs_enabled: {{ ipvs_enabled }}
        process_events: {{ process_events }}
    - require:
      - pkg: keepalived-package-installed
      - file: keepalived-config-auth-managed
      - file: keepalived-config-notify-script
      # The track files exist before keepalived reads them: it would create
      # missing ones as failing (init_file 1), FAULT on every director.
      - service: keepalived-service-haproxy-watch-running
