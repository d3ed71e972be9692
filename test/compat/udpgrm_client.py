#!/usr/bin/env python3
"""A udpgrm client written like the article's snippet: only the standard socket module.

python3 udpgrm_client.py probe HOST PORT            -> {"working_gen": W} (-1 without a group)
python3 udpgrm_client.py register HOST PORT [noop]  -> register gen W+1, wait, flip; prints the steps
python3 udpgrm_client.py errnos HOST PORT           -> {"case": errno-name or "ok", ...} for each misuse
python3 udpgrm_client.py fill-ring HOST PORT        -> SOCKET_GEN until EAGAIN: {"posted": N, "errno": ...}
python3 udpgrm_client.py echo HOST PORT             -> NOOP echo generation (see echo())
Every line printed is one JSON object.
"""
import errno
import json
import os
import select
import socket
import struct
import sys
import time

IPPROTO_UDP = socket.IPPROTO_UDP
UDP_GRM_WORKING_GEN = 200
UDP_GRM_SOCKET_GEN = 201
UDP_GRM_DISSECTOR = 202
UDP_GRM_FLOW_ASSURE = 203
UDP_GRM_SOCKET_APP = 204
DISSECTOR_FLOW = 0
DISSECTOR_CBPF = 1
DISSECTOR_NOOP = 4


def emit(**kw):
    print(json.dumps(kw), flush=True)


def reuseport_socket(host, port, reuseport=True, bind=True):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sd = socket.socket(family, socket.SOCK_DGRAM, 0)
    if reuseport:
        sd.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if bind:
        sd.bind((host, port))
    return sd


def dissector(kind, timeout=0, max_apps=0, filter_len=0):
    # struct udp_grm_dissector: type, flow_entry_timeout_sec, max_apps, bespoke_digest, label[100],
    # filter_len, filter[64] (632 bytes)
    return struct.pack("IIII100sI512s", kind, timeout, max_apps, 0, b"", filter_len, b"")


def sockaddr_in(ip, port):
    return struct.pack("=H", socket.AF_INET) + struct.pack("!H", port) + socket.inet_aton(ip) + bytes(8)


def wait_registered(sd, tries=12):
    """udpgrm's README loop: poll the 8-byte SOCKET_GEN until the index is set, backing off."""
    for i in range(tries):
        gen, idx = struct.unpack("II", sd.getsockopt(IPPROTO_UDP, UDP_GRM_SOCKET_GEN, 8))
        if idx != 0xFFFFFFFF:
            return gen, idx
        time.sleep(0.01 * (2 ** i))
    raise SystemExit("registration did not complete")


def errname(fn):
    try:
        fn()
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))


def cmd_probe(host, port):
    sd = reuseport_socket(host, port)
    emit(working_gen=sd.getsockopt(IPPROTO_UDP, UDP_GRM_WORKING_GEN))


def cmd_register(host, port, kind=None):
    sd = reuseport_socket(host, port)
    work_gen = sd.getsockopt(IPPROTO_UDP, UDP_GRM_WORKING_GEN)
    emit(step="probe", working_gen=work_gen)
    if kind == "noop":
        sd.setsockopt(IPPROTO_UDP, UDP_GRM_DISSECTOR, dissector(DISSECTOR_NOOP))
    gen = max(work_gen, 0) + 1 if work_gen != -1 else 1
    sd.setsockopt(IPPROTO_UDP, UDP_GRM_SOCKET_GEN, gen)
    g, idx = wait_registered(sd)
    sg, sidx, cookie, _ = struct.unpack("IIHH", sd.getsockopt(IPPROTO_UDP, UDP_GRM_SOCKET_GEN, 12))
    emit(step="registered", gen=g, idx=idx, cookie=cookie, cookie_gen=sg, cookie_idx=sidx)
    sd.setsockopt(IPPROTO_UDP, UDP_GRM_WORKING_GEN, gen)
    emit(step="flipped", working_gen=sd.getsockopt(IPPROTO_UDP, UDP_GRM_WORKING_GEN))
    d = struct.unpack("IIII", sd.getsockopt(IPPROTO_UDP, UDP_GRM_DISSECTOR, 16))
    emit(step="dissector", type=d[0], timeout=d[1], max_apps=d[2], digest=d[3])


def cmd_errnos(host, port):
    r = {}
    # A socket without SO_REUSEPORT has no udpgrm state.
    plain = reuseport_socket(host, port + 1, reuseport=False)
    r["set_without_reuseport"] = errname(lambda: plain.setsockopt(IPPROTO_UDP, UDP_GRM_SOCKET_GEN, 1))
    r["get_socket_gen_without_reuseport"] = errname(lambda: plain.getsockopt(IPPROTO_UDP, UDP_GRM_SOCKET_GEN, 8))
    r["get_app_without_reuseport"] = errname(lambda: plain.getsockopt(IPPROTO_UDP, UDP_GRM_SOCKET_APP))
    sd = reuseport_socket(host, port)
    r["probe_no_group"] = sd.getsockopt(IPPROTO_UDP, UDP_GRM_WORKING_GEN)
    r["get_dissector_no_group"] = errname(lambda: sd.getsockopt(IPPROTO_UDP, UDP_GRM_DISSECTOR, 632))
    r["short_optval"] = errname(lambda: sd.setsockopt(IPPROTO_UDP, UDP_GRM_WORKING_GEN, b"\x01\x00"))
    r["unknown_dissector"] = errname(lambda: sd.setsockopt(IPPROTO_UDP, UDP_GRM_DISSECTOR, dissector(2)))
    r["flow_with_apps"] = errname(lambda: sd.setsockopt(IPPROTO_UDP, UDP_GRM_DISSECTOR, dissector(DISSECTOR_FLOW, max_apps=2)))
    r["probe_after_failed_create"] = sd.getsockopt(IPPROTO_UDP, UDP_GRM_WORKING_GEN)
    r["set_noop"] = errname(lambda: sd.setsockopt(IPPROTO_UDP, UDP_GRM_DISSECTOR, dissector(DISSECTOR_NOOP)))
    r["set_noop_again"] = errname(lambda: sd.setsockopt(IPPROTO_UDP, UDP_GRM_DISSECTOR, dissector(DISSECTOR_NOOP)))
    r["set_noop_verbose"] = errname(lambda: sd.setsockopt(IPPROTO_UDP, UDP_GRM_DISSECTOR, dissector(DISSECTOR_NOOP | 0x8000)))
    r["set_flow_on_noop"] = errname(lambda: sd.setsockopt(IPPROTO_UDP, UDP_GRM_DISSECTOR, dissector(DISSECTOR_FLOW)))
    r["flow_assure_on_noop"] = errname(lambda: sd.setsockopt(IPPROTO_UDP, UDP_GRM_FLOW_ASSURE, sockaddr_in("127.0.0.1", 1)))
    r["get_flow_assure"] = errname(lambda: sd.getsockopt(IPPROTO_UDP, UDP_GRM_FLOW_ASSURE, 16))
    r["app_beyond_max_apps"] = errname(lambda: sd.setsockopt(IPPROTO_UDP, UDP_GRM_SOCKET_APP, 1))
    r["app_same"] = errname(lambda: sd.setsockopt(IPPROTO_UDP, UDP_GRM_SOCKET_APP, 0))
    r["get_app"] = sd.getsockopt(IPPROTO_UDP, UDP_GRM_SOCKET_APP)
    r["socket_gen_unregistered"] = list(struct.unpack("IIHH", sd.getsockopt(IPPROTO_UDP, UDP_GRM_SOCKET_GEN, 12)))
    r["socket_gen_4"] = sd.getsockopt(IPPROTO_UDP, UDP_GRM_SOCKET_GEN)
    sd.setsockopt(IPPROTO_UDP, UDP_GRM_SOCKET_GEN, 7)
    r["app_after_gen"] = errname(lambda: sd.setsockopt(IPPROTO_UDP, UDP_GRM_SOCKET_APP, 1))
    r["working_gen_any_value"] = errname(lambda: sd.setsockopt(IPPROTO_UDP, UDP_GRM_WORKING_GEN, 356))
    r["working_gen_read"] = sd.getsockopt(IPPROTO_UDP, UDP_GRM_WORKING_GEN)
    r["other_option_passes"] = errname(lambda: sd.getsockopt(IPPROTO_UDP, 1))  # UDP_CORK: the kernel's
    emit(**r)


def cmd_fill_ring(host, port):
    sd = reuseport_socket(host, port)
    posted = 0
    while posted < 100000:
        try:
            sd.setsockopt(IPPROTO_UDP, UDP_GRM_SOCKET_GEN, 3)
            posted += 1
        except OSError as e:
            before = sd.getsockopt(IPPROTO_UDP, UDP_GRM_WORKING_GEN)
            e2 = errname(lambda: sd.setsockopt(IPPROTO_UDP, UDP_GRM_WORKING_GEN, 9))
            emit(posted=posted, errno=errno.errorcode.get(e.errno), working_gen_errno=e2,
                 working_gen_before=before, working_gen_after=sd.getsockopt(IPPROTO_UDP, UDP_GRM_WORKING_GEN))
            return
    emit(posted=posted, errno=None)


def cmd_echo(host, port):
    """One generation of a NOOP echo service. Started ahead of time, it waits for 'go' (stdin), then
    registers as W+1, flips and echoes. On 'drain' (stdin) the next generation has flipped, so
    nothing new arrives: it echoes what is queued, then exits."""
    sys.stdin.readline()
    sd = reuseport_socket(host, port)
    sd.setsockopt(IPPROTO_UDP, UDP_GRM_DISSECTOR, dissector(DISSECTOR_NOOP))
    work_gen = sd.getsockopt(IPPROTO_UDP, UDP_GRM_WORKING_GEN)
    gen = work_gen + 1
    sd.setsockopt(IPPROTO_UDP, UDP_GRM_SOCKET_GEN, gen)
    wait_registered(sd)
    sd.setsockopt(IPPROTO_UDP, UDP_GRM_WORKING_GEN, gen)
    emit(step="serving", gen=gen)
    sd.setblocking(False)
    echoed = 0
    stdin = sys.stdin.fileno()
    draining = False
    while True:
        ready, _, _ = select.select([sd, stdin] if not draining else [sd], [], [], 0.05 if draining else None)
        if stdin in ready:
            os.read(stdin, 64)
            draining = True
            continue
        if sd in ready:
            while True:
                try:
                    msg, addr = sd.recvfrom(2048)
                except BlockingIOError:
                    break
                sd.sendto(msg, addr)
                echoed += 1
        elif draining:
            # Queue empty for 50 ms after the flip: a datagram in flight during the flip is
            # enqueued within microseconds.
            break
    emit(step="drained", gen=gen, echoed=echoed)


COMMANDS = {"probe": cmd_probe, "register": cmd_register, "errnos": cmd_errnos, "fill-ring": cmd_fill_ring, "echo": cmd_echo}

if __name__ == "__main__":
    name, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    COMMANDS[name](host, port, *sys.argv[4:])
