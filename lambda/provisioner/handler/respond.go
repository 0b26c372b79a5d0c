package handler

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-lambda-go/cfn"
	"github.com/cenkalti/backoff/v5"
)

// DefaultSendTimeout bounds one PUT of the response to the ResponseURL.
const DefaultSendTimeout = 10 * time.Second

// sendTries is how many times a response PUT is tried when it fails with a
// network error or a 5xx answer.
const sendTries = 3

// sendReserve is kept free before the function's deadline when sending: a
// PUT still running then is abandoned so that its failure is logged before
// Lambda stops the function.
const sendReserve = 250 * time.Millisecond

// ResponseClient returns the http.Client Wrap sends responses with: each
// request times out after DefaultSendTimeout, and redirects are not followed
// (the response goes to the pre-signed URL CloudFormation gave, nowhere
// else).
func ResponseClient() *http.Client {
	return &http.Client{
		Timeout: DefaultSendTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Wrap turns fn into a Lambda handler like cfn.LambdaWrap: it runs fn and
// PUTs SUCCESS or FAILED (with the error as the reason) to the event's
// ResponseURL, answering, when fn sets no physical ID, the request ID on a
// Create and the event's physical ID otherwise; a panic in fn answers
// FAILED before it goes on. fn should return margin (zero means
// DefaultMargin) before the function's deadline, as Handler does: if it is
// still running at half the margin before (a call ignored its context),
// Wrap answers FAILED for it then and only logs what fn returns later. When
// Wrap answers without fn's result (that, or a panic), a Create names the
// object it got to, as recorded through provision's ID hook (see settled).
// Unlike cfn.LambdaWrap (whose errors and logs carry the whole URL), nothing
// Wrap logs or returns holds the ResponseURL's query string, which is a
// pre-signed S3 credential: only scheme://host/path. The PUT uses client
// (ResponseClient() when nil), is tried up to 3 times on network errors and
// 5xx answers, and is abandoned shortly before the function's deadline. A
// response that could not be delivered is logged to log and returned as the
// invocation's error.
//
// CloudFormation rejects a response body over 4096 bytes (and the reason
// with it), so Wrap keeps the body within that: a Reason too long for it
// (errors quote properties, which may be long) is first logged in full, then
// cut on a character boundary and ended with TruncatedSuffix, measured as
// JSON (which writes <, > and & as 6 bytes each). Data that does not fit on
// a SUCCESS (a long Roles, say) is dropped field by field, Id last, and
// logged: the answer stays SUCCESS with its physical ID, since a FAILED
// answer for work that was done could leave an object CloudFormation no
// longer tracks (see the package doc on failed Updates), whereas a
// template reading a dropped attribute fails with CloudFormation's own
// error naming it.
func Wrap(fn cfn.CustomResourceFunction, client *http.Client, log *slog.Logger, margin time.Duration) cfn.CustomResourceLambdaFunction {
	if client == nil {
		client = ResponseClient()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if margin <= 0 {
		margin = DefaultMargin
	}
	return func(ctx context.Context, ev cfn.Event) (string, error) {
		fallback := ev.PhysicalResourceID
		if ev.RequestType == cfn.RequestCreate {
			fallback = ev.RequestID
		}
		obj := &settled{}
		ctx = context.WithValue(ctx, settledKey{}, obj)
		// unanswered is the physical ID when Wrap answers without fn's
		// result: on a Create, the object the event got to, if any, so that
		// the rollback deletes it.
		unanswered := func() string {
			id := obj.get()
			if ev.RequestType == cfn.RequestCreate {
				return id
			}
			if id != "" && id != ev.PhysicalResourceID {
				// A replacement's new object: the undo cannot run while fn
				// still hangs or after it panicked.
				log.Error("the new object of an unfinished update may be left behind: delete it by hand if it still exists",
					"cfn_request_id", ev.RequestID, "orphan_id", id, "old_physical_id", ev.PhysicalResourceID)
			}
			return ""
		}
		var once sync.Once // the watchdog's answer, or fn's
		answer := func(status cfn.StatusType, id string, data map[string]any, reason string) (err error) {
			r := cfn.NewResponse(&ev)
			r.Status, r.PhysicalResourceID, r.Data, r.Reason = status, cmp.Or(id, fallback), data, reason
			late := true
			once.Do(func() { late, err = false, deliver(ctx, client, ev, r, log) })
			if late {
				log.Warn("not sent: the event was answered already", "cfn_request_id", ev.RequestID, "status", string(status), "reason", reason)
			}
			return err
		}
		if deadline, ok := ctx.Deadline(); ok {
			watchdog := time.AfterFunc(time.Until(deadline.Add(-margin/2)), func() {
				_ = answer(cfn.StatusFailed, unanswered(), nil, fmt.Sprintf("timed out: the provisioner had not returned %s before the function's deadline (a call ignored its deadline); see the provisioner's log", margin/2))
			})
			defer watchdog.Stop()
		}
		panicked := true
		defer func() {
			if panicked {
				_ = answer(cfn.StatusFailed, unanswered(), nil, "internal error (panic); see the provisioner's log")
			}
		}()
		id, data, err := fn(ctx, ev)
		panicked = false
		if err != nil {
			return "", answer(cfn.StatusFailed, id, nil, err.Error())
		}
		return "", answer(cfn.StatusSuccess, id, data, "")
	}
}

// settled is the UIDP of the object an event got to, recorded as soon as it
// is known (provision's ID hook, see Handler.dial). It is read when the
// event is answered without the handler's own result (a call that ignored
// its deadline, a panic): a FAILED Create then names the object, so that
// CloudFormation's rollback deletes it instead of leaving it behind.
type settled struct{ id atomic.Pointer[string] }

// settledKey is the context key of an event's settled record.
type settledKey struct{}

func (s *settled) set(id string) { s.id.Store(&id) }

func (s *settled) get() string {
	if p := s.id.Load(); p != nil {
		return *p
	}
	return ""
}

// settledIn returns the settled record of ctx's event, nil if none.
func settledIn(ctx context.Context) *settled {
	s, _ := ctx.Value(settledKey{}).(*settled)
	return s
}

// MaxResponseSize is the largest response body CloudFormation accepts, in
// bytes.
const MaxResponseSize = 4096

// TruncatedSuffix ends a Reason that was cut to fit MaxResponseSize.
const TruncatedSuffix = "… (truncated; see the provisioner's log)"

// deliver PUTs r to ev's ResponseURL and logs the outcome; the error it
// returns names the URL without its query.
func deliver(ctx context.Context, client *http.Client, ev cfn.Event, r *cfn.Response, log *slog.Logger) error {
	where := redactedURL(ev.ResponseURL)
	start := time.Now()
	body, err := encode(r, log.With("cfn_request_id", ev.RequestID, "status", string(r.Status)))
	if err == nil {
		err = send(ctx, client, ev.ResponseURL, body)
	}
	if err != nil {
		// Belt and braces: no part of the query survives in the message.
		msg := scrub(err.Error(), ev.ResponseURL)
		log.Error("response not delivered: CloudFormation waits for it until its own timeout",
			"cfn_request_id", ev.RequestID, "status", string(r.Status), "response_url", where,
			"duration_ms", ms(start), "error", msg)
		return fmt.Errorf("send the %s response to %s: %s", r.Status, where, msg)
	}
	log.Info("response delivered", "cfn_request_id", ev.RequestID, "status", string(r.Status),
		"response_url", where, "duration_ms", ms(start))
	return nil
}

// encode marshals r into at most MaxResponseSize bytes: a Reason too long
// is logged in full and cut (ending with TruncatedSuffix), then Data fields
// are logged and dropped, the largest first and Id last, until it fits. r
// itself is not changed.
func encode(r *cfn.Response, log *slog.Logger) ([]byte, error) {
	body, err := json.Marshal(r)
	if err != nil || len(body) <= MaxResponseSize {
		return body, wrapEncode(err)
	}
	fit := *r
	if fit.Reason != "" {
		log.Warn("the reason is too long for CloudFormation: it is cut in the response; here it is in full",
			"reason", r.Reason, "response_bytes", len(body), "limit_bytes", MaxResponseSize)
		if body, err = cutReason(&fit); err != nil || len(body) <= MaxResponseSize {
			return body, wrapEncode(err)
		}
	}
	if len(fit.Data) == 0 {
		return body, nil // nothing more to cut: the service's own fields fill it
	}
	fit.Data = maps.Clone(r.Data)
	// The largest first, Id last: it is what a template most needs.
	size := func(k string) int { return len(fmt.Sprint(fit.Data[k])) }
	keys := slices.SortedFunc(maps.Keys(fit.Data), func(a, b string) int {
		return cmp.Or(
			cmp.Compare(boolInt(a == "Id"), boolInt(b == "Id")),
			cmp.Compare(size(b), size(a)),
			strings.Compare(a, b))
	})
	for _, k := range keys {
		log.Warn("a Data field does not fit in the response to CloudFormation: it is dropped",
			"field", k, "value", fmt.Sprint(fit.Data[k]), "limit_bytes", MaxResponseSize)
		delete(fit.Data, k)
		if body, err = json.Marshal(&fit); err != nil || len(body) <= MaxResponseSize {
			return body, wrapEncode(err)
		}
	}
	return body, nil
}

// cutReason shortens r.Reason, on a character boundary, to the longest
// prefix that with TruncatedSuffix keeps r's JSON within MaxResponseSize,
// and returns that JSON.
func cutReason(r *cfn.Response) ([]byte, error) {
	full := r.Reason
	var cuts []int // byte offsets of character boundaries, the empty prefix first
	for i := range full {
		cuts = append(cuts, i)
	}
	encodeCut := func(n int) ([]byte, error) {
		r.Reason = full[:cuts[n]] + TruncatedSuffix
		return json.Marshal(r)
	}
	var err error
	// The JSON grows with the prefix: find the first prefix too long.
	tooLong := sort.Search(len(cuts), func(n int) bool {
		b, e := encodeCut(n)
		err = cmp.Or(err, e)
		return len(b) > MaxResponseSize
	})
	if err != nil {
		return nil, err
	}
	return encodeCut(max(tooLong-1, 0))
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func wrapEncode(err error) error {
	if err != nil {
		return fmt.Errorf("encode the response: %w", err)
	}
	return nil
}

// send PUTs body to rawURL, retrying network errors and 5xx answers. Its
// errors never include the URL.
func send(ctx context.Context, client *http.Client, rawURL string, body []byte) error {
	if deadline, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline.Add(-sendReserve))
		defer cancel()
	}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval = 200*time.Millisecond, time.Second
	var last error
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		last = put(ctx, client, rawURL, body)
		return struct{}{}, last
	}, backoff.WithBackOff(b), backoff.WithMaxTries(sendTries), backoff.WithMaxElapsedTime(0))
	if err != nil && ctx.Err() != nil {
		// Retry answers the context's error alone: keep what the PUT saw.
		return fmt.Errorf("abandoned %s before the function's deadline: %w", sendReserve, last)
	}
	return err
}

// put makes one attempt. Errors it wraps with backoff.Permanent are not
// retried.
func put(ctx context.Context, client *http.Client, rawURL string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, rawURL, bytes.NewReader(body))
	if err != nil {
		return backoff.Permanent(errors.New("the ResponseURL is not a valid URL"))
	}
	// The pre-signed URL is signed without a Content-Type.
	req.Header.Del("Content-Type")
	resp, err := client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // its message repeats the whole URL
		}
		return fmt.Errorf("PUT: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	err = fmt.Errorf("PUT answered HTTP %d%s", resp.StatusCode, s3Error(resp.Body))
	if resp.StatusCode >= 500 {
		return err
	}
	return backoff.Permanent(err)
}

// s3Error reads the Code and Message of an S3 error body. The rest of the
// body is never shown: S3 echoes the canonical request, query and security
// token included, in a SignatureDoesNotMatch answer.
func s3Error(body io.Reader) string {
	var e struct {
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	}
	if xml.NewDecoder(io.LimitReader(body, 64<<10)).Decode(&e) != nil || e.Code == "" {
		return ""
	}
	return fmt.Sprintf(": %s: %s", e.Code, e.Message)
}

// redactedURL is rawURL as scheme://host/path: without its query (the
// pre-signed credential), fragment or user information.
func redactedURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(an unparsable ResponseURL)"
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}).String()
}

// scrub replaces in msg every query value of rawURL, and the raw query
// itself, with "REDACTED".
func scrub(msg, rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return strings.ReplaceAll(msg, rawURL, "(the ResponseURL)")
	}
	olds := []string{u.RawQuery}
	for _, kv := range strings.Split(u.RawQuery, "&") {
		_, v, _ := strings.Cut(kv, "=")
		olds = append(olds, v) // as sent, percent-encoded
		if dv, err := url.QueryUnescape(v); err == nil {
			olds = append(olds, dv)
		}
	}
	for _, old := range olds {
		if len(old) >= 4 {
			msg = strings.ReplaceAll(msg, old, "REDACTED")
		}
	}
	return msg
}
