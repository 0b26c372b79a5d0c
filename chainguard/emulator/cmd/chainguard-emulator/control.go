package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strings"
	"time"

	iam "chainguard.dev/sdk/proto/platform/iam/v1"
	"github.com/aws/aws-sdk-go-v2/aws"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/truststep"
	"github.com/assumable-identity/cdk-chainguard/chainguard/validate"
)

// The control endpoint (see the command's doc comment): plain HTTP with
// JSON bodies on a loopback address. It hands out AWS credentials and acts
// as an owner of the root group without authentication, which is why it
// listens on loopback only, refuses requests whose Host is not a loopback
// name (a web page cannot reach it through DNS rebinding), and takes only
// Content-Type application/json (a cross-origin form post cannot reach it).

// maxControlBody bounds a request body.
const maxControlBody = 64 << 10

// trustStepUserName is the name of the identity the trust step acts as.
const trustStepUserName = "control-user"

// control serves the control endpoint of one emulator.
type control struct {
	e    *emulator.Emulator
	root string // the seeded root group: the trust step's default parent
	user string // the identity the trust step acts as (owner on root)
	log  *slog.Logger
}

// newControl seeds the identity the trust step acts as, a user signed in
// to chainctl: an owner of the root group, whose trust (a claim_match on
// an issuer nobody serves) no caller can meet, so that only the control
// endpoint acts as it, with tokens the emulator mints (MintToken).
func newControl(e *emulator.Emulator, root string, log *slog.Logger) *control {
	user := e.SeedClaimMatchIdentity(root, trustStepUserName, "The user of the control endpoint's trust step (chainctl)",
		&iam.Identity_ClaimMatch{
			Iss: &iam.Identity_ClaimMatch_Issuer{Issuer: "https://control.chainguard-emulator.invalid"},
			Sub: &iam.Identity_ClaimMatch_Subject{Subject: trustStepUserName},
		},
		map[string][]string{root: {"owner"}})
	return &control{e: e, root: root, user: user, log: log}
}

// checkLoopback checks that addr (host:port) is a loopback address.
func checkLoopback(flagName, addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s %q is not host:port, e.g. 127.0.0.1:0: %w", flagName, addr, err)
	}
	if !isLoopbackHost(host) {
		return fmt.Errorf("%s %q is not a loopback address (the control endpoint hands out AWS credentials and acts as an owner, unauthenticated): use 127.0.0.1:PORT", flagName, addr)
	}
	return nil
}

// handler routes the control endpoint's requests.
func (c *control) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /principals", c.postPrincipal)
	mux.HandleFunc("POST /trust-step", c.postTrustStep)
	mux.HandleFunc("GET /state", c.getState)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isLoopbackHost(hostOnly(r.Host)) {
			writeError(w, http.StatusForbidden, "Host", fmt.Sprintf("Host %q is not a loopback address: call the control endpoint by the control_url printed (127.0.0.1)", r.Host))
			return
		}
		if r.Method == http.MethodPost {
			mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if err != nil || mt != "application/json" {
				writeError(w, http.StatusUnsupportedMediaType, "Content-Type",
					fmt.Sprintf("Content-Type %q is not application/json: send a JSON body with that type (curl --json)", r.Header.Get("Content-Type")))
				return
			}
		}
		mux.ServeHTTP(w, r)
	})
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.Trim(hostport, "[]")
}

// isLoopbackHost reports whether host is localhost or a loopback IP.
func isLoopbackHost(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// principalRequest is the body of POST /principals.
type principalRequest struct {
	RoleARN     string `json:"role_arn"`
	RoleID      string `json:"role_id"`
	SessionName string `json:"session_name"`
}

// postPrincipal registers the principal of a session of a role with the
// AWS stand-in and answers the Principal with credentials that sign as it.
func (c *control) postPrincipal(w http.ResponseWriter, r *http.Request) {
	var req principalRequest
	if !decode(w, r, &req) {
		return
	}
	if _, err := validate.IAMRoleARN(req.RoleARN); err != nil {
		writeError(w, http.StatusBadRequest, "role_arn", err.Error())
		return
	}
	if err := validate.RoleID(req.RoleID); err != nil {
		writeError(w, http.StatusBadRequest, "role_id", err.Error())
		return
	}
	if err := validate.SessionName(req.SessionName); err != nil {
		writeError(w, http.StatusBadRequest, "session_name", err.Error())
		return
	}
	p, err := emulator.RolePrincipal(req.RoleARN, req.RoleID, req.SessionName)
	if err != nil {
		writeError(w, http.StatusBadRequest, "role_arn", err.Error())
		return
	}
	var creds aws.Credentials
	if err := seed(func() { creds = c.e.RegisterAWSPrincipal(p) }); err != nil {
		writeError(w, http.StatusBadRequest, "role_arn", err.Error())
		return
	}
	c.log.Info("control: registered an AWS principal", "arn", p.ARN, "user_id", p.UserID, "role_arn", p.RoleARN)
	writeJSON(w, http.StatusOK, newPrincipal("", p, creds))
}

// trustStepRequest is the body of POST /trust-step.
type trustStepRequest struct {
	// TrustSpec is the provisioner stack's TrustSpec output: the JSON
	// string as the output holds it, or the object it encodes.
	TrustSpec json.RawMessage `json:"trust_spec"`
	Parent    string          `json:"parent"`
	Role      string          `json:"role"`
}

// TrustStepResponse is the answer of POST /trust-step.
type TrustStepResponse struct {
	Identity string `json:"identity"`
	Name     string `json:"name"`
	Parent   string `json:"parent"`
	Role     string `json:"role"`
}

// postTrustStep creates the identity of a TrustSpec under the parent group
// and binds the role to it there, as the trust user with chainctl.
func (c *control) postTrustStep(w http.ResponseWriter, r *http.Request) {
	var req trustStepRequest
	if !decode(w, r, &req) {
		return
	}
	spec := strings.TrimSpace(string(req.TrustSpec))
	if spec == "" || spec == "null" {
		writeError(w, http.StatusBadRequest, "trust_spec", "trust_spec is missing: give the provisioner stack's TrustSpec output (the JSON string, or the object it holds)")
		return
	}
	if strings.HasPrefix(spec, `"`) {
		var s string
		if err := json.Unmarshal([]byte(spec), &s); err != nil {
			writeError(w, http.StatusBadRequest, "trust_spec", "trust_spec is not a JSON string or object: "+err.Error())
			return
		}
		spec = s
	}
	id, err := truststep.ParseSpec(spec)
	if err != nil {
		writeError(w, http.StatusBadRequest, "trust_spec", err.Error())
		return
	}
	if req.Parent == "" {
		req.Parent = c.root
	}
	if err := validate.UIDP("parent", req.Parent); err != nil {
		writeError(w, http.StatusBadRequest, "parent", err.Error())
		return
	}
	if req.Role == "" {
		req.Role = "owner"
	}
	if err := validate.RoleName(req.Role); err != nil {
		writeError(w, http.StatusBadRequest, "role", err.Error())
		return
	}
	if c.e.RoleID(req.Role) == "" {
		writeError(w, http.StatusBadRequest, "role", fmt.Sprintf("role %q is not a built-in role (e.g. owner, editor, viewer)", req.Role))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	created, err := truststep.Create(ctx, c.e.APIURL(), c.e.MintToken(c.user), truststep.Request{Identity: id, Parent: req.Parent, Role: req.Role})
	if err != nil {
		code, field := http.StatusBadGateway, ""
		switch status.Code(err) {
		case codes.InvalidArgument:
			code, field = http.StatusBadRequest, "trust_spec"
		case codes.AlreadyExists:
			code, field = http.StatusConflict, "trust_spec"
		case codes.NotFound:
			code, field = http.StatusNotFound, "parent"
		case codes.PermissionDenied:
			code, field = http.StatusForbidden, "parent"
		}
		writeError(w, code, field, err.Error())
		return
	}
	c.log.Info("control: trust step", "identity", created, "name", id.GetName(), "parent", req.Parent, "role", req.Role)
	writeJSON(w, http.StatusOK, TrustStepResponse{Identity: created, Name: id.GetName(), Parent: req.Parent, Role: req.Role})
}

// StateResponse is the answer of GET /state: what the emulator holds.
type StateResponse struct {
	Groups       []StateObject  `json:"groups"`
	Identities   []StateObject  `json:"identities"`
	RoleBindings []StateBinding `json:"role_bindings"`
	Repos        []StateObject  `json:"repos"`
}

// StateObject is a group, identity or repo in StateResponse.
type StateObject struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// StateBinding is a role binding in StateResponse: Identity has Role (its
// name) on Group.
type StateBinding struct {
	ID       string `json:"id"`
	Identity string `json:"identity"`
	Group    string `json:"group"`
	Role     string `json:"role"`
}

func (c *control) getState(w http.ResponseWriter, _ *http.Request) {
	s := c.e.State()
	out := StateResponse{Groups: []StateObject{}, Identities: []StateObject{}, RoleBindings: []StateBinding{}, Repos: []StateObject{}}
	for _, g := range s.Groups {
		out.Groups = append(out.Groups, StateObject{ID: g.ID, Name: g.Name})
	}
	for _, i := range s.Identities {
		out.Identities = append(out.Identities, StateObject{ID: i.ID, Name: i.Name})
	}
	for _, b := range s.RoleBindings {
		out.RoleBindings = append(out.RoleBindings, StateBinding{ID: b.ID, Identity: b.Identity, Group: b.Group, Role: b.RoleName})
	}
	for _, r := range s.Repos {
		out.Repos = append(out.Repos, StateObject{ID: r.ID, Name: r.Name})
	}
	writeJSON(w, http.StatusOK, out)
}

// ErrorResponse is the body of every 4xx and 5xx answer: Error is the
// whole message, Field the request field (or header) it is about, if any.
type ErrorResponse struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

func writeError(w http.ResponseWriter, code int, field, msg string) {
	if field != "" && !strings.HasPrefix(msg, field) {
		msg = field + ": " + msg
	}
	writeJSON(w, code, ErrorResponse{Error: msg, Field: field})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// decode reads the request body, one JSON object with only known fields,
// into v; on failure it answers 400 (413 for a body over maxControlBody)
// naming the field and reports false.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxControlBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("trailing data after the JSON object")
	}
	if err == nil {
		return true
	}
	var (
		typeErr *json.UnmarshalTypeError
		tooBig  *http.MaxBytesError
	)
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, "", fmt.Sprintf("the body is larger than %d bytes", maxControlBody))
	case errors.As(err, &typeErr) && typeErr.Field != "":
		writeError(w, http.StatusBadRequest, typeErr.Field, fmt.Sprintf("%s is a JSON %s, want a %s", typeErr.Field, typeErr.Value, typeErr.Type))
	case errors.Is(err, io.EOF):
		writeError(w, http.StatusBadRequest, "", "the body is empty: send a JSON object")
	default:
		msg := strings.TrimPrefix(err.Error(), "json: ")
		field := ""
		if name, ok := strings.CutPrefix(msg, "unknown field "); ok {
			field = strings.Trim(name, `"`)
			msg = fmt.Sprintf("unknown field %s: the fields are %s", name, fieldNames(v))
		}
		writeError(w, http.StatusBadRequest, field, "the body is not the JSON object expected: "+msg)
	}
	return false
}

// fieldNames lists the JSON fields of the request type v points to.
func fieldNames(v any) string {
	switch v.(type) {
	case *principalRequest:
		return "role_arn, role_id, session_name"
	case *trustStepRequest:
		return "trust_spec, parent, role"
	}
	return "?"
}
