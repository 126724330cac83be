#!/usr/bin/env bash
# Re-vendor the GraphiQL browser bundles into hms/http/static/vendor/ and rewrite SHA256SUMS.
#
# The page at GET /graphql loads only these committed files (no CDN), so it works offline and
# under a 'self'-only CSP, and `pip install` needs no npm. Run this only to change a pinned
# version: it needs npm (with whatever registry npm is configured for), packs each package with
# `npm pack`, checks the tarball against the integrity pinned below, and copies out only the
# files the page loads plus the licence. tests/api/test_graphiql.py checks SHA256SUMS, so a
# hand-edited vendored file fails CI.
#
# Layout: vendor/<name>@<version>/<path inside the npm package>, so a URL names its version
# and the assets can be cached forever.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/hms/http/static/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# sha512 of each tarball (npm's "integrity"); a changed tarball for the same version fails here.
declare -A integrity=(
  [graphiql@4.1.2]="sha512-rNlzQIAzm6i2KBXmVQWBgLvt0TloxFVB2d18bukvdsvjEuFDHsKx5IVOomL1W1o5WW+tE54+ioHb2AEKzO2cUg=="
  [@graphiql/plugin-explorer@4.0.6]="sha512-TppIi92YPER3v70nlF01KTQrq9AiYqkZicSd1hpU7aqGmbqw/pLwBNLUEcfENBoJtw574Qxjswb01+GaYK0Tzw=="
  [graphiql-explorer@0.9.0]="sha512-fZC/wsuatqiQDO2otchxriFO0LaWIo/ovF/CQJ1yOudmY0P7pzDiP+l9CEHUiWbizk3e99x6DQG4XG1VxA+d6A=="
  [react@18.3.1]="sha512-wS+hAgJShR0KhEvPJArfuPVN1+Hz1t0Y6n5jLrGQbkb4urgPE/0Rve+1kMB1v/oWgHgm4WIcV+i7F2pTVj+2iQ=="
  [react-dom@18.3.1]="sha512-5m4nQKp+rZRb09LNH59GM4BxTh9251/ylbKIbpe7TpGxfJ+9kv6BLkLBXIjjspbgbnIBNqlI23tRnTWT0snUIw=="
)

# unpack SPEC: npm pack SPEC, verify it, extract into $work/SPEC/package/.
unpack() {
  local spec=$1 dir="$work/$1" tarball actual
  mkdir -p "$dir"
  tarball="$dir/$(npm pack --silent --pack-destination "$dir" "$spec" | tail -n 1)"
  actual="sha512-$(node -e 'const c = require("crypto"), fs = require("fs");
    process.stdout.write(c.createHash("sha512").update(fs.readFileSync(process.argv[1])).digest("base64"))' "$tarball")"
  if [[ "$actual" != "${integrity[$spec]}" ]]; then
    echo "integrity mismatch for $spec: got $actual, pinned ${integrity[$spec]}" >&2
    exit 1
  fi
  tar -xzf "$tarball" -C "$dir"
}

# take SPEC FILE [TO]: copy package/FILE of SPEC to vendor/TO (TO defaults to SPEC/FILE).
take() {
  local spec=$1 file=$2 to=${3:-$1/$2}
  install -D -m 0644 "$work/$spec/package/$file" "$dest/$to"
}

for spec in "${!integrity[@]}"; do unpack "$spec"; done

rm -rf "$dest"
take graphiql@4.1.2 graphiql.min.js
take graphiql@4.1.2 graphiql.min.css
take graphiql@4.1.2 LICENSE
take @graphiql/plugin-explorer@4.0.6 dist/index.umd.js
take @graphiql/plugin-explorer@4.0.6 dist/style.css
# The plugin's tarball ships no LICENSE; it is MIT (package.json) from the same graphql/graphiql
# repository as graphiql, whose LICENSE is that repository's. Its UMD build also bundles
# graphiql-explorer, so that package's licence goes alongside.
take graphiql@4.1.2 LICENSE @graphiql/plugin-explorer@4.0.6/LICENSE
take graphiql-explorer@0.9.0 LICENSE @graphiql/plugin-explorer@4.0.6/LICENSE.graphiql-explorer
take react@18.3.1 umd/react.production.min.js
take react@18.3.1 LICENSE
take react-dom@18.3.1 umd/react-dom.production.min.js
take react-dom@18.3.1 LICENSE

cd "$dest"
find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum >SHA256SUMS
echo "vendored into ${dest#"$root"/}:"
cat SHA256SUMS
