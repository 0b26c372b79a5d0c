#!/usr/bin/env bash
# The project's test command (README: "Run the tests"). On a fresh machine it
# needs only Go, Node/npm and git: it installs the pinned CDK CLI into
# .cdk-cli/ (a dot folder, so `go ... ./...` never looks inside), together
# with the CDK integ-tests constructs the integration test case uses, then
# checks formatting, vets and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
# Quiet and offline: no CLI telemetry or notices, no Node end-of-life banner
# from jsii on every synth.
export CDK_DISABLE_CLI_TELEMETRY=1 JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20
# Nothing here needs AWS: never probe the EC2 instance metadata service for
# credentials.
export AWS_EC2_METADATA_DISABLED=true

echo "==> installing the pinned CDK CLI into .cdk-cli/"
npm ci --prefix .cdk-cli --no-audit --no-fund --loglevel=error

echo "==> gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.*'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "==> go vet ./..."
go vet ./...

echo "==> go test ./..."
go test -count=1 -timeout 60m ./...

# The emulator's stricter readings of the real service, switched on for every
# emulator the tests start: a new identity or role binding reaches the STS only
# after a delay, and exchange responses carry no expiry (the token's own exp
# is the truth). The local run (./localrun) already runs with a delay of its own.
echo "==> go test ./chainguard/... ./lambda/... (propagation delay, no expiry in exchange responses)"
CHAINGUARD_EMULATOR_PROPAGATION_DELAY=300ms CHAINGUARD_EMULATOR_OMIT_EXPIRY=true \
  go test -count=1 -timeout 30m ./chainguard/... ./lambda/...

echo "==> cdk synth (pinned CLI, offline, example context)"
out=$(mktemp -d)
log=$(mktemp)
trap 'rm -rf "$out" "$log"' EXIT
.cdk-cli/node_modules/.bin/cdk synth --quiet --output "$out" \
  -c group=0123456789abcdef0123456789abcdef01234567 \
  -c provisionerIdentity=0123456789abcdef0123456789abcdef01234567/0123456789abcdef \
  2>&1 | tee "$log"
ls "$out"/*.template.json
# cdk.json carries the recommended feature flags of the pinned CDK version
# (stacks/featureflags_test.go checks the list); the CLI must not find any
# unconfigured ("N feature flags are not configured. Run 'cdk flags ...'").
if grep -Eiq "feature flags? (are|is) not configured|cdk flags" "$log"; then
  echo "cdk synth printed a feature-flag notice: add the flags to cdk.json's context with their recommended values"
  exit 1
fi
