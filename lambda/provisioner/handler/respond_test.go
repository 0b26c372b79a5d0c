package handler

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/cfn"
)

// The real bootstrap's undelivered responses (closed port, refused
// signature, hanging PUT) are tested under the RIE in package main.
func TestWrap(t *testing.T) {
	tests := []struct {
		name     string
		fn       cfn.CustomResourceFunction
		ev       cfn.Event
		statuses []int // answers of the response server, in turn; 200 after the last
		want     cfn.Response
		tries    int
		wantErr  string
	}{{
		name: "success",
		fn: func(context.Context, cfn.Event) (string, map[string]any, error) {
			return ident, map[string]any{"Id": ident}, nil
		},
		ev:    cfn.Event{RequestType: cfn.RequestCreate, RequestID: "req-1"},
		want:  cfn.Response{Status: cfn.StatusSuccess, RequestID: "req-1", PhysicalResourceID: ident, Data: map[string]any{"Id": ident}},
		tries: 1,
	}, {
		name: "failed create answers the request ID",
		fn: func(context.Context, cfn.Event) (string, map[string]any, error) {
			return "", nil, errors.New("no good")
		},
		ev:    cfn.Event{RequestType: cfn.RequestCreate, RequestID: "req-2"},
		want:  cfn.Response{Status: cfn.StatusFailed, RequestID: "req-2", PhysicalResourceID: "req-2", Reason: "no good"},
		tries: 1,
	}, {
		name: "failed update answers its physical ID",
		fn: func(context.Context, cfn.Event) (string, map[string]any, error) {
			return "", nil, errors.New("no good")
		},
		ev:    cfn.Event{RequestType: cfn.RequestUpdate, RequestID: "req-3", PhysicalResourceID: group},
		want:  cfn.Response{Status: cfn.StatusFailed, RequestID: "req-3", PhysicalResourceID: group, Reason: "no good"},
		tries: 1,
	}, {
		name:     "5xx is retried",
		fn:       func(context.Context, cfn.Event) (string, map[string]any, error) { return group, nil, nil },
		ev:       cfn.Event{RequestType: cfn.RequestDelete, RequestID: "req-4", PhysicalResourceID: group},
		statuses: []int{http.StatusServiceUnavailable, http.StatusInternalServerError},
		want:     cfn.Response{Status: cfn.StatusSuccess, RequestID: "req-4", PhysicalResourceID: group},
		tries:    3,
	}, {
		name:     "4xx is not retried",
		fn:       func(context.Context, cfn.Event) (string, map[string]any, error) { return group, nil, nil },
		ev:       cfn.Event{RequestType: cfn.RequestDelete, RequestID: "req-5", PhysicalResourceID: group},
		statuses: []int{http.StatusForbidden},
		want:     cfn.Response{Status: cfn.StatusSuccess, RequestID: "req-5", PhysicalResourceID: group},
		tries:    1,
		wantErr:  "send the SUCCESS response to http://127.0.0.1:",
	}, {
		name:    "panic answers FAILED",
		fn:      func(context.Context, cfn.Event) (string, map[string]any, error) { panic("boom") },
		ev:      cfn.Event{RequestType: cfn.RequestUpdate, RequestID: "req-6", PhysicalResourceID: group},
		want:    cfn.Response{Status: cfn.StatusFailed, RequestID: "req-6", PhysicalResourceID: group, Reason: "internal error (panic); see the provisioner's log"},
		tries:   1,
		wantErr: "panic: boom",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var (
				mu   sync.Mutex
				got  []cfn.Response
				errs []string
			)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				defer mu.Unlock()
				var resp cfn.Response
				body, err := io.ReadAll(r.Body)
				if err == nil {
					err = json.Unmarshal(body, &resp)
				}
				if err != nil || r.Method != http.MethodPut || r.URL.Query().Get("X-Amz-Signature") != "s3cr3tsig" {
					errs = append(errs, r.Method+" "+r.URL.String())
				}
				got = append(got, resp)
				if n := len(got); n <= len(tt.statuses) {
					w.WriteHeader(tt.statuses[n-1])
				}
			}))
			defer srv.Close()
			tt.ev.ResponseURL = srv.URL + "/response?X-Amz-Signature=s3cr3tsig"

			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			err := func() (err error) {
				defer func() {
					if r := recover(); r != nil {
						err = errors.New("panic: " + r.(string))
					}
				}()
				_, err = Wrap(tt.fn, nil, nil)(ctx, tt.ev)
				return err
			}()
			if (err != nil) != (tt.wantErr != "") || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Wrap's function error = %v, wantErr %q", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "s3cr3tsig") {
				t.Fatalf("error %q holds the URL's signature", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(errs) > 0 {
				t.Fatalf("bad requests: %v", errs)
			}
			if len(got) != tt.tries {
				t.Fatalf("%d PUTs, want %d", len(got), tt.tries)
			}
			if last := got[len(got)-1]; !equalResponses(last, tt.want) {
				t.Fatalf("response = %+v, want %+v", last, tt.want)
			}
		})
	}
}

func equalResponses(a, b cfn.Response) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func TestRedaction(t *testing.T) {
	const raw = "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/arn%3Aaws/req?X-Amz-Credential=AKIAX%2F2026&X-Amz-Security-Token=tok%2Bx%2Fy&X-Amz-Signature=abcdef12"
	if got, want := redactedURL(raw), "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/arn%3Aaws/req"; got != want {
		t.Fatalf("redactedURL = %q, want %q", got, want)
	}
	tests := []struct {
		name, msg string
	}{
		{name: "whole URL", msg: "Put " + raw + ": boom"},
		{name: "decoded values", msg: "token tok+x/y credential AKIAX/2026 signature abcdef12"},
		{name: "encoded values", msg: "token tok%2Bx%2Fy credential AKIAX%2F2026"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := scrub(tt.msg, raw)
			for _, secret := range []string{"tok+x/y", "tok%2Bx%2Fy", "AKIAX", "abcdef12"} {
				if strings.Contains(got, secret) {
					t.Fatalf("scrub(%q) = %q: still holds %q", tt.msg, got, secret)
				}
			}
		})
	}
}
