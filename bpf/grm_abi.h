/* SPDX-License-Identifier: Apache-2.0 */
/*
 * grm_abi.h — the ONE definition of the ABI between the sk_reuseport program (grm.bpf.c) and the
 * TypeScript generation manager (src/grm). scripts/gen-grm-abi.mjs reads the GRM_* #defines below
 * and the struct layouts from the object's BTF and writes src/grm/abi.generated.ts; never restate
 * any of this by hand on the TS side.
 *
 * Model
 * -----
 * - Group: one SO_REUSEPORT group per listen address, with an id 1..GRM_MAX_GROUPS-1. grm_groups
 *   is an ARRAY indexed by id (state + the address, so the program can check it); grm_group_ids
 *   maps an address to its id; grm_ports maps a port to the id of the only group on that port, or
 *   GRM_PORT_SHARED when several addresses share it (then grm_group_ids is consulted). The fast
 *   path is two inlined array lookups instead of a hash lookup. The program takes the bound
 *   address from md->sk; a datagram for an address we do not manage is left to the kernel
 *   (counted at grm_gstats[0]).
 * - Generation slot: GRM_MAX_SLOTS per group. A slot is FREE or IN USE; an in-use slot belongs to
 *   one app and carries the generation number (monotonic per group, never reused). The manager only
 *   hands out free slots and frees a slot on retire(), so a new generation never lands on a slot that
 *   still holds live sockets (no udpgrm-style wrap-around).
 * - Sockets: grm_socks is a REUSEPORT_SOCKARRAY indexed by GRM_SOCK_INDEX(group, slot, worker)
 *   (struct grm_sock_key names a socket elsewhere); value is the fd on update and the SO_COOKIE
 *   on lookup. Closed sockets leave it by themselves; a socket can sit at one index only.
 *   Measured against a SOCKHASH keyed by grm_sock_key: ~55 ns less per datagram (the array index
 *   replaces a hash lookup inside bpf_sk_select_reuseport), for 4 MiB of kernel memory.
 * - Apps: up to GRM_MAX_APPS worker pools per group, each with a working slot (GRM_SLOT_NONE = no
 *   working generation yet). App 0 is the default app (no SNI, unmatched SNI, unparseable).
 *   fallback_order[app] lists in-use slots, that app's first, newest generation first; it is where
 *   a new connection goes when the working slot has no live socket (counted, never the kernel hash).
 *
 * Connection ID (issued in TS, decoded here), length L = 8..20 per config:
 *   byte 0      : config id (3 bits, 0b111 = unroutable, QUIC-LB style) << 5 | 5 random bits
 *   bytes 1..3  : E = R XOR (H & 0xffffff), R = slot(5) << 19 | worker(8) << 11 | check(11)
 *   bytes 4..L-1: nonce N (4..16 random bytes)
 *   H     = SipHash-2-4(key[config], N)                       (64 bits, one hash per decode)
 *   check = (((slot << 8 | worker) + 1) * ((H >> 24) | 1) mod 2^40) >> 29   (11 bits)
 * The check is a multiply-shift hash whose multiplier is secret per nonce, so flipping bits of E
 * moves the routing field to an unpredictable check value: a forged or modified CID decodes with
 * probability ~2^-11, and then to a socket the forger cannot choose. Two config ids are live at
 * once (grm_keys[config].flags & GRM_KEY_LIVE) so a key rotation is itself zero-downtime.
 *
 * Steering (grm.bpf.c):
 *   short header, or long header whose DCID decodes as ours (Handshake, client Initials after our
 *     first flight)              -> socket {group, slot, worker}; gone -> new-connection path (counted)
 *   Initial / 0-RTT, client DCID -> grm_attempts (LRU, key = group + DCID, GRM ttl) -> same socket;
 *                                   otherwise new-connection path, recorded in grm_attempts
 *   unparseable                  -> new-connection path of app 0 (counted) or drop (GRM_GROUP_DROP_UNPARSEABLE)
 *   new-connection path          -> working slot of the app, worker = hash % workers (probing holes);
 *                                   none live -> fallback_order (counted); nothing live -> drop (counted)
 *   not a group in grm_groups    -> SK_PASS without a choice (kernel hash; counted at grm_gstats[0])
 *
 * SNI (only when built with bpf/quic_sni.h, -DGRM_WITH_SNI, and the group has names): the first
 * datagram of an attempt (no grm_attempts record) is decrypted; the SNI (lower-cased) is looked up
 * exactly, then as "*" + the name from its first dot (one-label wildcards), in grm_names; the app's
 * working generation takes the attempt, app 0 when there is no SNI or no match (counted).
 * ClientHello split over two datagrams: the socket is chosen from the FIRST datagram and recorded
 * in grm_attempts; the second follows that record (same DCID), whatever it contains and even if
 * the working generation flipped in between. If server_name only appears in the second datagram
 * (Chrome with post-quantum key shares puts it there about half the time), the attempt is steered
 * to the default app: an app that needs it must also be reachable through app 0 (or list its names
 * under app 0's certificate), or the proxy must forward. Reading the 2nd datagram first is not
 * possible: the kernel must pick a socket for every datagram as it arrives.
 *
 * Internal maps (not part of this ABI, not pinned by name): pkt_scratch (per-CPU header copy for
 * short or non-linear datagrams, attempt key) and sni_scratch / quic_sni_scratch (SNI reader).
 *
 * udpgrm compatibility (compat.bpf.c, "GRM_COMPAT_*" and struct grm_compat_* at the end of this
 * file): a separate object with its own maps (prefix grmc_, pinned in their own dir), so the
 * proxy's groups above are untouched by it.
 */
#ifndef GRM_ABI_H
#define GRM_ABI_H

#include <linux/types.h>

#define GRM_MAX_GROUPS 64
#define GRM_MAX_SLOTS 32
#define GRM_MAX_WORKERS 256
#define GRM_MAX_APPS 8
#define GRM_MAX_CONFIGS 8
#define GRM_CONFIG_UNROUTABLE 7
#define GRM_SLOT_NONE 255
#define GRM_CID_MIN_LEN 8
#define GRM_CID_MAX_LEN 20
/* CID layout ("Connection ID" above); cid.ts and cid_decode() take every number from here. */
#define GRM_CONFIG_SHIFT 5 /* byte 0 = config id << GRM_CONFIG_SHIFT | random bits below it */
#define GRM_CID_ROUTE_OFFSET 1 /* E, big-endian */
#define GRM_CID_ROUTE_BYTES 3
#define GRM_CID_NONCE_OFFSET 4
#define GRM_SLOT_BITS 5
#define GRM_WORKER_BITS 8
#define GRM_CHECK_BITS 11
#define GRM_CHECK_PRODUCT_BITS 40 /* check = top GRM_CHECK_BITS of the product mod 2^40 */
#define GRM_NAME_MAX 64
#define GRM_MAX_ATTEMPTS 65536
#define GRM_MAX_NAMES 4096
#define GRM_PROBES GRM_MAX_WORKERS /* probe every index of a slot: holes cost only when present */
#define GRM_DEFAULT_ATTEMPT_TTL_MS 10000

#define GRM_CID_ROUTE_BITS (8 * GRM_CID_ROUTE_BYTES)
_Static_assert(GRM_SLOT_BITS + GRM_WORKER_BITS + GRM_CHECK_BITS == GRM_CID_ROUTE_BITS, "R fills E");
_Static_assert(GRM_CID_ROUTE_OFFSET + GRM_CID_ROUTE_BYTES == GRM_CID_NONCE_OFFSET, "nonce follows E");
_Static_assert(1 << GRM_SLOT_BITS == GRM_MAX_SLOTS && 1 << GRM_WORKER_BITS == GRM_MAX_WORKERS, "R holds every slot and worker");
_Static_assert(1 << (8 - GRM_CONFIG_SHIFT) == GRM_MAX_CONFIGS, "byte 0 holds every config id");
/* The TS codec computes the product in doubles: it must stay below 2^53. */
_Static_assert(GRM_SLOT_BITS + GRM_WORKER_BITS + GRM_CHECK_PRODUCT_BITS <= 53, "check product exact in doubles");

/* struct grm_group.flags */
#define GRM_GROUP_DROP_UNPARSEABLE 1
#define GRM_GROUP_HAS_NAMES 2
#define GRM_GROUP_IN_USE 4

/* grm_ports value: several groups listen on this port (different addresses) */
#define GRM_PORT_SHARED 0xffffffff
#define GRM_MAX_PORTS 65536

/* struct grm_group.slot_state[] */
#define GRM_SLOT_FREE 0
#define GRM_SLOT_IN_USE 1

/* struct grm_cid_key.flags */
#define GRM_KEY_LIVE 1
#define GRM_KEY_ISSUING 2 /* the config new CIDs are issued with (TS side only) */

struct grm_group_key {
	__u32 family; /* AF_INET or AF_INET6 */
	__u32 port;   /* host byte order */
	__u8 addr[16]; /* network byte order; IPv4 in the first 4 bytes, rest zero */
};

struct grm_group {
	__u32 id;
	__u32 flags;
	struct grm_group_key addr; /* the listen address (same layout as the grm_group_ids key) */
	__u32 attempt_ttl_ms;
	__u32 last_gen; /* last generation number handed out (monotonic) */
	__u8 working_slot[GRM_MAX_APPS];
	__u8 slot_state[GRM_MAX_SLOTS];
	__u8 slot_app[GRM_MAX_SLOTS];
	__u16 slot_workers[GRM_MAX_SLOTS]; /* highest registered worker index + 1 */
	__u32 slot_gen[GRM_MAX_SLOTS];
	__u8 fallback_order[GRM_MAX_APPS][GRM_MAX_SLOTS]; /* GRM_SLOT_NONE-terminated */
};

/* grm_socks index of a socket (REUSEPORT_SOCKARRAY; value = fd on update, SO_COOKIE on lookup). */
#define GRM_SOCK_INDEX(group, slot, worker) \
	(((__u32)(group) * GRM_MAX_SLOTS + (__u32)(slot)) * GRM_MAX_WORKERS + (__u32)(worker))

struct grm_sock_key {
	__u32 group;
	__u16 slot;
	__u16 worker;
};

struct grm_cid_key {
	__u64 k0;
	__u64 k1;
	__u32 cid_len;
	__u32 flags;
};

struct grm_attempt_key {
	__u32 group;
	__u32 len;
	__u8 dcid[GRM_CID_MAX_LEN];
};

struct grm_attempt {
	__u64 expires_ns;
	struct grm_sock_key sock;
};

struct grm_name_key {
	__u32 group;
	char name[GRM_NAME_MAX]; /* lower case, zero padded; "*.example.com" for wildcards */
};

struct grm_name_val {
	__u32 app;
};

/* Per group (index = group id, 0 = datagrams for groups we do not manage). PERCPU. */
struct grm_group_stats {
	__u64 packets;
	__u64 new_conns;      /* new connections dispatched (first datagram of an attempt) */
	__u64 attempt_hits;   /* later datagrams of an attempt kept on its socket */
	__u64 cid_ok;         /* routed by our CID */
	__u64 cid_fail;       /* DCID did not decode as ours (short header or our-length long header) */
	__u64 cid_gone;       /* decoded, but that socket is gone -> new-connection path */
	__u64 fallbacks;      /* working slot had no live socket -> fallback_order */
	__u64 unparseable;    /* not QUIC-shaped */
	__u64 drops;
	__u64 sni_none;       /* new connection without a readable SNI (default app) */
	__u64 sni_unmatched;  /* SNI read but no app lists it (default app) */
	__u64 sni_match[GRM_MAX_APPS];
};

/* Per generation slot (index = group id * GRM_MAX_SLOTS + slot). PERCPU, zeroed on addGeneration. */
struct grm_gen_stats {
	__u64 packets;   /* datagrams delivered to this slot's sockets */
	__u64 new_conns;
	__u64 cid_ok;
	__u64 cid_gone;  /* CIDs naming this slot whose socket is gone */
	__u64 fallbacks; /* new connections received as a fallback for another slot */
};

/*
 * ---- udpgrm compatibility: compat.bpf.c <-> src/grm/compat ----
 * udpgrm's socket-option API on any SO_REUSEPORT UDP socket of a cgroup that has the hooks:
 *   cgroup/bind4|6      create the socket's grmc_sk storage (SO_COOKIE, netns, gen = idx = -1)
 *   cgroup/setsockopt   IPPROTO_UDP options 200..204 (udpgrm's semantics and errno values)
 *   cgroup/getsockopt   the same options, read side
 *   cgroup/sendmsg4|6   FLOW dissector: learn flows from replies
 *   sk_reuseport        grmc_select, attached by the agent to every compat group: FLOW (grmc_flows),
 *                       NOOP, CBPF (compat_cbpf.h) and BESPOKE 0xDEAD (compat_quic.h); CBPF and
 *                       BESPOKE yield a 16-bit cookie (grmc_slots[slot].cookies[idx]) or
 *                       0x80000000 + app (a new flow of that app), as udpgrm
 * Registration: the setsockopt hook posts a struct grm_compat_msg to grmc_ring; the agent
 * (udpgrm-proxy grm --daemon) takes the socket from the process (pidfd_getfd), picks its index in
 * the generation's slot, inserts it in grmc_socks (SOCKHASH keyed by SO_COOKIE), writes the slot's
 * struct grm_compat_slot and the socket's idx, and attaches grmc_select to the reuseport group.
 * Everything is pinned: a restarted agent adopts it, and requests queue in the ring meanwhile.
 *
 * Writers (one writer per value, so no update is ever lost):
 *   grmc_groups  the setsockopt hook (creation, working generations); `delete` removes entries
 *   grmc_slots   the agent only (whole-value replace: the program sees the old or the new value)
 *   grmc_sk      the hooks (gen, app) and the agent (idx); the agent's update carries the gen of
 *                the request it serves, and every later request is queued behind it
 *   grmc_flows   the sendmsg hooks and FLOW_ASSURE
 *   grmc_agent   the agent only (its registration failures per group; no program reads it)
 * Slot of a generation (udpgrm's TO_WRK_GEN): A = max_apps or 1, slot = app * (32 / A) + gen % (32 / A).
 * Cookie (16 bits, big-endian on the wire): idx << 8 | cs << 5 | slot, cs = 3-bit check of idx
 * and slot (GRM_COMPAT_COOKIE_CS_SEED; see cookie.ts).
 */
#define GRM_COMPAT_SOL_UDP 17
#define GRM_COMPAT_OPT_WORKING_GEN 200
#define GRM_COMPAT_OPT_SOCKET_GEN 201
#define GRM_COMPAT_OPT_DISSECTOR 202
#define GRM_COMPAT_OPT_FLOW_ASSURE 203
#define GRM_COMPAT_OPT_SOCKET_APP 204
#define GRM_COMPAT_DISSECTOR_FLOW 0
#define GRM_COMPAT_DISSECTOR_CBPF 1
#define GRM_COMPAT_DISSECTOR_BESPOKE 3
#define GRM_COMPAT_DISSECTOR_NOOP 4
#define GRM_COMPAT_DISSECTOR_FLAG_VERBOSE 0x8000
#define GRM_COMPAT_MAX_INSTR 64
#define GRM_COMPAT_LABEL_SZ 100
#define GRM_COMPAT_MAX_BESPOKE_SNI 8 /* BESPOKE hostname entries: {u8 app, u8 0, hostname[62]} */
#define GRM_COMPAT_BESPOKE_SNI_LEN 62
#define GRM_COMPAT_MAX_GENS 32
#define GRM_COMPAT_MAX_SOCKETS_IN_GEN 256
#define GRM_COMPAT_MAX_APPS 4
#define GRM_COMPAT_FLOW_DEFAULT_TIMEOUT_SEC 125
#define GRM_COMPAT_MAX_GROUPS 512
#define GRM_COMPAT_MAX_FLOWS 8192
#define GRM_COMPAT_MAX_SOCKETS 65536
#define GRM_COMPAT_RING_BYTES 65536
#define GRM_COMPAT_NONE 0xffffffff /* gen / idx of a socket not (yet) registered */
#define GRM_COMPAT_COOKIE_CS_SEED 0xd
#define GRM_COMPAT_GROUP_VERBOSE 1 /* struct grm_compat_group.flags */
/* struct grm_compat_msg.type */
#define GRM_COMPAT_MSG_REGISTER_SOCKET 1
#define GRM_COMPAT_MSG_SET_WORKING_GEN 2
#define GRM_COMPAT_MSG_DISSECTOR 3

/* udpgrm's struct udp_grm_dissector (632 bytes, same layout): SET/GET of option 202. */
struct grm_compat_dissector {
	__u32 dissector_type;         /* GRM_COMPAT_DISSECTOR_*, | FLAG_VERBOSE on SET */
	__u32 flow_entry_timeout_sec; /* FLOW; 0 = GRM_COMPAT_FLOW_DEFAULT_TIMEOUT_SEC */
	__u32 max_apps;
	__u32 bespoke_digest;
	char label[GRM_COMPAT_LABEL_SZ];
	__u32 filter_len; /* CBPF instructions, or BESPOKE hostname entries */
	/* CBPF: GRM_COMPAT_MAX_INSTR x {u16 code, u8 jt, u8 jf, u32 k};
	 * BESPOKE: GRM_COMPAT_MAX_BESPOKE_SNI x {u8 app, u8 reserved, u8 hostname[GRM_COMPAT_BESPOKE_SNI_LEN]} */
	__u8 payload[GRM_COMPAT_MAX_INSTR * 8];
};
_Static_assert(sizeof(struct grm_compat_dissector) == 632, "udpgrm's struct udp_grm_dissector");
_Static_assert(GRM_COMPAT_MAX_BESPOKE_SNI * (2 + GRM_COMPAT_BESPOKE_SNI_LEN) == GRM_COMPAT_MAX_INSTR * 8, "hostname entries fill the payload");

/* GET of option 201 with optlen >= 12. */
struct grm_compat_sock_gen {
	__u32 socket_gen;
	__u32 socket_idx;
	__u16 grm_cookie;
	__u16 reserved;
};

/* grmc_groups value, keyed by struct grm_group_key (the bound address). */
struct grm_compat_group {
	struct grm_compat_dissector dis; /* dissector_type without flags */
	__u64 netns_cookie;              /* of the socket that created the group */
	__u32 random_id;                 /* separates groups in grmc_flows */
	__u32 flags;                     /* GRM_COMPAT_GROUP_* */
	__u32 working_gen[GRM_COMPAT_MAX_APPS];
};

/* grmc_slots: the sockets of one generation slot, by index. Written by the agent only. */
struct grm_compat_slot_key {
	struct grm_group_key group;
	__u32 slot;
};

struct grm_compat_slot {
	__u32 max_idx; /* indices 0..max_idx-1 take new flows (entries may be dead) */
	__u32 reserved;
	__u64 cookies[GRM_COMPAT_MAX_SOCKETS_IN_GEN]; /* SO_COOKIE, 0 = empty */
};

/* grmc_sk (SK_STORAGE): per socket, created at bind for SO_REUSEPORT UDP sockets. */
struct grm_compat_sock {
	__u64 cookie;       /* SO_COOKIE (not readable in sockopt context, so recorded at bind) */
	__u64 netns_cookie;
	__u32 gen;          /* GRM_COMPAT_NONE until SOCKET_GEN */
	__u32 idx;          /* GRM_COMPAT_NONE until the agent registered it */
	__u32 app;
	__u32 reserved;
};

/* grmc_ring record. */
struct grm_compat_msg {
	__u32 type;  /* GRM_COMPAT_MSG_* */
	__u32 tgid;  /* caller's process (pid in the initial pid namespace) */
	__u32 value; /* REGISTER: socket gen; SET_WORKING_GEN: the gen; DISSECTOR: the type */
	__u32 app;
	__u64 cookie; /* the socket's SO_COOKIE */
	struct grm_group_key group;
};

/* grmc_flows (LRU): FLOW dissector, keyed by the remote address (the local one is the group's). */
struct grm_compat_flow_key {
	__u8 addr[16]; /* IPv4 in the first 4 bytes */
	__u32 port;    /* network byte order */
	__u32 random_id;
};

struct grm_compat_flow {
	__u64 cookie;     /* owner socket */
	__u64 last_tx_ns; /* bpf_ktime_get_ns of the owner's last send */
	__u32 slot;
	__u32 reserved;
};

/* grmc_stats (PERCPU_HASH keyed by struct grm_group_key): udpgrm's counters, plus per slot. */
struct grm_compat_stats {
	__u64 rx_processed_total;
	__u64 rx_internal_state_error;
	__u64 rx_cbpf_prog_error;
	__u64 rx_packet_too_short_error;
	__u64 rx_dissected_ok_total;
	__u64 rx_flow_ok;
	__u64 rx_flow_rg_conflict;
	__u64 rx_flow_other_error;
	__u64 rx_flow_new_unseen;
	__u64 rx_flow_new_had_expired;
	__u64 rx_flow_new_bad_cookie;
	__u64 rx_new_flow_total;
	__u64 rx_new_flow_working_gen_dispatch_ok;
	__u64 rx_new_flow_working_gen_dispatch_error;
	__u64 tx_total;
	__u64 tx_flow_create_ok;
	__u64 tx_flow_create_from_expired_ok;
	__u64 tx_flow_create_error;
	__u64 tx_flow_update_ok;
	__u64 tx_flow_update_conflict;
	__u64 slot_rx_new_flow[GRM_COMPAT_MAX_GENS];     /* new flows dispatched to the slot */
	__u64 slot_rx_existing_flow[GRM_COMPAT_MAX_GENS]; /* datagrams of known flows delivered to it */
};

/* grmc_agent (HASH keyed by struct grm_group_key): udpgrm's management counters, kept by the agent. */
struct grm_compat_agent_stats {
	__u64 socket_critical;       /* registrations that failed (process gone, socket not found...) */
	__u64 socket_critical_gauge; /* 1 while the group's last registration failed, else 0 */
};

#endif
