#!/usr/bin/env python3
"""Capture real ``ipvsadm`` output as test fixtures, on a real kernel in user mode.

This machine kind's kernel has no IPVS and cannot load modules, so the capture
boots Debian's User-Mode Linux kernel (package ``user-mode-linux``) with the
host's own files as a read-only root (hostfs) and no network device at all:
every address below exists only inside that kernel. Inside it, the root network
namespace plays the director, one namespace the client (192.168.1.10) and one
the real servers (10.0.100.x, a UDP echo on :53 and an HTTP server on :80).

The guest configures the seed's two virtual services plus a few variations the
parsers must handle (zero weight, persistence, another scheduler, a firewall
mark), sends a bounded amount of traffic through IPVS (NAT), and writes each
command's output to the fixture directory (a read-write hostfs mount):

    ipvs-empty.txt           ipvsadm -Ln --exact (no virtual service)
    proc-ip_vs-empty.txt     /proc/net/ip_vs (no virtual service)
    ipvs-list.txt            ipvsadm -Ln --exact
    ipvs-stats.txt           ipvsadm -Ln --stats --exact
    ipvs-rate.txt            ipvsadm -Ln --rate --exact
    ipvs-save.txt            ipvsadm -Sn
    proc-ip_vs.txt           /proc/net/ip_vs
    ipvs-after-drain.txt     ipvsadm -Ln --exact after one DNS real server is set to weight 0
    ipvs-after-drain-stats.txt  the same with --stats, after more traffic

Usage (as root; needs the user-mode-linux and kmod packages):
``python3 tools/capture_ipvs.py [OUTDIR]`` (default tests/fixtures/ipvs). Takes ~25 s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

UML_MODULES = Path("/usr/lib/uml/modules")

GUEST_INIT = r"""#!/bin/sh
# PID 1 of the capture kernel. $OUT is the fixture directory, $WORK a host scratch dir.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
exec 2>&1
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
mkdir -p /tmp/out /tmp/m/lib && ln -s /usr/lib/uml/modules /tmp/m/lib/modules
mount -t hostfs none /tmp/out -o "$OUT"
for m in crc32c_generic nf_conntrack ip_vs ip_vs_rr ip_vs_wrr ip_vs_wlc veth; do
    modprobe -d /tmp/m "$m" || echo "modprobe $m failed"
done
cap() { name=$1; shift; "$@" > "/tmp/out/$name" 2>&1 || echo "capture $name: rc $?"; }

cap ipvs-empty.txt ipvsadm -Ln --exact
cap proc-ip_vs-empty.txt cat /proc/net/ip_vs

ip link set lo up
sysctl -qw net.ipv4.ip_forward=1
ip netns add client
ip netns add servers
ip link add ext type veth peer name eth0 netns client
ip link add int type veth peer name eth0 netns servers
ip addr add 192.168.1.2/24 dev ext
ip addr add 192.168.1.200/24 dev ext
ip addr add 192.168.1.202/24 dev ext
ip addr add 10.0.100.2/24 dev int
ip link set ext up
ip link set int up
ip -n client addr add 192.168.1.10/24 dev eth0
ip -n client link set lo up
ip -n client link set eth0 up
ip -n client route add default via 192.168.1.2
for a in 11 12 13 21 22 23; do ip -n servers addr add 10.0.100.$a/24 dev eth0; done
ip -n servers link set lo up
ip -n servers link set eth0 up
ip -n servers route add default via 10.0.100.2

# The seed's services: UDP DNS on .200:53, TCP 80 on .202, NAT, round robin.
ipvsadm -A -u 192.168.1.200:53 -s rr
for a in 21 22 23; do ipvsadm -a -u 192.168.1.200:53 -r 10.0.100.$a:53 -m -w 1; done
ipvsadm -A -t 192.168.1.202:80 -s rr
for a in 11 12 13; do ipvsadm -a -t 192.168.1.202:80 -r 10.0.100.$a:80 -m -w 1; done
# Variations the parser must read: weights incl. 0, persistence, wlc, a firewall mark.
ipvsadm -A -t 192.168.1.202:443 -s wlc -p 300
ipvsadm -a -t 192.168.1.202:443 -r 10.0.100.11:443 -m -w 3
ipvsadm -a -t 192.168.1.202:443 -r 10.0.100.12:443 -m -w 0
ipvsadm -A -f 7 -s wrr
ipvsadm -a -f 7 -r 10.0.100.13:0 -m -w 2

ip netns exec servers python3 "$WORK/servers.py" &
for i in $(seq 100); do [ -e /run/servers.ready ] && break; sleep 0.2; done
ip netns exec client python3 "$WORK/client.py" > /tmp/out/.client.log 2>&1
sleep 3

cap ipvs-list.txt ipvsadm -Ln --exact
cap ipvs-stats.txt ipvsadm -Ln --stats --exact
cap ipvs-rate.txt ipvsadm -Ln --rate --exact
cap ipvs-save.txt ipvsadm -Sn
cap proc-ip_vs.txt cat /proc/net/ip_vs
ipvsadm -e -u 192.168.1.200:53 -r 10.0.100.22:53 -m -w 0
ip netns exec client python3 "$WORK/client.py" >> /tmp/out/.client.log 2>&1
sleep 3  # the kernel folds per-CPU counters into the totals every 2 s
cap ipvs-after-drain.txt ipvsadm -Ln --exact
cap ipvs-after-drain-stats.txt ipvsadm -Ln --stats --exact
echo done > /tmp/out/.done
sync
echo o > /proc/sysrq-trigger
sleep 5
"""

SERVERS = r"""
import http.server, socket, socketserver, threading

class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        sock.sendto(b"ok " + self.server.server_address[0].encode() + b" " + data, self.client_address)

class Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = self.connection.getsockname()[0].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

for a in (21, 22, 23):
    s = socketserver.UDPServer((f"10.0.100.{a}", 53), Echo)
    threading.Thread(target=s.serve_forever, daemon=True).start()
for a in (11, 12, 13):
    h = http.server.ThreadingHTTPServer((f"10.0.100.{a}", 80), Page)
    threading.Thread(target=h.serve_forever, daemon=True).start()
open("/run/servers.ready", "w").close()
threading.Event().wait()
"""

CLIENT = r"""
import socket, urllib.request
seen = []
for i in range(9):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    s.sendto(b"q%d" % i, ("192.168.1.200", 53))
    seen.append(s.recvfrom(100)[0].decode())
    s.close()
for i in range(6):
    seen.append(urllib.request.urlopen("http://192.168.1.202/", timeout=3).read().decode())
print("\n".join(seen))
"""


def capture(outdir: Path) -> None:
    linux = shutil.which("linux")
    if not linux or not UML_MODULES.is_dir():
        sys.exit("capture_ipvs: needs Debian's user-mode-linux package (/usr/bin/linux and /usr/lib/uml/modules)")
    if not shutil.which("modprobe"):
        sys.exit("capture_ipvs: needs kmod's modprobe on the host (the guest runs the host's files)")
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / ".done").unlink(missing_ok=True)
    # Not under /tmp: the guest mounts a tmpfs there.
    with tempfile.TemporaryDirectory(prefix="capture-ipvs-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        (work / "servers.py").write_text(SERVERS)
        (work / "client.py").write_text(CLIENT)
        init = work / "init.sh"
        init.write_text(GUEST_INIT.replace("$OUT", str(outdir.resolve())).replace("$WORK", str(work)))
        init.chmod(0o755)
        cmd = [
            linux,
            f"umid=capture-ipvs-{os.getpid()}",
            f"uml_dir={work}",
            "mem=256M",
            "root=/dev/root",
            "rootfstype=hostfs",
            "rootflags=/",
            "ro",
            f"init={init}",
            "con=null",
            "con0=null,fd:1",
        ]
        # Bounded: the guest powers itself off; a stuck boot is killed by the timeout.
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180)
    if not (outdir / ".done").exists():
        sys.exit(f"capture_ipvs: the guest did not finish (rc {proc.returncode}):\n{proc.stdout[-3000:]}")
    (outdir / ".done").unlink()
    print((outdir / ".client.log").read_text())
    (outdir / ".client.log").unlink()
    for f in sorted(outdir.glob("*.txt")):
        print(f"--- {f.name}\n{f.read_text()}")


if __name__ == "__main__":
    capture(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "tests/fixtures/ipvs"))
