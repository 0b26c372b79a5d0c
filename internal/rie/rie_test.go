package rie_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/assumable-identity/cdk-chainguard/internal/lambdabuild"
	"github.com/assumable-identity/cdk-chainguard/internal/rie"
)

// built holds the paths TestMain produced: the test function and the RIE.
type built struct{ bootstrap, rie string }

var bin built

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rie-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer func() { _ = os.RemoveAll(dir) }()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		bs, err := lambdabuild.Build(ctx, lambdabuild.Options{Package: "./internal/rie/testdata/fn", OutDir: dir})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		r, err := rie.Binary(ctx, "")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		bin = built{bootstrap: bs, rie: r}
		return m.Run()
	}()
	os.Exit(code)
}

func start(t *testing.T, opts rie.Options) *rie.Emulator {
	t.Helper()
	if opts.Bootstrap == "" {
		opts.Bootstrap = bin.bootstrap
	}
	opts.RIE = bin.rie
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	e, err := rie.Start(ctx, opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		e.Stop()
		if t.Failed() {
			t.Logf("emulator output:\n%s", e.Logs())
		}
	})
	return e
}

func payload(action, value string) []byte {
	b, _ := json.Marshal(map[string]string{"action": action, "value": value})
	return b
}

func TestInvoke(t *testing.T) {
	tests := []struct {
		name     string
		action   string
		value    string
		want     string // exact body when no error
		wantErr  bool
		wantType string // FunctionError.Type, or "" for an *InvokeError
	}{
		{name: "result", action: "echo", value: "hi", want: `{"value":"hi"}`},
		{name: "handler error", action: "error", wantErr: true, wantType: "errorString"},
		{name: "timeout", action: "sleep", value: "3s", wantErr: true, wantType: "TimedOut"},
		{name: "panic", action: "panic", wantErr: true},
		{name: "exit", action: "exit", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := start(t, rie.Options{Timeout: time.Second})
			ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
			defer cancel()
			body, err := e.Invoke(ctx, payload(tt.action, tt.value))
			if (err != nil) != tt.wantErr {
				t.Fatalf("Invoke error = %v, wantErr %v (body %q)", err, tt.wantErr, body)
			}
			if !tt.wantErr {
				if string(body) != tt.want {
					t.Fatalf("body = %s, want %s", body, tt.want)
				}
				return
			}
			var fe *rie.FunctionError
			var ie *rie.InvokeError
			switch {
			case tt.wantType != "":
				if !errors.As(err, &fe) || fe.Type != tt.wantType {
					t.Fatalf("error = %#v, want a FunctionError of type %s", err, tt.wantType)
				}
			case !errors.As(err, &ie) || ie.Status == 200:
				t.Fatalf("error = %#v, want an InvokeError with a non-200 status", err)
			}
		})
	}
}

func TestInvokesNeverOverlap(t *testing.T) {
	e := start(t, rie.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	// The RIE panics on overlapping invokes; every one of these succeeds
	// only if Invoke serialises them.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			body, err := e.Invoke(ctx, payload("sleep", "20ms"))
			if err != nil {
				errs <- fmt.Errorf("invoke %d: %w", i, err)
				return
			}
			if string(body) != `{"slept":"20ms"}` {
				errs <- fmt.Errorf("invoke %d: body %s", i, body)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestAbandonedInvokeKeepsTheInstanceReserved(t *testing.T) {
	e := start(t, rie.Options{Timeout: 5 * time.Second})
	short, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := e.Invoke(short, payload("sleep", "700ms")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("abandoned invoke: error = %v, want context.DeadlineExceeded", err)
	}
	ctx, cancel2 := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel2()
	start := time.Now()
	body, err := e.Invoke(ctx, payload("echo", "after"))
	if err != nil {
		t.Fatalf("next invoke: %v", err)
	}
	if string(body) != `{"value":"after"}` {
		t.Fatalf("next invoke body = %s", body)
	}
	if waited := time.Since(start); waited < 400*time.Millisecond {
		t.Fatalf("next invoke ran after %s: it did not wait for the abandoned one", waited)
	}
}

func TestEnvironment(t *testing.T) {
	t.Setenv("RIE_TEST_LEAK", "from-the-test-process")
	e := start(t, rie.Options{
		FunctionName: "my-fn",
		Env:          []string{"AWS_REGION=eu-west-1", "CUSTOM=yes"},
	})
	tests := []struct {
		name, want string
	}{
		{name: "RIE_TEST_LEAK", want: ""},
		{name: "AWS_REGION", want: "eu-west-1"},
		{name: "CUSTOM", want: "yes"},
		{name: "AWS_LAMBDA_FUNCTION_NAME", want: "my-fn"},
		{name: "AWS_EC2_METADATA_DISABLED", want: "true"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, err := e.Invoke(t.Context(), payload("env", tt.name))
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]string
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatal(err)
			}
			if got["value"] != tt.want {
				t.Fatalf("%s = %q, want %q", tt.name, got["value"], tt.want)
			}
		})
	}
}

func TestLogsAndInitDuration(t *testing.T) {
	e := start(t, rie.Options{})
	if _, ok := e.InitDuration(); ok {
		t.Fatal("InitDuration reported before the first invoke")
	}
	if _, err := e.Invoke(t.Context(), payload("echo", "marker-1234")); err != nil {
		t.Fatal(err)
	}
	d, ok := e.InitDuration()
	if !ok || d <= 0 || d > 5*time.Second {
		t.Fatalf("InitDuration = %s, %v; want a positive duration from INIT REPORT", d, ok)
	}
	if !strings.Contains(e.Logs(), "echo marker-1234") {
		t.Fatalf("function output missing from Logs():\n%s", e.Logs())
	}
}

func TestStopEndsTheProcessGroup(t *testing.T) {
	e := start(t, rie.Options{})
	if _, err := e.Invoke(t.Context(), payload("echo", "x")); err != nil {
		t.Fatal(err)
	}
	pgid := e.PID() // the RIE leads its own process group
	e.Stop()
	e.Stop() // idempotent
	if err := syscall.Kill(-pgid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("process group %d after Stop: kill(0) = %v, want ESRCH", pgid, err)
	}
	if _, err := e.Invoke(t.Context(), payload("echo", "x")); err == nil {
		t.Fatal("Invoke after Stop succeeded")
	}
}

func TestStartErrors(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "bootstrap")
	if err := os.WriteFile(notExec, []byte("not a program"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		opts    rie.Options
		wantErr string
	}{
		{name: "no bootstrap", opts: rie.Options{}, wantErr: "Bootstrap is empty"},
		{name: "missing bootstrap", opts: rie.Options{Bootstrap: filepath.Join(dir, "nope")}, wantErr: "is not a file"},
		{name: "missing RIE", opts: rie.Options{Bootstrap: notExec, RIE: filepath.Join(dir, "no-rie")}, wantErr: "start"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := rie.Start(t.Context(), tt.opts)
			if err == nil {
				e.Stop()
				t.Fatal("Start succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}
