package localrun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/internal/rie"
)

// The Lambda API of the local run: Invoke, for the functions of the
// deployment, served on 127.0.0.1 to the real aws-sdk-go-v2 Lambda client
// of the functions (AWS_ENDPOINT_URL_LAMBDA, which the run sets on every
// function: the provisioner's trust checks invoke the checked function
// through it).
//
//	POST /2015-03-31/functions/{FunctionName}/invocations
//
// answered as Lambda answers it (the Invoke API reference, and the
// restJson1 error shape aws-sdk-go-v2/service/lambda v1.114.4 reads through
// smithy-go's restjson1 protocol: the code from the X-Amzn-Errortype
// header, the message from the body's "Message"):
//   - the caller is authenticated by its SigV4 signature, verified by the
//     emulator's own verification (emulator.VerifyAWSRequest, service
//     "lambda") against the credentials the run registered for each
//     function's role session; a refusal answers Lambda's spelling of the
//     common errors (UnrecognizedClientException, InvalidSignatureException,
//     MissingAuthenticationTokenException, IncompleteSignatureException,
//     ExpiredTokenException);
//   - FunctionName is the function's ARN or name (URL-escaped; "$LATEST"
//     the only qualifier); an unknown one is 404 ResourceNotFoundException,
//     {"Type":"User","Message":"Function not found: ..."};
//   - the caller must be allowed by the function's resource-based policy,
//     as Lambda allows a same-account role principal with no
//     identity-based grant: a statement (AWS::Lambda::Permission) whose
//     Principal is the caller's role ARN, path included, for
//     lambda:InvokeFunction; otherwise 403 AccessDeniedException;
//   - InvocationType RequestResponse (the default) runs the function under
//     its RIE: 200 with its answer; a function error (the handler failed,
//     timed out, or the runtime failed) is 200 with X-Amz-Function-Error:
//     Unhandled and Lambda's error payload {"errorType","errorMessage"}.
//     DryRun checks the permission only (204). Event is not served.
type lambdaAPI struct {
	fns    *functions
	verify func(r *http.Request, service string, body []byte) (emulator.AWSPrincipal, error)
	srv    *http.Server
	url    string
	// invocations counts the invocations that reached a function.
	invocations atomic.Int64
}

// lambdaInvokePath is the prefix and suffix of Invoke's request path.
const (
	lambdaInvokePrefix = "/2015-03-31/functions/"
	lambdaInvokeSuffix = "/invocations"
	// maxInvokePayload is Lambda's limit on a synchronous request payload.
	maxInvokePayload = 6 << 20
)

// listenLocal listens on a free port of 127.0.0.1 and returns its URL.
func listenLocal(what string) (net.Listener, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", fmt.Errorf("listen for %s: %w", what, err)
	}
	return ln, "http://" + ln.Addr().String(), nil
}

// serveLambdaAPI serves Invoke for fns on ln (at url), authenticating
// callers with verify (emulator.Emulator.VerifyAWSRequest).
func serveLambdaAPI(ln net.Listener, url string, fns *functions, verify func(*http.Request, string, []byte) (emulator.AWSPrincipal, error)) *lambdaAPI {
	l := &lambdaAPI{fns: fns, verify: verify, url: url}
	l.srv = &http.Server{Handler: http.HandlerFunc(l.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = l.srv.Serve(ln) }()
	return l
}

func (l *lambdaAPI) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := l.srv.Shutdown(ctx); err != nil {
		_ = l.srv.Close()
	}
}

// lambdaError writes a Lambda API error.
func lambdaError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("X-Amzn-Errortype", code)
	w.Header().Set("X-Amzn-Requestid", newUUIDish())
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"Type": "User", "Message": msg})
}

// lambdaAuthCodes are Lambda's names of AWS's common authentication errors.
var lambdaAuthCodes = map[string]string{
	"InvalidClientTokenId":       "UnrecognizedClientException",
	"SignatureDoesNotMatch":      "InvalidSignatureException",
	"MissingAuthenticationToken": "MissingAuthenticationTokenException",
	"IncompleteSignature":        "IncompleteSignatureException",
	"ExpiredToken":               "ExpiredTokenException",
}

func (l *lambdaAPI) serve(w http.ResponseWriter, r *http.Request) {
	raw := r.URL.EscapedPath()
	if r.Method != http.MethodPost || !strings.HasPrefix(raw, lambdaInvokePrefix) || !strings.HasSuffix(raw, lambdaInvokeSuffix) ||
		len(raw) <= len(lambdaInvokePrefix)+len(lambdaInvokeSuffix) {
		lambdaError(w, http.StatusNotFound, "UnknownOperationException", fmt.Sprintf("%s %s: the local run serves Invoke only", r.Method, raw))
		return
	}
	name, err := url.PathUnescape(strings.TrimSuffix(strings.TrimPrefix(raw, lambdaInvokePrefix), lambdaInvokeSuffix))
	if err != nil {
		lambdaError(w, http.StatusBadRequest, "InvalidParameterValueException", "FunctionName is not URL-escaped correctly")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxInvokePayload+1))
	if err != nil {
		lambdaError(w, http.StatusBadRequest, "InvalidRequestContentException", "read the payload: "+err.Error())
		return
	}
	caller, err := l.verify(r, "lambda", body)
	if err != nil {
		var ae *emulator.AWSAuthError
		if !errors.As(err, &ae) {
			lambdaError(w, http.StatusInternalServerError, "ServiceException", err.Error())
			return
		}
		code, ok := lambdaAuthCodes[ae.Code]
		if !ok {
			code = ae.Code
		}
		lambdaError(w, ae.StatusCode, code, ae.Message)
		return
	}
	if len(body) > maxInvokePayload {
		lambdaError(w, http.StatusRequestEntityTooLarge, "RequestTooLargeException", fmt.Sprintf("Request must be smaller than %d bytes for the InvokeFunction operation", maxInvokePayload))
		return
	}
	if q := r.URL.Query().Get("Qualifier"); q != "" && q != "$LATEST" {
		lambdaError(w, http.StatusNotFound, "ResourceNotFoundException", fmt.Sprintf("Function not found: %s:%s (the local run has $LATEST only)", name, q))
		return
	}
	f, ok := l.fns.lookup(name)
	if !ok {
		lambdaError(w, http.StatusNotFound, "ResourceNotFoundException", "Function not found: "+name)
		return
	}
	if !l.fns.mayInvoke(f.arn, caller.RoleARN) {
		lambdaError(w, http.StatusForbidden, "AccessDeniedException", fmt.Sprintf(
			"User: %s is not authorized to perform: lambda:InvokeFunction on resource: %s because no resource-based policy allows the lambda:InvokeFunction action",
			caller.ARN, f.arn))
		return
	}
	switch t := r.Header.Get("X-Amz-Invocation-Type"); t {
	case "", "RequestResponse":
	case "DryRun":
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		lambdaError(w, http.StatusBadRequest, "InvalidParameterValueException", "InvocationType "+t+" is not served by the local run (RequestResponse and DryRun are)")
		return
	}
	l.invocations.Add(1)
	out, err := l.fns.invoke(r.Context(), f.arn, body)
	if err != nil {
		payload, ok := functionErrorPayload(err, out)
		if !ok {
			lambdaError(w, http.StatusInternalServerError, "ServiceException", err.Error())
			return
		}
		w.Header().Set("X-Amz-Function-Error", "Unhandled")
		out = payload
	}
	w.Header().Set("X-Amz-Executed-Version", "$LATEST")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
}

// functionErrorPayload returns Lambda's error payload for an invocation
// that failed in the function (rie.FunctionError: the handler's error or a
// timeout; rie.InvokeError: the runtime failed), and false for anything
// else (the RIE could not be reached or started). The function's own
// payload is kept when it is one.
func functionErrorPayload(err error, out []byte) ([]byte, bool) {
	var fe *rie.FunctionError
	var ie *rie.InvokeError
	var typ, msg string
	switch {
	case errors.As(err, &fe) && fe.Type == "TimedOut":
		// Lambda's payload for a timeout, whose message the provisioner
		// recognises ("Task timed out after N seconds").
		typ, msg = "Sandbox.Timedout", "RequestId: "+newUUIDish()+" Error: "+fe.Message
	case errors.As(err, &fe):
		if isErrorPayload(out) {
			return out, true
		}
		typ, msg = fe.Type, fe.Message
	case errors.As(err, &ie):
		if isErrorPayload([]byte(ie.Body)) {
			return []byte(ie.Body), true
		}
		typ, msg = "Runtime.Unknown", fmt.Sprintf("the runtime failed (RIE status %d): %s", ie.Status, ie.Body)
	default:
		return nil, false
	}
	b, _ := json.Marshal(map[string]string{"errorType": typ, "errorMessage": msg})
	return b, true
}

// isErrorPayload reports whether b is a Lambda error payload.
func isErrorPayload(b []byte) bool {
	var p struct {
		Type    string  `json:"errorType"`
		Message *string `json:"errorMessage"`
	}
	return json.Unmarshal(b, &p) == nil && p.Type != "" && p.Message != nil
}

// newUUIDish returns a request ID in the form of Lambda's.
func newUUIDish() string {
	id, err := newRequestID()
	if err != nil {
		return "00000000-0000-4000-8000-000000000000"
	}
	return id
}
