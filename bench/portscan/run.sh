#!/usr/bin/env bash
# Port-scanner benchmark: scanfleet synscan and portscan beside masscan, zmap,
# nmap -sS and nmap -sT, on the same targets, inside two private network
# namespaces made for this run (the pattern of /work/shared/bench/netns_bench.sh).
#
#   scanner ns  vs0 10.200.0.1/24  <== veth ==>  vt0 10.200.0.2/24  target ns
#                                                + 10.201.0.0/16 "AnyIP" (route local ... dev lo)
#
# The namespaces are named sfpb-s-<random>/sfpb-t-<random> so that parallel runs
# (and other benchmarks) do not collide; the veth ends are created inside them.
# Neither has a default route: nothing leaves them. Listeners exit by themselves.
#
# Suites (targets as the issue states them):
#   host    one host × ports 1-65535, 20 open      (goal: no slower than nmap -sS)
#   net80   10.201.0.0/16 × port 80, all open      (goal: no slower than zmap)
#   net20   10.201.0.0/16 × 20 ports, all open     (goal: half masscan's time)
#
# Usage (root):  ./run.sh [suite...]        default: host net80 net20
# Env: RATE (synscan probes/s, default 1000000), SENDERS (synscan sending threads,
#      default 0: the executor's default, one per CPU), BENCH_TIMEOUT (s per command,
#      default 180), OUT (results dir, default ./results), SKIP="nmap_sT ..." tools to skip.
# Needs: apt-get install -y masscan zmap nmap iproute2 ; python3 ; go
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
SUF="$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
NS_S="sfpb-s-$SUF"
NS_T="sfpb-t-$SUF"
IP_S=10.200.0.1
IP_T=10.200.0.2
ANY_NET=10.201.0.0/16
PORTS_OPEN="22,80,443,1433,3306,5432,6379,8080,8443,9000,9200,11211,15672,20000,27017,31337,40000,50000,60000,65535"
N_OPEN=20
RATE="${RATE:-1000000}"
SENDERS="${SENDERS:-0}"
OUT="${OUT:-$HERE/results}"
TMO="${BENCH_TIMEOUT:-180}"
PIDS=()

S() { ip netns exec "$NS_S" "$@"; }
T() { ip netns exec "$NS_T" "$@"; }
mac_of() { ip -n "$1" -o link show "$2" | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p'; }
now() { date +%s.%N; }

setup() {
  ip netns add "$NS_S"
  ip netns add "$NS_T"
  ip -n "$NS_S" link add vs0 type veth peer name vt0 netns "$NS_T"
  ip -n "$NS_S" addr add "$IP_S/24" dev vs0
  ip -n "$NS_T" addr add "$IP_T/24" dev vt0
  for ns in "$NS_S" "$NS_T"; do ip -n "$ns" link set lo up; done
  ip -n "$NS_S" link set vs0 up
  ip -n "$NS_T" link set vt0 up
  ip -n "$NS_T" route add local "$ANY_NET" dev lo
  ip -n "$NS_S" route add "$ANY_NET" via "$IP_T" dev vs0
  ip -n "$NS_S" neigh replace "$IP_T" lladdr "$(mac_of "$NS_T" vt0)" dev vs0 nud permanent
  ip -n "$NS_T" neigh replace "$IP_S" lladdr "$(mac_of "$NS_S" vs0)" dev vt0 nud permanent
  T sysctl -qw net.core.somaxconn=65535 net.ipv4.tcp_max_syn_backlog=65535 || true
  S sysctl -qw net.ipv4.ip_local_port_range="1024 65000" net.ipv4.tcp_tw_reuse=1 || true
  ip netns exec "$NS_S" python3 "$HERE/listener.py" --udp-sink 9999 --lifetime 1800 > "$OUT/sink.log" 2>&1 &
  PIDS+=($!)
  ip netns exec "$NS_T" python3 "$HERE/listener.py" --ports "$PORTS_OPEN" --lifetime 1800 \
      --wake "$IP_S:9999" > "$OUT/listener.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 50); do  # python starts slowly on a busy machine
    S timeout 2 bash -c "exec 3<>/dev/tcp/$IP_T/65535" 2>/dev/null && break
    sleep 0.2
  done
  S timeout 2 bash -c "exec 3<>/dev/tcp/$IP_T/80" && echo "veth ok: connected to $IP_T:80"
  S timeout 2 bash -c "exec 3<>/dev/tcp/10.201.3.7/443" && echo "AnyIP ok: connected to 10.201.3.7:443"
}

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  ip netns del "$NS_S" 2>/dev/null || true
  ip netns del "$NS_T" 2>/dev/null || true
}

# scanfleet runs through the bench program (bench/portscan/main.go), which calls
# the executors with scanner.LocalEnv, as `scanfleet scan --local` does.
# TODO(lead): once cli/worker.go registers synscan and portscan, time
#   scanfleet scan --local --syn -p PORTS --rate R TARGETS   and   scanfleet scan --local -p PORTS TARGETS
# here instead (built once with go build, never timed through go run).
build() {
  mkdir -p "$OUT"
  (cd "$ROOT" && go build -o "$OUT/scanfleet-bench" ./bench/portscan)
  SF=("$OUT/scanfleet-bench")
}

# bench SUITE TOOL EXPECTED PROBES FOUNDCMD -- CMD...   (CMD runs in the scanner ns)
bench() {
  local suite=$1 tool=$2 exp=$3 probes=$4 foundcmd=$5; shift 6
  if [[ " ${SKIP:-} " == *" $tool "* ]]; then return; fi
  local t0 t1 rc=0 tx0 tx1
  tx0=$(S cat /sys/class/net/vs0/statistics/tx_packets)
  t0=$(now)
  S timeout "$TMO" "$@" > "$OUT/$suite.$tool.log" 2>&1 || rc=$?
  t1=$(now)
  tx1=$(S cat /sys/class/net/vs0/statistics/tx_packets)
  local found; found=$(bash -c "$foundcmd" 2>/dev/null | head -1); found=${found:-0}
  echo "$suite $tool $t0 $t1 $found $exp $probes $rc $((tx1 - tx0))" >> "$OUT/raw.txt"
  printf '  %-10s %-9s wall=%7.2fs found=%s/%s rc=%s\n' "$suite" "$tool" "$(echo "$t1 - $t0" | bc)" "$found" "$exp" "$rc"
  sleep 1 # let the target's half-open connections drain between tools
}

cnt_lines() { echo "grep -c . $1"; }
cnt_masscan() { echo "grep -c '^open' $1"; }
cnt_gnmap() { echo "grep -o '[0-9]*/open/' $1 | wc -l"; }

masscan_args() {
  echo --adapter vs0 --adapter-ip "$IP_S" --adapter-mac "$(mac_of "$NS_S" vs0)" \
       --router-mac "$(mac_of "$NS_T" vt0)" --wait 2
}

suite_host() {
  local p=65535 e=$N_OPEN o="$OUT/host"
  bench host synscan $e $p "$(cnt_lines $o.synscan.txt)" -- \
    "${SF[@]}" -type synscan -ports 1-65535 -rate "$RATE" -senders "$SENDERS" -retries 1 -wait 1s -o $o.synscan.txt "$IP_T"
  bench host portscan $e $p "$(cnt_lines $o.portscan.txt)" -- \
    bash -c "ulimit -n 65536; exec ${SF[*]} -type portscan -ports 1-65535 -concurrency 4096 -o $o.portscan.txt $IP_T"
  bench host masscan $e $p "$(cnt_masscan $o.masscan.lst)" -- \
    masscan "$IP_T" -p1-65535 --rate 1000000 $(masscan_args) -oL $o.masscan.lst
  bench host nmap_sS $e $p "$(cnt_gnmap $o.nmap_sS.gnmap)" -- \
    nmap -sS -Pn -n -T4 -p- -oG $o.nmap_sS.gnmap "$IP_T"
  bench host nmap_sT $e $p "$(cnt_gnmap $o.nmap_sT.gnmap)" -- \
    nmap -sT -Pn -n -T4 -p- -oG $o.nmap_sT.gnmap "$IP_T"
  echo "  (zmap scans one port per run: not run on one host × 65535 ports)"
}

suite_net80() {
  local p=65536 e=65536 o="$OUT/net80"
  : > "$OUT/zmap_empty_blocklist.conf"   # zmap's default blocklist excludes 10/8
  bench net80 synscan $e $p "$(cnt_lines $o.synscan.txt)" -- \
    "${SF[@]}" -type synscan -ports 80 -rate "$RATE" -senders "$SENDERS" -retries 1 -wait 1s -o $o.synscan.txt "$ANY_NET"
  bench net80 portscan $e $p "$(cnt_lines $o.portscan.txt)" -- \
    bash -c "ulimit -n 65536; exec ${SF[*]} -type portscan -ports 80 -concurrency 4096 -o $o.portscan.txt $ANY_NET"
  bench net80 zmap $e $p "$(cnt_lines $o.zmap.csv)" -- \
    zmap -p 80 -i vs0 -S "$IP_S" -G "$(mac_of "$NS_T" vt0)" -r 300000 -c 2 -q \
         -b "$OUT/zmap_empty_blocklist.conf" -o $o.zmap.csv "$ANY_NET"
  bench net80 masscan $e $p "$(cnt_masscan $o.masscan.lst)" -- \
    masscan "$ANY_NET" -p80 --rate 300000 $(masscan_args) -oL $o.masscan.lst
  bench net80 nmap_sS $e $p "$(cnt_gnmap $o.nmap_sS.gnmap)" -- \
    nmap -sS -Pn -n -T5 --min-rate 100000 --max-retries 1 -p80 -oG $o.nmap_sS.gnmap "$ANY_NET"
  bench net80 nmap_sT $e $p "$(cnt_gnmap $o.nmap_sT.gnmap)" -- \
    nmap -sT -Pn -n -T5 --min-rate 20000 --max-retries 1 -p80 -oG $o.nmap_sT.gnmap "$ANY_NET"
}

suite_net20() {
  local p=$((65536 * N_OPEN)) e=$((65536 * N_OPEN)) o="$OUT/net20"
  bench net20 synscan $e $p "$(cnt_lines $o.synscan.txt)" -- \
    "${SF[@]}" -type synscan -ports "$PORTS_OPEN" -rate "$RATE" -senders "$SENDERS" -retries 1 -wait 1s -o $o.synscan.txt "$ANY_NET"
  bench net20 portscan $e $p "$(cnt_lines $o.portscan.txt)" -- \
    bash -c "ulimit -n 65536; exec ${SF[*]} -type portscan -ports $PORTS_OPEN -concurrency 4096 -o $o.portscan.txt $ANY_NET"
  bench net20 masscan $e $p "$(cnt_masscan $o.masscan.lst)" -- \
    masscan "$ANY_NET" -p"$PORTS_OPEN" --rate 300000 $(masscan_args) -oL $o.masscan.lst
  bench net20 nmap_sS $e $p "$(cnt_gnmap $o.nmap_sS.gnmap)" -- \
    nmap -sS -Pn -n -T5 --min-rate 100000 --max-retries 1 -p"$PORTS_OPEN" -oG $o.nmap_sS.gnmap "$ANY_NET"
  echo "  (nmap -sT: 1.3M connects, not run on /16 × 20 ports; zmap: one port per run, not run)"
}

# custom: run $CUSTOM (a bash command) in the scanner namespace, for profiling.
suite_custom() { S env NS_S="$NS_S" NS_T="$NS_T" SF="${SF[*]}" bash -c "$CUSTOM"; }

# One table: per suite and tool, wall time, probes/s (probes / wall), found /
# expected, and the ratios to scanfleet synscan (time: tool / synscan, so > 1
# means synscan is faster).
report() {
  python3 - "$OUT/raw.txt" <<'PY' | tee "$OUT/summary.txt"
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
ref = {}
for s, tool, t0, t1, found, exp, probes, rc, tx in rows:
    if tool == "synscan":
        ref[s] = float(t1) - float(t0)
print(f"{'suite':7s} {'tool':9s} {'wall s':>8s} {'probes/s':>10s} {'found/expected':>18s} {'tx pkts':>9s} {'time/synscan':>12s} {'rc':>3s}")
for s, tool, t0, t1, found, exp, probes, rc, tx in rows:
    wall = float(t1) - float(t0)
    pps = int(probes) / wall if wall > 0 else 0
    ratio = f"{wall / ref[s]:.2f}" if s in ref and ref[s] > 0 else "-"
    print(f"{s:7s} {tool:9s} {wall:8.2f} {pps:10.0f} {found + '/' + exp:>18s} {tx:>9s} {ratio:>12s} {rc:>3s}")
PY
}

main() {
  [[ $EUID -eq 0 ]] || { echo "run as root"; exit 2; }
  mkdir -p "$OUT"; : > "$OUT/raw.txt"
  trap cleanup EXIT
  build
  setup
  echo "=== $(date -u +%FT%TZ) $(uname -r) nproc=$(nproc) rate=$RATE senders=$SENDERS namespaces $NS_S $NS_T"
  local suites=("$@")
  [[ ${#suites[@]} -gt 0 ]] || suites=(host net80 net20)
  for s in "${suites[@]}"; do "suite_$s"; done
  report
}

main "$@"
