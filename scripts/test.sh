#!/usr/bin/env bash
# The project's test command (README: "Run the tests"). On a fresh machine it
# needs only Go, Node/npm and git: it installs the pinned CDK CLI into
# .cdk-cli/ (a dot folder, so `go ... ./...` never looks inside), then checks
# formatting, vets and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -f .cdk-cli/package-lock.json ]; then
  echo "==> installing the pinned CDK CLI into .cdk-cli/"
  npm ci --prefix .cdk-cli --no-audit --no-fund --loglevel=error
fi

echo "==> gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.*'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "==> go vet ./..."
go vet ./...

echo "==> go test ./..."
go test -count=1 -timeout 60m ./...
