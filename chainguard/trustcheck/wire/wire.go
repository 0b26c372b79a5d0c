// Package wire is the message format of the deploy-time trust check: the
// request the provisioner sends to a workload function (Lambda Invoke) and
// the result the function answers, both JSON objects with the single
// top-level key [Key]. It is a package of its own, without dependencies,
// so that the provisioner reads and writes the messages without linking
// what the workload side needs to answer them (package trustcheck links
// the registry client).
package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Key is the one top-level key of a check request and of its result. A
// payload that is a JSON object with this key alone is a check request;
// every other payload is the function's own business.
const Key = "chainguardTrustCheck"

// Version is the version of the request and result this package writes.
const Version = 1

// Request asks the function to act as Identity, as it would in production
// (its own configuration and trust mode), and, with ListRepos, to list the
// repos of Group once.
type Request struct {
	Version int `json:"version"`
	// Identity is the UIDP of the identity the stack made for the function.
	// The function acts as the identity of its own configuration: a
	// different one is a configuration error (ClassConfig).
	Identity string `json:"identity"`
	// Group is the UIDP of the identity's group, listed when ListRepos is set.
	Group string `json:"group,omitempty"`
	// ListRepos asks for one read call (the identity's roles allow listing
	// repos).
	ListRepos bool `json:"listRepos,omitempty"`
	// TimeoutMS bounds the check in the function (the caller stops waiting
	// then); zero means the function's own deadline.
	TimeoutMS int64 `json:"timeoutMs,omitempty"`
}

// Class says what kind of failure a check met.
type Class string

const (
	// ClassRefused: Chainguard (or, for the web-identity trust, AWS STS)
	// answered and said no: the trust does not name the function's
	// principal, the identity is not known yet, or its rights are not
	// (yet) enough. Rights and new identities take time to apply, so the
	// caller retries.
	ClassRefused Class = "refused"
	// ClassUnreachable: a service was not reached or did not answer in
	// time; the caller retries.
	ClassUnreachable Class = "unreachable"
	// ClassConfig: the function cannot work as configured (a missing or
	// wrong variable, another identity than the stack's); retrying does
	// not help.
	ClassConfig Class = "config"
)

// Steps of a check, for Result.Step.
const (
	StepConfig    = "configuration"
	StepExchange  = "token exchange"
	StepListRepos = "list repos"
)

// Result is the function's answer. It never holds a token or a credential.
type Result struct {
	// OK: the exchange (and the listing, if asked) succeeded.
	OK bool `json:"ok"`
	// Identity is the identity the function acted as (its configuration).
	Identity string `json:"identity,omitempty"`
	// Trust is the function's trust mode: "caller-identity" or "web-identity".
	Trust string `json:"trust,omitempty"`
	// Principal is what the function presented to Chainguard.
	Principal Principal `json:"principal"`
	// Step is the step that failed (StepConfig, StepExchange, StepListRepos).
	Step string `json:"step,omitempty"`
	// Class classifies the failure.
	Class Class `json:"class,omitempty"`
	// Error is the failure, as the function's token and repos packages
	// word it.
	Error string `json:"error,omitempty"`
	// Repos is how many repos the listing returned, when it ran.
	Repos *int `json:"repos,omitempty"`
	// DurationMS is how long the check took in the function.
	DurationMS float64 `json:"durationMs"`
}

// Principal is the AWS principal a function presented: with the
// caller-identity trust its assumed-role ARN and user ID (as AWS STS
// GetCallerIdentity reports them), with the web-identity trust the iss and
// sub of its web identity token (never the token). Note says why what is
// missing is unknown.
type Principal struct {
	ARN     string `json:"arn,omitempty"`
	UserID  string `json:"userId,omitempty"`
	Issuer  string `json:"issuer,omitempty"`
	Subject string `json:"subject,omitempty"`
	Note    string `json:"note,omitempty"`
}

// String names the principal for a person, e.g.
// "arn:aws:sts::111122223333:assumed-role/role-b/fn (user ID AROA…:fn)" or
// "a web identity token with iss https://… and sub arn:aws:iam::…:role/r".
func (p Principal) String() string {
	var s string
	switch {
	case p.ARN != "" && p.UserID != "":
		s = fmt.Sprintf("%s (user ID %s)", p.ARN, p.UserID)
	case p.ARN != "":
		s = p.ARN
	case p.Subject != "" || p.Issuer != "":
		s = fmt.Sprintf("a web identity token with iss %s and sub %s", orUnknown(p.Issuer), orUnknown(p.Subject))
	default:
		s = "an unknown principal"
	}
	if p.Note != "" {
		s += " (" + p.Note + ")"
	}
	return s
}

func orUnknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}

// request and answer are the envelopes.
type request struct {
	Check *Request `json:"chainguardTrustCheck"`
}

type answer struct {
	Check *Result `json:"chainguardTrustCheck"`
}

// EncodeRequest returns the payload that asks for r.
func EncodeRequest(r Request) ([]byte, error) {
	if r.Version == 0 {
		r.Version = Version
	}
	return json.Marshal(request{Check: &r})
}

// EncodeResult returns the payload that answers with r.
func EncodeResult(r Result) ([]byte, error) {
	return json.Marshal(answer{Check: &r})
}

// quotedKey is Key as it appears in a JSON document.
var quotedKey = []byte(`"` + Key + `"`)

// IsRequest reports whether payload is a check request: a JSON object
// whose only key is Key. It looks for the key's bytes first, so that any
// other payload costs one scan and no decoding. req is the request, or an
// error when the value under Key is not one (still a check request: the
// caller answers it with ClassConfig).
func IsRequest(payload []byte) (req Request, ok bool, err error) {
	if !bytes.Contains(payload, quotedKey) {
		return Request{}, false, nil
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(payload, &top) != nil || len(top) != 1 {
		return Request{}, false, nil
	}
	raw, ok := top[Key]
	if !ok {
		return Request{}, false, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return Request{}, true, fmt.Errorf("the %s request is malformed: %w", Key, err)
	}
	if req.Version > Version {
		return req, true, fmt.Errorf("the %s request is of version %d; this function understands version %d: rebuild it with the project's current chainguard/trustcheck", Key, req.Version, Version)
	}
	return req, true, nil
}

// DecodeResult reads a function's answer. ok is false when the payload is
// not a check result (a JSON object whose only key is Key holding a
// result object); what tells what the payload was instead, in words that
// quote none of it (it may be anything the function returns).
func DecodeResult(payload []byte) (res Result, ok bool, what string) {
	var top any
	if err := json.Unmarshal(payload, &top); err != nil {
		return Result{}, false, fmt.Sprintf("%d bytes that are not JSON", len(payload))
	}
	obj, isObj := top.(map[string]any)
	if !isObj {
		return Result{}, false, "a JSON " + jsonKind(top)
	}
	if _, has := obj[Key]; !has || len(obj) != 1 {
		return Result{}, false, fmt.Sprintf("a JSON object that is not {%q: …}", Key)
	}
	var a answer
	if err := json.Unmarshal(payload, &a); err != nil || a.Check == nil {
		return Result{}, false, fmt.Sprintf("a %s object that is not a check result", Key)
	}
	return *a.Check, true, ""
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	}
	return "value"
}
