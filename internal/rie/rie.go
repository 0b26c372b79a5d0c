// Package rie runs a Lambda `bootstrap` under the AWS Lambda Runtime
// Interface Emulator (RIE), the way tests, benchmarks and the local
// end-to-end run exercise the real function binaries.
//
// The RIE is the pinned Go tool dependency
// github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie
// (see go.mod); Binary builds it with the normal Go commands (`go tool -n`,
// cached in the Go build cache). Each Emulator listens on its own free
// 127.0.0.1 ports (both the invoke address and the runtime API address, whose
// default 9001 would collide between instances), runs in its own process
// group so Stop also ends the function, and captures everything the RIE and
// the function write.
//
// The function does not inherit the caller's environment: it gets a small,
// hermetic one (PATH, a private HOME, a region, the Lambda variables, the
// instance metadata service disabled) plus Options.Env. The RIE initialises
// the function lazily, on the first Invoke.
package rie

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/assumable-identity/cdk-chainguard/internal/syncbuf"
)

// ToolPackage is the RIE's main package, a `tool` in go.mod.
const ToolPackage = "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie"

// invokePath is the RIE's invoke endpoint.
const invokePath = "/2015-03-31/functions/function/invocations"

// Options configure one emulator instance.
type Options struct {
	// Bootstrap is the path of the function binary. Required.
	Bootstrap string
	// RIE is the path of the aws-lambda-rie binary; empty means Binary(ctx, "").
	RIE string
	// Env holds extra "KEY=value" entries for the function; they override the
	// defaults (for example AWS_REGION).
	Env []string
	// FunctionName becomes AWS_LAMBDA_FUNCTION_NAME; default "function".
	FunctionName string
	// Timeout is the function timeout, rounded up to whole seconds (the RIE
	// takes an integer); default 10s.
	Timeout time.Duration
	// Logs, if set, also receives everything the RIE and the function write
	// (for example a test's log writer). The Emulator keeps its own copy.
	Logs io.Writer
	// StartTimeout bounds the wait for the RIE to listen; default 10s.
	StartTimeout time.Duration
}

// Emulator is one running RIE around one bootstrap.
type Emulator struct {
	url    string
	cmd    *exec.Cmd
	done   chan struct{} // closed when the process has exited
	logs   *syncbuf.Buffer
	client *http.Client
	// slot serialises invokes: the RIE panics on overlapping invokes, and an
	// abandoned invoke keeps the slot until the RIE has answered it.
	slot     chan struct{}
	stopOnce sync.Once
	home     string
}

// Binary returns the path of the aws-lambda-rie executable, building it with
// `go tool -n aws-lambda-rie` in the module directory moduleDir (empty: the
// working directory, which must be inside the module). The Go build cache
// keeps the result, so later calls take a fraction of a second.
func Binary(ctx context.Context, moduleDir string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "tool", "-n", "aws-lambda-rie")
	cmd.Dir = moduleDir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("rie: build the RIE with `go tool -n aws-lambda-rie` (is %s a tool in go.mod?): %w: %s",
			ToolPackage, err, strings.TrimSpace(stderr.String()))
	}
	path := strings.TrimSpace(string(out))
	if path == "" {
		return "", errors.New("rie: `go tool -n aws-lambda-rie` printed no path")
	}
	return path, nil
}

// Start launches the RIE around opts.Bootstrap on free 127.0.0.1 ports and
// waits until it accepts invokes. ctx bounds only the start; call Stop to end
// the emulator.
func Start(ctx context.Context, opts Options) (*Emulator, error) {
	if opts.Bootstrap == "" {
		return nil, errors.New("rie: Options.Bootstrap is empty: pass the path of a built bootstrap")
	}
	bootstrap, err := filepath.Abs(opts.Bootstrap)
	if err != nil {
		return nil, fmt.Errorf("rie: resolve bootstrap path: %w", err)
	}
	if fi, err := os.Stat(bootstrap); err != nil || fi.IsDir() {
		return nil, fmt.Errorf("rie: bootstrap %s is not a file: build it first (internal/lambdabuild)", bootstrap)
	}
	riePath := opts.RIE
	if riePath == "" {
		if riePath, err = Binary(ctx, ""); err != nil {
			return nil, err
		}
	}
	if opts.FunctionName == "" {
		opts.FunctionName = "function"
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 10 * time.Second
	}
	// A port picked free can be taken before the RIE binds it; try again
	// with new ports when the RIE exits during start-up.
	const attempts = 3
	var lastErr error
	for range attempts {
		e, err := start(ctx, riePath, bootstrap, opts)
		if err == nil {
			return e, nil
		}
		lastErr = err
		if ctx.Err() != nil || !errors.Is(err, errExited) {
			break
		}
	}
	return nil, lastErr
}

var errExited = errors.New("the RIE exited during start-up")

func start(ctx context.Context, riePath, bootstrap string, opts Options) (*Emulator, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	invokeAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	runtimeAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))

	home, err := os.MkdirTemp("", "rie-home-")
	if err != nil {
		return nil, fmt.Errorf("rie: create the function's HOME: %w", err)
	}
	logs := &syncbuf.Buffer{}
	var sink io.Writer = logs
	if opts.Logs != nil {
		sink = io.MultiWriter(logs, opts.Logs)
	}
	cmd := exec.Command(riePath,
		"--runtime-interface-emulator-address", invokeAddr,
		"--runtime-api-address", runtimeAddr,
		bootstrap)
	cmd.Dir = filepath.Dir(bootstrap)
	cmd.Env = environment(home, opts)
	cmd.Stdout = sink
	cmd.Stderr = sink
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// The function shares the output pipes; do not wait on them forever if
	// it outlives the RIE.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		_ = os.RemoveAll(home)
		return nil, fmt.Errorf("rie: start %s: %w", riePath, err)
	}
	e := &Emulator{
		url:  "http://" + invokeAddr + invokePath,
		cmd:  cmd,
		done: make(chan struct{}),
		logs: logs,
		client: &http.Client{Transport: &http.Transport{
			Proxy:               nil, // 127.0.0.1 only, whatever HTTP_PROXY says
			DisableCompression:  true,
			MaxIdleConnsPerHost: 1,
		}},
		slot: make(chan struct{}, 1),
		home: home,
	}
	go func() {
		_ = cmd.Wait()
		close(e.done)
	}()
	if err := e.waitListening(ctx, invokeAddr, opts.StartTimeout); err != nil {
		e.Stop()
		return nil, err
	}
	return e, nil
}

// environment is the function's whole environment: the RIE passes its own
// on to the function.
func environment(home string, opts Options) []string {
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"TZ=UTC",
		"AWS_REGION=us-east-1",
		"AWS_DEFAULT_REGION=us-east-1",
		// Never reach for 169.254.169.254: tests talk only to 127.0.0.1.
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_LAMBDA_FUNCTION_NAME=" + opts.FunctionName,
		"AWS_LAMBDA_FUNCTION_TIMEOUT=" + strconv.Itoa(int((opts.Timeout+time.Second-1)/time.Second)),
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128",
		"LOG_LEVEL=info",
	}
	return append(env, opts.Env...) // later entries win in os/exec
}

func (e *Emulator) waitListening(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var d net.Dialer
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		conn, err := d.DialContext(dctx, "tcp", addr)
		cancel()
		if err == nil {
			_ = conn.Close()
			return nil
		}
		select {
		case <-e.done:
			return fmt.Errorf("rie: %w (%v); its output:\n%s", errExited, e.cmd.ProcessState, e.Logs())
		case <-ctx.Done():
			return fmt.Errorf("rie: waiting for the RIE to listen on %s: %w", addr, ctx.Err())
		case <-deadline.C:
			return fmt.Errorf("rie: the RIE did not listen on %s within %s; its output:\n%s", addr, timeout, e.Logs())
		case <-tick.C:
		}
	}
}

// URL is the invoke endpoint, e.g.
// http://127.0.0.1:PORT/2015-03-31/functions/function/invocations.
func (e *Emulator) URL() string { return e.url }

// Invoke sends payload to the function and returns the response body.
// Invokes never overlap: a second caller waits for the first. If ctx ends
// first, Invoke returns ctx's error, and the instance stays reserved until
// the RIE has answered the abandoned invoke (at the latest at the function
// timeout).
//
// The error is an *InvokeError for a non-200 answer (a panic or an exit of
// the function: the RIE answers 502), a *FunctionError for an error the
// handler returned or a function timeout (the RIE answers 200 for both); the
// body is returned in every case.
func (e *Emulator) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	select {
	case e.slot <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("rie: waiting for the previous invoke: %w", ctx.Err())
	case <-e.done:
		return nil, fmt.Errorf("rie: the RIE is not running (%v)", e.cmd.ProcessState)
	}
	type result struct {
		status int
		body   []byte
		err    error
	}
	ch := make(chan result, 1)
	go func() {
		defer func() { <-e.slot }()
		// The request is not bound to ctx: cancelling it would free the
		// slot while the RIE is still busy with the invoke.
		resp, err := e.client.Post(e.url, "application/json", bytes.NewReader(payload))
		if err != nil {
			ch <- result{err: fmt.Errorf("rie: invoke %s: %w", e.url, err)}
			return
		}
		defer func() { _ = resp.Body.Close() }()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			ch <- result{err: fmt.Errorf("rie: read the invoke response: %w", err)}
			return
		}
		ch <- result{status: resp.StatusCode, body: body}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		return r.body, classify(r.status, r.body)
	case <-ctx.Done():
		return nil, fmt.Errorf("rie: invoke abandoned: %w", ctx.Err())
	}
}

// InvokeError is a non-200 answer of the RIE: the function panicked, exited
// or failed to initialise. Type and Message are read from the body when it is
// a Lambda error payload (for example an init error the function reported).
type InvokeError struct {
	Status        int
	Body          string
	Type, Message string
}

func (e *InvokeError) Error() string {
	if e.Message != "" {
		return fmt.Sprintf("rie: invoke answered HTTP %d: %s: %s", e.Status, e.Type, e.Message)
	}
	return fmt.Sprintf("rie: invoke answered HTTP %d: %s", e.Status, e.Body)
}

// FunctionError is an error the handler returned (Type and Message from the
// Lambda error payload) or a function timeout (Type "TimedOut").
type FunctionError struct {
	Type    string
	Message string
}

func (e *FunctionError) Error() string {
	return fmt.Sprintf("rie: function error %s: %s", e.Type, e.Message)
}

var timedOut = regexp.MustCompile(`^Task timed out after [0-9.]+ seconds$`)

func classify(status int, body []byte) error {
	errType, msg, isError := errorPayload(body)
	switch {
	case status != http.StatusOK:
		return &InvokeError{Status: status, Body: string(body), Type: errType, Message: msg}
	case timedOut.Match(body):
		return &FunctionError{Type: "TimedOut", Message: string(body)}
	case isError:
		return &FunctionError{Type: errType, Message: msg}
	}
	return nil
}

// errorPayload reads a Lambda error payload {"errorMessage", "errorType"}.
func errorPayload(body []byte) (errType, msg string, ok bool) {
	var payload struct {
		ErrorMessage *string `json:"errorMessage"`
		ErrorType    string  `json:"errorType"`
	}
	if json.Unmarshal(body, &payload) != nil || payload.ErrorMessage == nil || payload.ErrorType == "" {
		return "", "", false
	}
	return payload.ErrorType, *payload.ErrorMessage, true
}

// PID is the RIE's process ID, which is also the ID of the process group
// that holds the RIE and the function.
func (e *Emulator) PID() int { return e.cmd.Process.Pid }

// Logs returns everything the RIE and the function have written so far.
func (e *Emulator) Logs() string { return e.logs.String() }

// WaitLogs returns the logs written from byte offset from on (an earlier
// len(Logs())) once they contain every one of want, or what there is when
// timeout passes. The function's output reaches the logs through a pipe, so
// a line written just before an invoke returns may arrive a moment after it.
func (e *Emulator) WaitLogs(from int, timeout time.Duration, want ...string) string {
	deadline := time.Now().Add(timeout)
	for {
		logs := e.Logs()[from:]
		missing := false
		for _, w := range want {
			if !strings.Contains(logs, w) {
				missing = true
				break
			}
		}
		if !missing || time.Now().After(deadline) {
			return logs
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var initReport = regexp.MustCompile(`INIT REPORT\(durationMs: ([0-9.]+)\)`)

// InitDuration is the function's real init time from the RIE's
// `INIT REPORT (durationMs: ...)` line (REPORT's "Init Duration" is not a
// measurement). ok is false until the first invoke has initialised the
// function.
func (e *Emulator) InitDuration() (d time.Duration, ok bool) {
	m := initReport.FindStringSubmatch(e.Logs())
	if m == nil {
		return 0, false
	}
	ms, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, false
	}
	return time.Duration(ms * float64(time.Millisecond)), true
}

// Stop kills the RIE and the function (the whole process group), waits for
// them to exit and removes the function's HOME. It is safe to call more than
// once.
func (e *Emulator) Stop() {
	e.stopOnce.Do(func() {
		if e.cmd.Process != nil {
			_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
		}
		<-e.done
		e.client.CloseIdleConnections()
		_ = os.RemoveAll(e.home)
	})
}

// freePorts returns n distinct ports that were free on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("rie: find a free port on 127.0.0.1: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
