package localrun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/cfn"
)

// maxResponseBytes is CloudFormation's limit on a custom resource response.
const maxResponseBytes = 4096

// responseServer plays CloudFormation's pre-signed S3 URL: custom resource
// handlers PUT their response to http://127.0.0.1:P/<request ID>.
type responseServer struct {
	srv *http.Server
	url string

	mu      sync.Mutex
	waiting map[string]chan responseOrError
}

type responseOrError struct {
	resp cfn.Response
	err  error
}

func startResponseServer() (*responseServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for custom resource responses: %w", err)
	}
	s := &responseServer{url: "http://" + ln.Addr().String(), waiting: map[string]chan responseOrError{}}
	s.srv = &http.Server{Handler: http.HandlerFunc(s.handle), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// expect registers a request and returns its ResponseURL and the channel
// its response arrives on.
func (s *responseServer) expect(requestID string) (string, <-chan responseOrError) {
	ch := make(chan responseOrError, 1)
	s.mu.Lock()
	s.waiting[requestID] = ch
	s.mu.Unlock()
	return s.url + "/" + requestID, ch
}

func (s *responseServer) forget(requestID string) {
	s.mu.Lock()
	delete(s.waiting, requestID)
	s.mu.Unlock()
}

func (s *responseServer) handle(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimPrefix(r.URL.Path, "/")
	s.mu.Lock()
	ch, ok := s.waiting[id]
	delete(s.waiting, id)
	s.mu.Unlock()
	if !ok {
		http.Error(w, "no custom resource request is waiting for this response", http.StatusNotFound)
		return
	}
	var res responseOrError
	body, err := io.ReadAll(io.LimitReader(r.Body, maxResponseBytes+1))
	switch {
	case r.Method != http.MethodPut:
		res.err = fmt.Errorf("the handler sent its response with %s, CloudFormation's URL takes PUT", r.Method)
	case err != nil:
		res.err = fmt.Errorf("read the response: %w", err)
	case len(body) > maxResponseBytes:
		res.err = fmt.Errorf("the response is larger than CloudFormation's limit of %d bytes", maxResponseBytes)
	default:
		if err := json.Unmarshal(body, &res.resp); err != nil {
			res.err = fmt.Errorf("the response is not a CloudFormation response JSON: %w", err)
		}
	}
	ch <- res
	w.WriteHeader(http.StatusOK)
}

func (s *responseServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		_ = s.srv.Close()
	}
}

// check validates a response the way CloudFormation does: it must belong
// to the request and, on success, carry a physical resource ID.
func check(ev cfn.Event, resp cfn.Response) error {
	switch {
	case resp.RequestID != ev.RequestID:
		return fmt.Errorf("the response's RequestId %q is not the request's %q", resp.RequestID, ev.RequestID)
	case resp.LogicalResourceID != ev.LogicalResourceID:
		return fmt.Errorf("the response's LogicalResourceId %q is not the request's %q", resp.LogicalResourceID, ev.LogicalResourceID)
	case resp.StackID != ev.StackID:
		return fmt.Errorf("the response's StackId %q is not the request's %q", resp.StackID, ev.StackID)
	case resp.Status != cfn.StatusSuccess && resp.Status != cfn.StatusFailed:
		return fmt.Errorf("the response's Status is %q, want SUCCESS or FAILED", resp.Status)
	case resp.Status == cfn.StatusFailed:
		return &failedError{reason: resp.Reason}
	case resp.PhysicalResourceID == "":
		return errors.New("the response has no PhysicalResourceId")
	}
	return nil
}

// failedError is a custom resource's FAILED response, with its reason.
type failedError struct{ reason string }

func (e *failedError) Error() string { return "FAILED: " + e.reason }
