#!/bin/bash
# How tests/data/iketcp/libreswan_*.pcap were made (root; see README.md beside this script).
# Two libreswan 4.10 plutos (Debian 12 libreswan_4.10-2+deb12u1_amd64.deb unpacked with dpkg-deb -x
# into $LSW, run in their own mount namespaces) in two network namespaces joined by a veth pair,
# IKEv2 PSK over TCP (RFC 9329); tcpdump on the initiator's side (west, 192.0.2.2).
# usage: LSW=<unpacked deb root> [WAIT=s] [TAIL=s] make_captures.sh OUTDIR MODE
#   MODE tcp:      enable-tcp=yes          responder listen-tcp=yes
#        fallback: enable-tcp=fallback     responder drops UDP 500/4500 (nftables)
#        refused:  enable-tcp=yes          responder rejects TCP 4500 with RST
#        dropped:  enable-tcp=yes          responder drops TCP 4500
# Without the kernel's espintcp (not on this machine) both sides need the impairment
# tcp-skip-setsockopt-espintcp; the initiator omits the child SA (omit-v2-ike-auth-child)
# because pluto cannot install ESP states here.  The capture is OUTDIR/capture.pcap.
set -u
OUT=$1; MODE=${2:-tcp}
LSW=${LSW:-/tmp/iketcp-lsw/root}
P=ikt$$
W=$OUT/work; rm -rf "$W"; mkdir -p "$W"
ip netns add $P-w; ip netns add $P-e
ip -n $P-w link add ew type veth peer name we netns $P-e
ip -n $P-w addr add 192.0.2.2/24 dev ew; ip -n $P-e addr add 198.51.100.2/24 dev we
for n in w e; do ip -n $P-$n link set lo up; ip netns exec $P-$n sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1; done
ip -n $P-w link set ew up; ip -n $P-e link set we up
ip -n $P-w route add 198.51.100.0/24 dev ew; ip -n $P-e route add 192.0.2.0/24 dev we
ip netns exec $P-w ethtool -K ew tx off rx off >/dev/null 2>&1
ip netns exec $P-e ethtool -K we tx off rx off >/dev/null 2>&1
if [ "$MODE" = fallback ]; then
  ip netns exec $P-e nft 'add table inet f; add chain inet f input { type filter hook input priority 0; }; add rule inet f input udp dport { 500, 4500 } drop'
fi
if [ "$MODE" = dropped ]; then
  ip netns exec $P-e nft 'add table inet f; add chain inet f input { type filter hook input priority 0; }; add rule inet f input tcp dport 4500 drop'
fi
if [ "$MODE" = refused ]; then
  ip netns exec $P-e nft 'add table inet f; add chain inet f input { type filter hook input priority 0; }; add rule inet f input tcp dport 4500 reject with tcp reset'
fi
mk() { # name me peer listen
  local d=$W/$1; mkdir -p $d/run $d/nss
  certutil -N -d sql:$d/nss --empty-password >/dev/null 2>&1
  cat > $d/ipsec.conf <<CONF
config setup
	dnssec-enable=no
	$4
conn t
	keyexchange=ike
	ikev2=yes
	left=$2
	right=$3
	leftid=@$1
	rightid=@$5
	authby=secret
	$6
	retransmit-timeout=12s
	keyingtries=2
	auto=add
CONF
  echo "@$1 @$5 : PSK \"lab-secret-123\"" > $d/ipsec.secrets
  echo "%any %any : PSK \"lab-secret-123\"" >> $d/ipsec.secrets
}
case $MODE in
  tcp) WT="enable-tcp=yes
	tcp-remoteport=4500";;
  fallback) WT="enable-tcp=fallback
	tcp-remoteport=4500";;
  dropped) WT="enable-tcp=yes
	tcp-remoteport=4500";;
  refused) WT="enable-tcp=yes
	tcp-remoteport=4500";;
esac
mk west 192.0.2.2 198.51.100.2 "" east "$WT"
mk east 198.51.100.2 192.0.2.2 "listen-tcp=yes" west ""
ip netns exec $P-w tcpdump -U -i ew -w $OUT/capture.pcap >/dev/null 2>&1 & TD=$!
sleep 1
start() {
  local d=$W/$1
  ip netns exec $P-$2 unshare -m --propagation private sh -c "mount -t tmpfs x /run && mkdir -p /run/pluto && mount --bind $LSW/usr/libexec /usr/libexec && exec $LSW/usr/libexec/ipsec/pluto --config $d/ipsec.conf --nofork --stderrlog --rundir $d/run --nssdir $d/nss --secretsfile $d/ipsec.secrets --ipsecdir $d " > $d/pluto.log 2>&1 &
  echo $!
}
PW=$(start west w); PE=$(start east e)
sleep 2
for x in "west w" "east e"; do set -- $x
  ip netns exec $P-$2 unshare -m --propagation private sh -c "mount --bind $LSW/usr/libexec /usr/libexec && $LSW/usr/libexec/ipsec/whack --ctlsocket $W/$1/run/pluto.ctl --impair tcp-skip-setsockopt-espintcp && $LSW/usr/libexec/ipsec/addconn --ctlsocket $W/$1/run/pluto.ctl --config $W/$1/ipsec.conf --autoall" >> $W/$1/whack.log 2>&1
done
ip netns exec $P-w unshare -m --propagation private sh -c "mount --bind $LSW/usr/libexec /usr/libexec && $LSW/usr/libexec/ipsec/whack --ctlsocket $W/west/run/pluto.ctl --impair omit-v2-ike-auth-child && timeout ${WAIT:-30} $LSW/usr/libexec/ipsec/whack --ctlsocket $W/west/run/pluto.ctl --name t --initiate" >> $W/west/whack.log 2>&1
sleep ${TAIL:-3}
# orderly end: the initiator deletes its connection (IKE Delete), then both daemons stop
ip netns exec $P-w unshare -m --propagation private sh -c "mount --bind $LSW/usr/libexec /usr/libexec && timeout 10 $LSW/usr/libexec/ipsec/whack --ctlsocket $W/west/run/pluto.ctl --name t --delete" >> $W/west/whack.log 2>&1
sleep 1
kill $PW $PE; sleep 1; kill -9 $PW $PE 2>/dev/null
kill $TD; wait $TD 2>/dev/null
ip netns del $P-w; ip netns del $P-e
echo done
