# Tandem's few Xen hypercalls, through Xen's own Python bindings
# (xen.lowlevel.xc, shipped in Debian's xen-utils-4.17): domain info, fast
# resume, pause and unpause. One persistent process per node, so an epoch
# pays a pipe round trip, not a process start (docs/xen.md says why this and
# not a C helper or an N-API addon).
#
# Protocol: one JSON object per line each way. Request:
#   {"id": N, "op": "info"|"resume"|"pause"|"unpause", "domid": D, "fast": B}
# Reply: {"id": N, "ok": true, "result": ...} or {"id": N, "ok": false, "error": "..."}.
# A line longer than MAX_LINE, or one that is not such a request, gets an
# error reply (id null when unknown) and the process goes on.
import json
import sys

MAX_LINE = 4096
OPS = ("info", "resume", "pause", "unpause")


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
