package handler

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/cfn"

	"github.com/assumable-identity/cdk-chainguard/internal/syncbuf"
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
		// cut is the full reason when the response must hold it cut to
		// fit (want.Reason is then ignored).
		cut string
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
	}, {
		name:  "10 KB reason is cut",
		fn:    failWith(longReason),
		ev:    cfn.Event{RequestType: cfn.RequestUpdate, RequestID: "req-7", PhysicalResourceID: group, StackID: testStackID, LogicalResourceID: "Res"},
		want:  cfn.Response{Status: cfn.StatusFailed, RequestID: "req-7", PhysicalResourceID: group, StackID: testStackID, LogicalResourceID: "Res"},
		tries: 1,
		cut:   longReason,
	}, {
		name:  "multi-byte characters are cut whole",
		fn:    failWith(runesReason),
		ev:    cfn.Event{RequestType: cfn.RequestCreate, RequestID: "req-8"},
		want:  cfn.Response{Status: cfn.StatusFailed, RequestID: "req-8", PhysicalResourceID: "req-8"},
		tries: 1,
		cut:   runesReason,
	}, {
		name:  "characters JSON escapes are measured escaped",
		fn:    failWith(escapedReason),
		ev:    cfn.Event{RequestType: cfn.RequestCreate, RequestID: "req-9"},
		want:  cfn.Response{Status: cfn.StatusFailed, RequestID: "req-9", PhysicalResourceID: "req-9"},
		tries: 1,
		cut:   escapedReason,
	}, {
		name: "large Data is dropped, Id kept",
		fn: func(context.Context, cfn.Event) (string, map[string]any, error) {
			return ident, map[string]any{"Id": ident, "Name": "aws-auth-identity", "Roles": strings.Repeat("registry.pull,", 300)}, nil
		},
		ev:    cfn.Event{RequestType: cfn.RequestCreate, RequestID: "req-10"},
		want:  cfn.Response{Status: cfn.StatusSuccess, RequestID: "req-10", PhysicalResourceID: ident, Data: map[string]any{"Id": ident, "Name": "aws-auth-identity"}},
		tries: 1,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var (
				mu    sync.Mutex
				got   []cfn.Response
				sizes []int
				errs  []string
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
				sizes = append(sizes, len(body))
				if n := len(got); n <= len(tt.statuses) {
					w.WriteHeader(tt.statuses[n-1])
				}
			}))
			defer srv.Close()
			tt.ev.ResponseURL = srv.URL + "/response?X-Amz-Signature=s3cr3tsig"

			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			var logs syncbuf.Buffer
			err := func() (err error) {
				defer func() {
					if r := recover(); r != nil {
						err = errors.New("panic: " + r.(string))
					}
				}()
				_, err = Wrap(tt.fn, nil, slog.New(slog.NewJSONHandler(&logs, nil)), time.Second)(ctx, tt.ev)
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
			for i, n := range sizes {
				if n > MaxResponseSize {
					t.Fatalf("PUT #%d sent %d bytes, CloudFormation accepts at most %d", i+1, n, MaxResponseSize)
				}
			}
			last := got[len(got)-1]
			if tt.cut != "" {
				checkCut(t, last.Reason, tt.cut, sizes[len(sizes)-1], logs.String())
				last.Reason = ""
			}
			if !equalResponses(last, tt.want) {
				t.Fatalf("response = %+v, want %+v", last, tt.want)
			}
		})
	}
}

// Reasons too long for a response; errors quote properties, which may be
// long.
var (
	longReason    = `property Name: "` + strings.Repeat("x", 10<<10) + `" is not valid`
	runesReason   = strings.Repeat("é世🙂", 1000)
	escapedReason = strings.Repeat("<>&", 1500)
)

func failWith(reason string) cfn.CustomResourceFunction {
	return func(context.Context, cfn.Event) (string, map[string]any, error) {
		return "", nil, errors.New(reason)
	}
}

// checkCut checks that reason is the longest whole-character prefix of full
// that fits, followed by TruncatedSuffix, in a body of size bytes, and that
// logs hold full.
func checkCut(t *testing.T, reason, full string, size int, logs string) {
	t.Helper()
	kept, ok := strings.CutSuffix(reason, TruncatedSuffix)
	if !ok || !strings.HasPrefix(full, kept) || !utf8.ValidString(reason) {
		t.Fatalf("Reason %q is not a whole-character prefix of the full reason followed by %q", reason, TruncatedSuffix)
	}
	next, _ := utf8.DecodeRuneInString(full[len(kept):])
	escaped, err := json.Marshal(string(next))
	if err != nil {
		t.Fatal(err)
	}
	if grown := size + len(escaped) - 2; grown <= MaxResponseSize {
		t.Fatalf("Reason was cut too short: one more character (%q) would make %d bytes, within %d", next, grown, MaxResponseSize)
	}
	for line := range strings.Lines(logs) {
		var entry struct{ Reason string }
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Reason == full {
			return
		}
	}
	t.Fatalf("no log line holds the full reason:\n%.2000s", logs)
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
