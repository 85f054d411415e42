#!/usr/bin/env bash
# Checks the deployment files in deploy/ (CI runs it):
#   - `systemd-analyze verify` on the systemd units (it prints what it finds wrong in a unit but
#     still exits 0, so any line naming one of them fails the check); the binary is pointed at
#     a stand-in, as refrain is not installed on the checking machine;
#   - the compose file parses as YAML and has the services and volumes docs/deploy.md
#     describes (and `docker compose config` accepts it, where docker compose exists);
#   - .dockerignore leaves out everything .gitignore does (build outputs, fetched tools, virtual
#     environments, bundles), so the container build's context holds only the sources.
# Without systemd-analyze it installs systemd in CI (CI set) and fails when that does not give
# it; elsewhere it skips the units with a message.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v systemd-analyze >/dev/null && [ -n "${CI:-}" ]; then
  SUDO=()
  [ "$(id -u)" = 0 ] || SUDO=(sudo)
  "${SUDO[@]}" apt-get update -q >&2 || true
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -q --no-install-recommends systemd >&2 \
    || echo "check-deploy: could not install systemd" >&2
  if ! command -v systemd-analyze >/dev/null; then
    echo "check-deploy: FAIL: no systemd-analyze in CI, so the systemd units cannot be verified;" \
      "install the Debian package systemd (apt-get install systemd) on the CI machine" >&2
    exit 1
  fi
fi
if command -v systemd-analyze >/dev/null; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  printf '#!/bin/sh\nexit 0\n' > "$tmp/refrain"
  chmod +x "$tmp/refrain"
  for unit in deploy/systemd/*.service; do
    sed "s#/usr/local/bin/refrain#$tmp/refrain#g" "$unit" > "$tmp/$(basename "$unit")"
  done
  # Only the units' own findings count (the host may have broken units of its own).
  out="$(cd "$tmp" && SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no \
    ./refrain.service ./refrain-node@.service 2>&1)" || { echo "$out" >&2; exit 1; }
  if echo "$out" | grep -E 'refrain(-node@)?\.service' >&2; then
    echo "check-deploy: systemd-analyze verify complained about the units above" >&2
    exit 1
  fi
  echo "check-deploy: systemd units verified" >&2
else
  echo "check-deploy: skipped the systemd units (no systemd-analyze here; install the package" \
    "systemd to check them, CI fails without it)" >&2
fi

python=python3
[ -x .venv-ci/bin/python ] && python=.venv-ci/bin/python
"$python" - deploy/compose.yaml <<'PY'
import sys
import yaml

with open(sys.argv[1]) as f:
    doc = yaml.safe_load(f)
services = doc["services"]
for name in ("nats", "orchestrator", "node-gpu0"):
    assert name in services, f"compose: service {name} missing"
nats = services["nats"]
assert "-js" in nats["command"], "compose: nats-server without JetStream"
assert any(v.endswith(":/data") for v in nats["volumes"]), "compose: JetStream store not on a volume"
assert "nats-data" in doc["volumes"] and "refrain-data" in doc["volumes"], "compose: volumes missing"
for name, svc in services.items():
    if name.startswith("node-"):
        devices = svc["deploy"]["resources"]["reservations"]["devices"]
        assert devices and devices[0]["capabilities"] == ["gpu"], f"compose: {name} has no GPU"
        assert "node" in svc["command"], f"compose: {name} does not run `refrain node`"
print("check-deploy: compose file parses, services and volumes present", file=sys.stderr)
PY
# .dockerignore against .gitignore: every pattern .gitignore has, .dockerignore has too (written
# from the context root: a .gitignore pattern without an inner slash matches at any depth, `**/`).
"$python" - .gitignore .dockerignore <<'PY'
import sys

def patterns(path, git):
    out = set()
    for line in open(path):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        line = line.lstrip("!")
        anchored = "/" in line.rstrip("/")
        line = line.strip("/")
        if git and not anchored:
            line = "**/" + line
        out.add(("!" if neg else "") + line)
    return out

missing = sorted(patterns(sys.argv[1], True) - patterns(sys.argv[2], False))
if missing:
    sys.exit(f"check-deploy: .dockerignore lacks what .gitignore leaves out: {' '.join(missing)}"
             " (add them to .dockerignore, written from the context root)")
print("check-deploy: .dockerignore leaves out everything .gitignore does", file=sys.stderr)
PY

if docker compose version >/dev/null 2>&1; then
  docker compose -f deploy/compose.yaml config -q
  echo "check-deploy: docker compose config accepts it" >&2
fi
