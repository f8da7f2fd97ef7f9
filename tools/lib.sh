# Shell helpers shared by tools/interop/*.sh and tools/bench/*.sh. Source it after
# changing to the repository root:  . tools/lib.sh

# free_port ADDR...: a port free for both TCP and UDP on every ADDR (all servers of a
# discovery tree listen on one port).
free_port() {
  python3 - "$@" <<'PY'
import socket, sys
addrs = sys.argv[1:] or ["127.0.0.1"]
for _ in range(100):
    t = socket.socket(); t.bind((addrs[0], 0)); p = t.getsockname()[1]; t.close()
    socks = []
    try:
        for a in addrs:
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                s = socket.socket(socket.AF_INET, kind); socks.append(s); s.bind((a, p))
    except OSError:
        continue
    finally:
        for s in socks: s.close()
    print(p); break
else:
    sys.exit("no free port")
PY
}

# The demo tree as `mimi demo` runs it (src/cli/demo.rs): zone file, origin, address.
TREE=(
  "root.zone mimi.arpa. 127.53.0.1"
  "e164.zone e164.mimi.arpa. 127.53.0.2"
  "1.e164.zone 1.e164.mimi.arpa. 127.53.0.3"
  "5.5.5.1.e164.zone 5.5.5.1.e164.mimi.arpa. 127.53.0.4"
  "5.5.5.1.e164.zone 5.5.5.1.e164.mimi.arpa. 127.53.0.14"
  "4.4.e164.zone 4.4.e164.mimi.arpa. 127.53.0.5"
  "email.zone email.mimi.arpa. 127.53.0.6"
  "example.com.email.zone example.com.email.mimi.arpa. 127.53.0.7"
)
# The addresses of every DP of the demo tree.
ALL_DP=()
for t in "${TREE[@]}"; do read -r _ _ a <<<"$t"; ALL_DP+=("$a"); done
