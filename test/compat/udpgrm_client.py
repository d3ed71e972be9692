#!/usr/bin/env python3
"""A udpgrm client written like the article's snippet: only the standard socket module.

python3 udpgrm_client.py probe HOST PORT            -> {"working_gen": W} (-1 without a group)
python3 udpgrm_client.py register HOST PORT [noop]  -> register gen W+1, wait, flip; prints the steps
python3 udpgrm_client.py errnos HOST PORT           -> {"case": errno-name or "ok", ...} for each misuse
python3 udpgrm_client.py errnos-more HOST PORT      -> more error paths (uses PORT..PORT+9)
python3 udpgrm_client.py nohooks HOST PORT          -> {"set_200": errno, "get_200": errno, ...} (no hooks)
python3 udpgrm_client.py netns HOST PORT            -> SET/GET on a group of another netns
python3 udpgrm_client.py fill-groups HOST PORT      -> a group per port from PORT on until EBADF
python3 udpgrm_client.py fill-ring HOST PORT        -> SOCKET_GEN until EAGAIN: {"posted": N, "errno": ...}
python3 udpgrm_client.py thread-register HOST PORT  -> register from a thread other than the main one
python3 udpgrm_client.py many HOST PORT N           -> N sockets registered as W+1 (see many())
python3 udpgrm_client.py echo HOST PORT             -> NOOP echo generation (see echo())
python3 udpgrm_client.py noop-flips HOST PORT N     -> udpgrm's test_noop: N flips in one process (see there)
python3 udpgrm_client.py serve HOST PORT JSON       -> one generation driven over stdin (see serve())
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
DISSECTOR_BESPOKE = 3
SO_COOKIE = 57  # <asm-generic/socket.h>
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


def dissector(kind, timeout=0, max_apps=0, filter_len=0, digest=0, payload=b""):
    # struct udp_grm_dissector: type, flow_entry_timeout_sec, max_apps, bespoke_digest, label[100],
    # filter_len, then filter[64] {u16 code, u8 jt, u8 jf, u32 k} or 8 x {u8 app, u8 0, hostname[62]}
    # (632 bytes)
    return struct.pack("IIII100sI512s", kind, timeout, max_apps, digest, b"", filter_len, payload)


def cbpf_payload(insns):
    return b"".join(struct.pack("HBBI", code, jt, jf, k) for code, jt, jf, k in insns)


def sni_payload(entries):
    return b"".join(struct.pack("BB62s", app, 0, host.encode()) for app, host in entries)


def sockaddr_in(ip, port):
    if ":" in ip:  # struct sockaddr_in6: family, port, flowinfo, address, scope id
        return struct.pack("=H", socket.AF_INET6) + struct.pack("!HI", port, 0) + socket.inet_pton(socket.AF_INET6, ip) + bytes(4)
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


def cmd_errnos_more(host, port):
    r = {}
    # FLOW_ASSURE with a family other than AF_INET/AF_INET6: EPERM.
    flow = reuseport_socket(host, port)
    flow.setsockopt(IPPROTO_UDP, UDP_GRM_DISSECTOR, dissector(DISSECTOR_FLOW))
    r["flow_assure_bad_family"] = errname(lambda: flow.setsockopt(IPPROTO_UDP, UDP_GRM_FLOW_ASSURE, struct.pack("=H", socket.AF_UNIX) + bytes(14)))
    r["flow_assure_v4"] = errname(lambda: flow.setsockopt(IPPROTO_UDP, UDP_GRM_FLOW_ASSURE, sockaddr_in("127.0.0.9", 9)))
    # GET with fewer than 4 bytes: EFAULT.
    r["get_socket_gen_2_bytes"] = errname(lambda: flow.getsockopt(IPPROTO_UDP, UDP_GRM_SOCKET_GEN, 2))
    r["get_working_gen_2_bytes"] = errname(lambda: flow.getsockopt(IPPROTO_UDP, UDP_GRM_WORKING_GEN, 2))
    # Other options pass through, also with buffers over a page (udpgrm: optlen 0 for the kernel).
    r["big_set_other"] = errname(lambda: flow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, struct.pack("i", 4096) + bytes(8188)))
    r["rcvbuf_after"] = flow.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    # A 20-byte DISSECTOR is read as its first 16 bytes (udpgrm's size classes): bytes 16..19
    # (the label's start) are not stored.
    s20 = reuseport_socket(host, port + 1)
    r["dissector_20_bytes"] = errname(lambda: s20.setsockopt(IPPROTO_UDP, UDP_GRM_DISSECTOR, struct.pack("IIII", DISSECTOR_NOOP, 0, 0, 0) + b"\xff\xff\xff\xff"))
    d = s20.getsockopt(IPPROTO_UDP, UDP_GRM_DISSECTOR, 116)
    r["dissector_20_read_back"] = [struct.unpack("I", d[:4])[0], d[16:20].hex()]
    # Configurations udpgrm refuses on creation, and ours for BESPOKE.
    cases = {
        "cbpf_with_digest": dissector(DISSECTOR_CBPF, filter_len=1, digest=5, payload=cbpf_payload([(0x06, 0, 0, 0)])),
        "noop_with_filter": dissector(DISSECTOR_NOOP, filter_len=1, payload=cbpf_payload([(0x06, 0, 0, 0)])),
        "noop_with_apps": dissector(DISSECTOR_NOOP, max_apps=1),
        "flow_with_digest": dissector(DISSECTOR_FLOW, digest=0xdead),
        "bespoke_without_digest": dissector(DISSECTOR_BESPOKE),
        "bespoke_9_hostnames": dissector(DISSECTOR_BESPOKE, digest=0xdead, filter_len=9),
        "bespoke_5_apps": dissector(DISSECTOR_BESPOKE, digest=0xdead, max_apps=5),
    }
    for i, (name, d) in enumerate(cases.items()):
        sd = reuseport_socket(host, port + 2 + i)
        r[name] = errname(lambda: sd.setsockopt(IPPROTO_UDP, UDP_GRM_DISSECTOR, d))
        r[name + "_group"] = sd.getsockopt(IPPROTO_UDP, UDP_GRM_WORKING_GEN)  # -1: none left behind
        sd.close()
    emit(**r)


def cmd_nohooks(host, port):
    """Every option without the hooks: the kernel's own answer."""
    sd = reuseport_socket(host, port)
    r = {}
    for opt in range(UDP_GRM_WORKING_GEN, UDP_GRM_SOCKET_APP + 1):
        r["set_%d" % opt] = errname(lambda: sd.setsockopt(IPPROTO_UDP, opt, 1))
        r["get_%d" % opt] = errname(lambda: sd.getsockopt(IPPROTO_UDP, opt, 632))
    emit(**r)


def cmd_netns(host, port):
    """Run in another netns than the group's creator: SET fails EBADF; GET does not check."""
    sd = reuseport_socket(host, port)
    emit(set_working_gen=errname(lambda: sd.setsockopt(IPPROTO_UDP, UDP_GRM_WORKING_GEN, 5)),
         set_socket_gen=errname(lambda: sd.setsockopt(IPPROTO_UDP, UDP_GRM_SOCKET_GEN, 1)),
         get_working_gen=sd.getsockopt(IPPROTO_UDP, UDP_GRM_WORKING_GEN))


def cmd_fill_groups(host, port):
    """SOCKET_APP 0 (no ring record) creates a group per address until the table is full."""
    created = 0
    for p in range(port, port + 1000):
        sd = reuseport_socket(host, p)
        try:
            sd.setsockopt(IPPROTO_UDP, UDP_GRM_SOCKET_APP, 0)
            created += 1
        except OSError as e:
            emit(created=created, errno=errno.errorcode.get(e.errno), probe=sd.getsockopt(IPPROTO_UDP, UDP_GRM_WORKING_GEN))
            return
        finally:
            sd.close()
    emit(created=created, errno=None)


def cmd_thread_register(host, port):
    """Registration from a thread other than the main one (the agent looks the socket up by tgid)."""
    import threading
    out = {}

    def run():
        sd = reuseport_socket(host, port)
        out["tid_is_pid"] = threading.get_native_id() == os.getpid()
        sd.setsockopt(IPPROTO_UDP, UDP_GRM_SOCKET_GEN, 1)
        out["gen"], out["idx"] = wait_registered(sd)
        sd.close()

    t = threading.Thread(target=run)
    t.start()
    t.join()
    emit(**out)


def cmd_many(host, port, n):
    """N sockets registered as W+1 at once. Prints {"registered": K} once K = min(N, 256) have an
    index; on "report" (stdin) prints {"idx": [...]} (0xffffffff: never registered)."""
    n = int(n)
    socks = [reuseport_socket(host, port) for _ in range(n)]
    gen = socks[0].getsockopt(IPPROTO_UDP, UDP_GRM_WORKING_GEN) + 1
    for sd in socks:
        sd.setsockopt(IPPROTO_UDP, UDP_GRM_SOCKET_GEN, gen)
    want = min(n, 256)
    deadline = time.time() + 30
    while time.time() < deadline:
        idx = [struct.unpack("II", sd.getsockopt(IPPROTO_UDP, UDP_GRM_SOCKET_GEN, 8))[1] for sd in socks]
        if sum(1 for i in idx if i != 0xFFFFFFFF) >= want:
            break
        time.sleep(0.01)
    emit(registered=sum(1 for i in idx if i != 0xFFFFFFFF), gen=gen)
    sys.stdin.readline()
    emit(idx=[struct.unpack("II", sd.getsockopt(IPPROTO_UDP, UDP_GRM_SOCKET_GEN, 8))[1] for sd in socks])
    sys.stdin.readline()


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
            # DISSECTOR on a new address: EAGAIN, and no group is left behind (a retry may then
            # set any dissector).
            fresh = reuseport_socket(host, port + 50)
            e3 = errname(lambda: fresh.setsockopt(IPPROTO_UDP, UDP_GRM_DISSECTOR, dissector(DISSECTOR_NOOP)))
            emit(posted=posted, errno=errno.errorcode.get(e.errno), working_gen_errno=e2,
                 working_gen_before=before, working_gen_after=sd.getsockopt(IPPROTO_UDP, UDP_GRM_WORKING_GEN),
                 dissector_errno=e3, dissector_group=fresh.getsockopt(IPPROTO_UDP, UDP_GRM_WORKING_GEN))
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


SO_RCVBUFFORCE = 33


def cmd_noop_flips(host, port, flips):
    """udpgrm's test_noop (tests/test_dissector_noop.py): a NOOP service whose generations are new
    sockets of this process. Per flip: bind a socket, register it as the next generation, wait,
    flip, give datagrams in flight 10 ms, read the old socket empty, close it. Datagrams carry a
    4-byte sequence number. Prints {"step": "serving"} after the first flip and {"step": "flips",
    "gens": [...]} after the last; on "stop" (stdin) reads the last socket until 50 ms pass
    without a datagram and prints {"received": count, "distinct": count}."""
    seen = []

    def new_socket():
        sd = reuseport_socket(host, port)
        # Room for a scheduling stall of the test host: only steering may lose datagrams here.
        sd.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
        sd.setblocking(False)
        return sd

    def read_empty(sd):
        while True:
            try:
                seen.append(struct.unpack("!I", sd.recv(64)[:4])[0])
            except BlockingIOError:
                return

    def register(sd, gen):
        sd.setsockopt(IPPROTO_UDP, UDP_GRM_SOCKET_GEN, gen)
        for _ in range(5000):
            if struct.unpack("II", sd.getsockopt(IPPROTO_UDP, UDP_GRM_SOCKET_GEN, 8))[1] != 0xFFFFFFFF:
                return
            time.sleep(0.001)
        raise SystemExit("registration did not complete")

    sd = new_socket()
    sd.setsockopt(IPPROTO_UDP, UDP_GRM_DISSECTOR, dissector(DISSECTOR_NOOP))
    gen = sd.getsockopt(IPPROTO_UDP, UDP_GRM_WORKING_GEN) + 1
    register(sd, gen)
    sd.setsockopt(IPPROTO_UDP, UDP_GRM_WORKING_GEN, gen)
    emit(step="serving", gen=gen)
    sys.stdin.readline()  # "go": traffic has started
    gens = []
    for _ in range(int(flips)):
        gen += 1
        sa = new_socket()
        register(sa, gen)
        sa.setsockopt(IPPROTO_UDP, UDP_GRM_WORKING_GEN, gen)
        time.sleep(0.01)
        read_empty(sd)
        sd.close()
        sd = sa
        gens.append(gen)
        read_empty(sd)
    emit(step="flips", gens=gens)
    sys.stdin.readline()  # "stop": traffic has ended
    quiet = time.time()
    while time.time() - quiet < 0.05:
        n = len(seen)
        select.select([sd], [], [], 0.05)
        read_empty(sd)
        if len(seen) != n:
            quiet = time.time()
    emit(received=len(seen), distinct=len(set(seen)))


def cmd_serve(host, port, spec):
    """One generation of a service, driven by the test. spec (JSON): dissector ("flow", "noop",
    "cbpf", "bespoke"), timeout, max_apps, cbpf [[code, jt, jf, k]...], digest, sni [[app, host]...],
    app, device (SO_BINDTODEVICE), quiet (datagrams are read and dropped, nothing printed),
    noregister (bound only: no SOCKET_GEN).
    Registers as W+1 of its app and prints {"step": "registered", gen, idx, cookie, so_cookie}
    (with noregister at once, gen and idx then 0xffffffff).
    Then serves:
      stdin "flip"               -> WORKING_GEN = its gen          {"step": "flipped"}
      stdin "working N"          -> WORKING_GEN = N                {"step": "working", "gen": N}
      stdin "regen N"            -> SOCKET_GEN = N (re-registration; "flip" then flips to N), and
                                    reads it at once {"step": "regen", gen, idx, cookie}
      stdin "sockgen N"          -> SOCKET_GEN = N                 {"step": "sockgen", "errno": ...}
      stdin "read"               -> GET SOCKET_GEN (12 bytes)      {"step": "read", gen, idx, cookie}
      stdin "assure IP PORT"     -> FLOW_ASSURE of that remote     {"assure": "ok" or errno name}
      stdin "assure-many IP P N" -> FLOW_ASSURE of ports P..P+N-1   {"assured": {outcome: count}}
      stdin "quit"               -> exits
      a datagram                 -> {"rx": payload, "gen": gen}; when the payload starts with "r",
                                    replies payload + "@gen" (a send: FLOW learns the flow) and
                                    prints {"tx": payload}
    """
    o = json.loads(spec)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sd = socket.socket(family, socket.SOCK_DGRAM, 0)
    if o.get("device"):
        sd.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, o["device"].encode())
    sd.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sd.bind((host, port))
    kinds = {"flow": DISSECTOR_FLOW, "cbpf": DISSECTOR_CBPF, "bespoke": DISSECTOR_BESPOKE, "noop": DISSECTOR_NOOP}
    if "dissector" in o:
        insns = o.get("cbpf", [])
        sni = o.get("sni", [])
        payload = cbpf_payload(insns) if insns else sni_payload(sni)
        sd.setsockopt(IPPROTO_UDP, UDP_GRM_DISSECTOR,
                      dissector(kinds[o["dissector"]], o.get("timeout", 0), o.get("max_apps", 0),
                                len(insns) or len(sni), o.get("digest", 0), payload))
    if o.get("app"):
        sd.setsockopt(IPPROTO_UDP, UDP_GRM_SOCKET_APP, o["app"])
    gen = sd.getsockopt(IPPROTO_UDP, UDP_GRM_WORKING_GEN) + 1
    if not o.get("noregister"):
        sd.setsockopt(IPPROTO_UDP, UDP_GRM_SOCKET_GEN, gen)
        wait_registered(sd)
    g, idx, cookie, _ = struct.unpack("IIHH", sd.getsockopt(IPPROTO_UDP, UDP_GRM_SOCKET_GEN, 12))
    so_cookie = struct.unpack("Q", sd.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8))[0]
    emit(step="registered", gen=g, idx=idx, cookie=cookie, so_cookie=so_cookie)
    sd.setblocking(False)
    stdin = sys.stdin.fileno()
    pending = b""
    while True:
        ready, _, _ = select.select([sd, stdin], [], [])
        if sd in ready:
            while True:
                try:
                    msg, addr = sd.recvfrom(2048)
                except BlockingIOError:
                    break
                text = msg.decode("latin1")
                if o.get("quiet"):
                    continue
                emit(rx=text, gen=gen)
                if msg.startswith(b"r"):
                    sd.sendto(msg + b"@%d" % gen, addr)
                    emit(tx=text)
        if stdin in ready:
            chunk = os.read(stdin, 4096)
            if not chunk:
                return
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                words = line.decode().split()
                if words == ["flip"]:
                    sd.setsockopt(IPPROTO_UDP, UDP_GRM_WORKING_GEN, gen)
                    emit(step="flipped", gen=gen)
                elif words and words[0] == "working":
                    sd.setsockopt(IPPROTO_UDP, UDP_GRM_WORKING_GEN, int(words[1]))
                    emit(step="working", gen=int(words[1]))
                elif words and words[0] == "sockgen":
                    emit(step="sockgen", errno=errname(lambda: sd.setsockopt(IPPROTO_UDP, UDP_GRM_SOCKET_GEN, int(words[1]))))
                elif words and words[0] == "regen":
                    gen = int(words[1])
                    sd.setsockopt(IPPROTO_UDP, UDP_GRM_SOCKET_GEN, gen)
                    g, idx, cookie, _ = struct.unpack("IIHH", sd.getsockopt(IPPROTO_UDP, UDP_GRM_SOCKET_GEN, 12))
                    emit(step="regen", gen=g, idx=idx, cookie=cookie)
                elif words == ["read"]:
                    g, idx, cookie, _ = struct.unpack("IIHH", sd.getsockopt(IPPROTO_UDP, UDP_GRM_SOCKET_GEN, 12))
                    emit(step="read", gen=g, idx=idx, cookie=cookie)
                elif words and words[0] == "assure":
                    emit(assure=errname(lambda: sd.setsockopt(IPPROTO_UDP, UDP_GRM_FLOW_ASSURE, sockaddr_in(words[1], int(words[2])))),
                         port=int(words[2]))
                elif words and words[0] == "assure-many":
                    # assure-many IP FIRST_PORT N: FLOW_ASSURE of N remotes, outcomes counted
                    outcomes = {}
                    for p in range(int(words[2]), int(words[2]) + int(words[3])):
                        e = errname(lambda: sd.setsockopt(IPPROTO_UDP, UDP_GRM_FLOW_ASSURE, sockaddr_in(words[1], p)))
                        outcomes[e] = outcomes.get(e, 0) + 1
                    emit(assured=outcomes)
                elif words == ["quit"]:
                    return


COMMANDS = {"probe": cmd_probe, "register": cmd_register, "errnos": cmd_errnos, "errnos-more": cmd_errnos_more,
            "nohooks": cmd_nohooks, "netns": cmd_netns, "fill-groups": cmd_fill_groups, "fill-ring": cmd_fill_ring,
            "thread-register": cmd_thread_register, "many": cmd_many, "echo": cmd_echo, "noop-flips": cmd_noop_flips,
            "serve": cmd_serve}

if __name__ == "__main__":
    name, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    COMMANDS[name](host, port, *sys.argv[4:])
