#!/usr/bin/env bash
# The namespace lab: the whole product's network topology on one machine (root).
#
#   inet   (203.0.113.10: fake internet HTTP host + test DNS resolver for *.example.test)
#     │ 203.0.113.0/24
#   pve    (the Proxmox node: router 192.168.77.1 for the WAN, runs `proximity pve-sim --runtime netns`,
#     │     bridges vmbr0 (WAN) and proximity-lan (LAN); its API :8006 is the management host)
#     ├── vmbr0 ── appliance eth0 192.168.77.2/24 ── client 192.168.77.50/24
#     └── proximity-lan ── appliance eth1 (10.20.0.1/24 set by the daemon) ── app CTs (netns runtime)
#
# usage: tests/lab/lab.sh up ID | down ID | env ID
#   ID: a short unique suffix (e.g. the test PID); namespaces are lab-<role>-ID.
#   `up` only builds the topology and the fake internet; the test starts pve-sim and the daemon.
set -euo pipefail
cmd=${1:?usage: lab.sh up|down|env ID}
id=${2:?usage: lab.sh up|down|env ID}
NS_INET=lab-inet-$id NS_PVE=lab-pve-$id NS_APP=lab-app-$id NS_CLI=lab-cli-$id
# interface names must stay within 15 characters
short=$(printf '%s' "$id" | tail -c 6)

env_out() {
  cat <<ENV
NS_INET=$NS_INET
NS_PVE=$NS_PVE
NS_APP=$NS_APP
NS_CLI=$NS_CLI
INET_IP=203.0.113.10
PVE_WAN_IP=192.168.77.1
APPLIANCE_WAN_IP=192.168.77.2
CLIENT_IP=192.168.77.50
LAN_BRIDGE=proximity-lan
ENV
}

down() {
  for ns in $NS_INET $NS_PVE $NS_APP $NS_CLI; do
    if ip netns pids "$ns" >/dev/null 2>&1; then
      for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
      sleep 0.2
      for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    fi
    ip netns del "$ns" 2>/dev/null || true
  done
}

up() {
  down
  for ns in $NS_INET $NS_PVE $NS_APP $NS_CLI; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
  # pve: bridges
  ip -n $NS_PVE link add vmbr0 type bridge
  ip -n $NS_PVE link add proximity-lan type bridge
  ip -n $NS_PVE addr add 192.168.77.1/24 dev vmbr0
  ip -n $NS_PVE link set vmbr0 up
  ip -n $NS_PVE link set proximity-lan up
  ip netns exec $NS_PVE sysctl -qw net.ipv4.ip_forward=1
  # inet <-> pve
  ip link add li$short type veth peer name lp$short
  ip link set li$short netns $NS_INET name eth0
  ip link set lp$short netns $NS_PVE name inet0
  ip -n $NS_INET addr add 203.0.113.10/24 dev eth0
  ip -n $NS_INET link set eth0 up
  ip -n $NS_PVE addr add 203.0.113.1/24 dev inet0
  ip -n $NS_PVE link set inet0 up
  ip -n $NS_INET route add default via 203.0.113.1
  # appliance eth0 on vmbr0, eth1 on proximity-lan
  ip link add la$short type veth peer name lw$short
  ip link set la$short netns $NS_APP name eth0
  ip link set lw$short netns $NS_PVE
  ip -n $NS_PVE link set lw$short master vmbr0 up
  ip -n $NS_APP addr add 192.168.77.2/24 dev eth0
  ip -n $NS_APP link set eth0 up
  ip -n $NS_APP route add default via 192.168.77.1
  ip link add ll$short type veth peer name lb$short
  ip link set ll$short netns $NS_APP name eth1
  ip link set lb$short netns $NS_PVE
  ip -n $NS_PVE link set lb$short master proximity-lan up
  ip -n $NS_APP link set eth1 up
  ip netns exec $NS_APP sysctl -qw net.ipv4.ip_forward=1
  # client on vmbr0
  ip link add lc$short type veth peer name lx$short
  ip link set lc$short netns $NS_CLI name eth0
  ip link set lx$short netns $NS_PVE
  ip -n $NS_PVE link set lx$short master vmbr0 up
  ip -n $NS_CLI addr add 192.168.77.50/24 dev eth0
  ip -n $NS_CLI link set eth0 up
  ip -n $NS_CLI route add default via 192.168.77.1
  # the fake internet: an HTTP server and a resolver for *.example.test
  mkdir -p /tmp/lab-$id/www
  echo "hello from the internet" > /tmp/lab-$id/www/index.html
  ip netns exec $NS_INET busybox httpd -p 203.0.113.10:80 -h /tmp/lab-$id/www
  ip netns exec $NS_INET dnsmasq --port=53 --listen-address=203.0.113.10 --bind-interfaces --no-resolv --no-hosts \
     --address=/example.test/203.0.113.10 --pid-file=/tmp/lab-$id/dnsmasq.pid --log-facility=/tmp/lab-$id/dnsmasq.log
}

case "$cmd" in
  up) up; env_out ;;
  down) down; rm -rf /tmp/lab-$id ;;
  env) env_out ;;
  *) echo "usage: lab.sh up|down|env ID" >&2; exit 2 ;;
esac
