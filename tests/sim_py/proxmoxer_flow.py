"""Drive proximity pve-sim with proxmoxer (a client no one here wrote).

Usage: proxmoxer_flow.py ticket|token  (env: SIM_HOST, SIM_PORT, SIM_PASSWORD, SIM_TOKEN, SIM_VMID)
Prints one line per step; exits non-zero on the first mismatch.
"""
import os
import sys

import urllib3
from proxmoxer import ProxmoxAPI
from proxmoxer.tools import Tasks

urllib3.disable_warnings()
mode = sys.argv[1]
host, port = os.environ["SIM_HOST"], int(os.environ["SIM_PORT"])
vmid = int(os.environ["SIM_VMID"])
if mode == "ticket":
    px = ProxmoxAPI(host, port=port, user="root@pam", password=os.environ["SIM_PASSWORD"], verify_ssl=False)
else:
    px = ProxmoxAPI(host, port=port, user="root@pam", token_name="proximity", token_value=os.environ["SIM_TOKEN"], verify_ssl=False)


def wait(upid):
    st = Tasks.blocking_status(px, upid, timeout=30, polling_interval=0.05)
    assert st is not None, f"task {upid} timed out"
    assert st["status"] == "stopped" and st["exitstatus"] == "OK", st
    return st


nodes = [n["node"] for n in px.nodes.get()]
print("nodes", " ".join(nodes))
assert "pve1" in nodes
node = px.nodes("pve1")
templates = sorted(t["template"] for t in node.aplinfo.get() if t["template"].startswith("alpine-"))
tpl = templates[-1]
have = [v["volid"] for v in node.storage("local").content.get(content="vztmpl")]
if f"local:vztmpl/{tpl}" not in have:
    wait(node.aplinfo.post(storage="local", template=tpl))
print("template", tpl)
nextid = px.cluster.nextid.get()
print("nextid", nextid)
upid = node.lxc.post(vmid=vmid, ostemplate=f"local:vztmpl/{tpl}", hostname=f"px-{mode}", rootfs="local-lvm:4",
                     memory=512, net0="name=eth0,bridge=vmbr0,ip=dhcp", unprivileged=1, features="nesting=1")
st = wait(upid)
print("created", st["type"], st["upid"])
ct = node.lxc(vmid)
wait(ct.status.start.post())
cur = ct.status.current.get()
print("status", cur["status"])
assert cur["status"] == "running", cur
cfg = ct.config.get()
assert cfg["hostname"] == f"px-{mode}", cfg
ct.config.put(memory=768, description="set by proxmoxer")
assert ct.config.get()["memory"] == 768
wait(ct.status.stop.post())
assert ct.status.current.get()["status"] == "stopped"
wait(ct.delete(purge=1))
assert all(int(c["vmid"]) != vmid for c in node.lxc.get())
print("deleted", vmid)
try:
    node.lxc(vmid).status.current.get()
    raise SystemExit("deleted CT still answers")
except Exception as e:  # proxmoxer raises ResourceException with the status line's reason
    print("gone", str(e).splitlines()[0])
print("OK", mode)
