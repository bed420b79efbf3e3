# Tandem's privileged host operations for a Xen domain, in one persistent
# process per node, so an epoch pays a pipe round trip, not a process start
# (docs/xen.md says why this and not a C helper or an N-API addon):
# - hypercalls through Xen's own Python bindings (xen.lowlevel.xc, shipped in
#   Debian's xen-utils-4.17): domain info, fast resume, pause and unpause;
# - the plug qdisc's block and release (output commit), one rtnetlink
#   request each, answered by the kernel's ack.
#
# Protocol: one JSON object per line each way. Requests:
#   {"id": N, "op": "info"|"resume"|"pause"|"unpause", "domid": D, "fast": B}
#   {"id": N, "op": "plug", "ifindex": I, "handle": H, "action": "block"|"release"|"release-all"}
# Reply: {"id": N, "ok": true, "result": ...} or {"id": N, "ok": false, "error": "..."}.
# A line longer than MAX_LINE, or one that is not such a request, gets an
# error reply (id null when unknown) and the process goes on.
import json
import socket
import struct
import sys

MAX_LINE = 4096
OPS = ("info", "resume", "pause", "unpause")

# rtnetlink, for the plug qdisc (linux/rtnetlink.h, linux/pkt_sched.h).
RTM_NEWQDISC = 36
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NLMSG_ERROR = 2
TCA_KIND = 1
TCA_OPTIONS = 2
TC_H_ROOT = 0xFFFFFFFF
PLUG_ACTIONS = {"block": 0, "release": 1, "release-all": 2}  # TCQ_PLUG_BUFFER, _RELEASE_ONE, _RELEASE_INDEFINITE


class Rtnl:
    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
        self.sock.bind((0, 0))
        self.seq = 0

    def plug(self, ifindex, handle, action):
        def attr(kind, data):
            length = 4 + len(data)
            return struct.pack("HH", length, kind) + data + b"\0" * ((4 - length % 4) % 4)

        self.seq += 1
        body = struct.pack("BxxxiIII", socket.AF_UNSPEC, ifindex, handle, TC_H_ROOT, 0)
        body += attr(TCA_KIND, b"plug\0") + attr(TCA_OPTIONS, struct.pack("iI", PLUG_ACTIONS[action], 0))
        self.sock.send(struct.pack("IHHII", 16 + len(body), RTM_NEWQDISC, NLM_F_REQUEST | NLM_F_ACK, self.seq, 0) + body)
        while True:
            reply = self.sock.recv(65536)
            at = 0
            while at + 16 <= len(reply):
                length, kind, _flags, seq, _pid = struct.unpack_from("IHHII", reply, at)
                if length < 16:
                    raise OSError("malformed netlink reply")
                if kind == NLMSG_ERROR and seq == self.seq:
                    (error,) = struct.unpack_from("i", reply, at + 16)
                    if error != 0:
                        raise OSError(-error, "%s (the plug qdisc on ifindex %d, handle 0x%x)" % (__import__("os").strerror(-error), ifindex, handle))
                    return 0
                at += (length + 3) & ~3


def reply(obj):
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def main():
    sys.path.insert(0, sys.argv[1] if len(sys.argv) > 1 else "/usr/lib/xen-4.17/lib/python")
    try:
        import xen.lowlevel.xc as xc_module

        xc = xc_module.xc()
    except Exception as err:  # no Xen here, or no privilege: said once, then every request fails
        reply({"id": None, "ok": False, "error": "cannot open Xen's control interface: %s" % err})
        return 3
    reply({"id": 0, "ok": True, "result": "ready"})
    rtnl = None
    for line in sys.stdin.buffer:
        if len(line) > MAX_LINE:
            reply({"id": None, "ok": False, "error": "request line of %d bytes (most %d)" % (len(line), MAX_LINE)})
            continue
        try:
            req = json.loads(line)
        except ValueError:
            reply({"id": None, "ok": False, "error": "request is not JSON"})
            continue
        rid = req.get("id") if isinstance(req, dict) else None
        if not isinstance(rid, int) or isinstance(rid, bool):
            reply({"id": None, "ok": False, "error": "request has no integer id"})
            continue
        op = req.get("op")
        if op == "plug":
            ifindex, handle, action = req.get("ifindex"), req.get("handle"), req.get("action")
            if not isinstance(ifindex, int) or not 0 < ifindex < 2**31 or not isinstance(handle, int) or not 0 < handle < 2**32 or action not in PLUG_ACTIONS:
                reply({"id": rid, "ok": False, "error": "bad request: plug ifindex %r, handle %r, action %r" % (ifindex, handle, action)})
                continue
            try:
                rtnl = rtnl or Rtnl()
                reply({"id": rid, "ok": True, "result": rtnl.plug(ifindex, handle, action)})
            except Exception as err:
                reply({"id": rid, "ok": False, "error": "plug %s failed: %s" % (action, err)})
            continue
        domid = req.get("domid")
        if op not in OPS or not isinstance(domid, int) or isinstance(domid, bool) or not 0 < domid < 0x7FF0:
            reply({"id": rid, "ok": False, "error": "bad request: op %r, domid %r" % (op, domid)})
            continue
        try:
            if op == "info":
                found = [d for d in xc.domain_getinfo(domid, 1) if d.get("domid", d.get("dom")) == domid]
                result = None
                if found:
                    d = found[0]
                    result = {k: int(d[k]) for k in ("dying", "crashed", "shutdown", "paused", "blocked", "running", "shutdown_reason", "mem_kb", "online_vcpus") if k in d}
            elif op == "resume":
                result = xc.domain_resume(domid, 1 if req.get("fast") else 0)
            elif op == "pause":
                result = xc.domain_pause(domid)
            else:
                result = xc.domain_unpause(domid)
            reply({"id": rid, "ok": True, "result": result})
        except Exception as err:
            reply({"id": rid, "ok": False, "error": "%s of domain %d failed: %s" % (op, domid, err)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
