// Package bench holds the functions' benchmark (issue 3 §5), side by side
// with a hello-world aws-lambda-go bootstrap built the same way
// (testdata/hello): arm64 binary size, cold init as the RIE's
// `INIT REPORT durationMs` (host architecture), and warm invoke latency p50 /
// p99 over 200 invocations against the in-process Chainguard emulator.
//
//	go test -run '^$' -bench . -benchtime 1x ./lambda/bench
//
// It prints the figures and a table of the targets, each MET or MISSED: init
// at most 3x the hello-world's, warm p50 at most the hello-world's plus the
// emulator RPC time (a ListRepos measured in-process) plus 2 ms, arm64 binary
// at most 20 MiB. A missed target does not fail the run: timings vary with
// the machine's load, and a benchmark reports figures while tests assert
// behaviour. The figures are also reported as benchmark metrics
// (repos-init-ms, ...) for benchstat.
package bench
