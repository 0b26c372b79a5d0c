package stacks

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/jsii-runtime-go"
)

// identitiesEnv tells TestSynthProcessHelper how many identities to build.
const identitiesEnv = "STACKS_BENCH_IDENTITIES"

// BenchmarkSynth measures, in one run, what a user waits for: a fresh
// process (jsii start included, as in `cdk synth`) that builds a stack with 1
// or with 50 identities (each for its own role) and synthesizes it. It
// reports both times and their ratio (target <= 1.5). Bundling is skipped: it
// is not under test. Run:
//
//	go test -run '^$' -bench 'BenchmarkSynth$' -benchtime 3x ./stacks
func BenchmarkSynth(b *testing.B) {
	var one, fifty time.Duration
	for b.Loop() {
		one += synthProcess(b, 1)
		fifty += synthProcess(b, 50)
	}
	b.ReportMetric(float64(one.Milliseconds())/float64(b.N), "ms/synth-1")
	b.ReportMetric(float64(fifty.Milliseconds())/float64(b.N), "ms/synth-50")
	b.ReportMetric(float64(fifty)/float64(one), "ratio-50/1")
}

// BenchmarkSynthInProcess measures the marginal cost inside a warm process
// (jsii already started): building and synthesizing a stack with n
// identities.
func BenchmarkSynthInProcess(b *testing.B) {
	for _, n := range []int{1, 50} {
		b.Run(fmt.Sprintf("identities=%d", n), func(b *testing.B) {
			synthIdentities(b, n) // warm-up, untimed: jsii's first calls of each kind are slow
			for b.Loop() {
				synthIdentities(b, n)
			}
		})
	}
}

// synthProcess runs TestSynthProcessHelper in a new process and returns its
// wall time.
func synthProcess(b *testing.B, n int) time.Duration {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSynthProcessHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), identitiesEnv+"="+strconv.Itoa(n))
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("synth process with %d identities: %v\n%s", n, err, out)
	}
	return time.Since(start)
}

// TestSynthProcessHelper is the process BenchmarkSynth starts; it does
// nothing in a normal test run.
func TestSynthProcessHelper(t *testing.T) {
	n, err := strconv.Atoi(os.Getenv(identitiesEnv))
	if err != nil {
		t.Skip("helper process of BenchmarkSynth")
	}
	synthIdentities(t, n)
}

// synthIdentities builds and synthesizes a stack with n identities.
func synthIdentities(tb testing.TB, n int) {
	tb.Helper()
	app := newTestApp(tb, false, nil)
	stack := awscdk.NewStack(app, jsii.String("Bench"), nil)
	for i := range n {
		role := awsiam.NewRole(stack, jsii.String(fmt.Sprintf("Role%d", i)), &awsiam.RoleProps{
			AssumedBy: awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil),
		})
		var settings *ProvisionerSettings
		if i == 0 {
			settings = testSettings()
		}
		NewAssumableIdentity(stack, fmt.Sprintf("Identity%d", i), &AssumableIdentityProps{
			Role: role, Group: testGroup, Name: fmt.Sprintf("identity-%d", i),
			Trust: ExactSession(fmt.Sprintf("function-%d", i)), Provisioner: settings,
		})
	}
	if err := Synth(app); err != nil {
		tb.Fatal(err)
	}
}

// checkEnv tells TestSynthCheckProcessHelper whether to add the trust check.
const checkEnv = "STACKS_BENCH_TRUST_CHECK"

// BenchmarkSynthTrustCheck measures what the deploy-time trust check adds to
// `cdk synth`: a fresh process (jsii start included) that builds the
// reference function's stack (role, function, identity configured on the
// function) without and with AssumableIdentityProps.Check, and
// synthesizes it. It reports both times and their ratio. Run:
//
//	go test -run '^$' -bench 'BenchmarkSynthTrustCheck$' -benchtime 5x ./stacks
func BenchmarkSynthTrustCheck(b *testing.B) {
	var without, with time.Duration
	for b.Loop() {
		without += synthCheckProcess(b, false)
		with += synthCheckProcess(b, true)
	}
	b.ReportMetric(float64(without.Milliseconds())/float64(b.N), "ms/synth-without")
	b.ReportMetric(float64(with.Milliseconds())/float64(b.N), "ms/synth-with")
	b.ReportMetric(float64(with)/float64(without), "ratio-with/without")
}

// BenchmarkSynthTrustCheckInProcess is the same comparison in one warm
// process (jsii already started): building and synthesizing the checked
// stack with and without the check, alternating so that load weighs on
// both alike.
func BenchmarkSynthTrustCheckInProcess(b *testing.B) {
	synth := func(check bool) time.Duration {
		start := time.Now()
		stack, _, _ := checkedStack(b, check, ExactSession("my-function"), nil, testSettings())
		templateOf(b, stack)
		return time.Since(start)
	}
	synth(false) // warm-up, untimed: jsii's first calls of each kind are slow
	synth(true)
	var without, with time.Duration
	for b.Loop() {
		without += synth(false)
		with += synth(true)
	}
	b.ReportMetric(float64(without.Microseconds())/1000/float64(b.N), "ms/synth-without")
	b.ReportMetric(float64(with.Microseconds())/1000/float64(b.N), "ms/synth-with")
	b.ReportMetric(float64(with)/float64(without), "ratio-with/without")
}

func synthCheckProcess(b *testing.B, check bool) time.Duration {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSynthCheckProcessHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), checkEnv+"="+strconv.FormatBool(check))
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("synth process (check %v): %v\n%s", check, err, out)
	}
	return time.Since(start)
}

// TestSynthCheckProcessHelper is the process BenchmarkSynthTrustCheck
// starts; it does nothing in a normal test run.
func TestSynthCheckProcessHelper(t *testing.T) {
	check, err := strconv.ParseBool(os.Getenv(checkEnv))
	if err != nil {
		t.Skip("helper process of BenchmarkSynthTrustCheck")
	}
	stack, _, _ := checkedStack(t, check, ExactSession("my-function"), nil, testSettings())
	templateOf(t, stack)
}
