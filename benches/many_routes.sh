#!/usr/bin/env bash
# benches/full-path.yaml with N routes, for instructions per request against the route
# count (the README's route table figures). Two routes are measured: `first`, whose
# prefix is the longest (tried first by a linear scan), and `last`, the shortest
# (tried last); the other N-2 share `/api/` with both and match neither request.
#
#   benches/many_routes.sh N > /tmp/routes-N.yaml
#   ../shared/bench/instructions.sh --header 'X-API-Key: bench-key-0123456789' \
#     'first=http://127.0.0.1:18010/api/first-sorted-route/x=target/release/floodgate -c /tmp/routes-N.yaml' \
#     'last=http://127.0.0.1:18010/api/x=target/release/floodgate -c /tmp/routes-N.yaml'
set -euo pipefail
n=${1:?usage: many_routes.sh N (at least 2)}
((n >= 2)) || { echo "many_routes.sh: N must be at least 2" >&2; exit 1; }
here=$(dirname "$0")
# full-path.yaml without its routes and comments.
sed -n '/^version:/,/^routes:/p' "$here/full-path.yaml"
echo "  - { name: first, path_prefix: /api/first-sorted-route/, upstream: origin }"
for ((i = 1; i <= n - 2; i++)); do
  printf '  - { name: s%05d, path_prefix: /api/s%05d/, upstream: origin }\n' "$i" "$i"
done
echo "  - { name: last, path_prefix: /api/, upstream: origin }"
