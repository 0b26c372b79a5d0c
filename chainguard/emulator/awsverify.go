package emulator

import (
	"errors"
	"net/http"
)

// AWSAuthError is why VerifyAWSRequest refused a request: the HTTP status
// and the error code of AWS's common errors (MissingAuthenticationToken,
// IncompleteSignature, InvalidClientTokenId, SignatureDoesNotMatch,
// ExpiredToken), as the stand-in answers its own STS and IAM calls. A
// stand-in of a JSON-protocol service maps the code to that service's
// spelling (e.g. Lambda's UnrecognizedClientException,
// InvalidSignatureException).
type AWSAuthError struct {
	StatusCode int
	Code       string
	Message    string
}

func (e *AWSAuthError) Error() string { return e.Code + ": " + e.Message }

// VerifyAWSRequest authenticates r, a call to the AWS service whose SigV4
// signing name is service (e.g. "lambda"), whose payload is body (nil:
// none; r.Body is not read): it checks the signature exactly as the
// stand-in checks its own STS and IAM calls (verifySignature: the access
// key and session token registered with RegisterAWSPrincipal, X-Amz-Date
// within 15 minutes, the credential scope naming service and a region,
// host and x-amz-date signed, the signature recomputed over the canonical
// request and the SHA-256 of body), and returns the principal of the
// signing credentials, its RoleARN filled in for an assumed-role session
// registered without one (path "/"). It is for stand-ins of other AWS
// APIs that authenticate their callers the way AWS does (the local run's
// Lambda Invoke). It does not count the call (Calls) or apply injected AWS
// faults. A refusal is an *AWSAuthError.
func (e *Emulator) VerifyAWSRequest(r *http.Request, service string, body []byte) (AWSPrincipal, error) {
	caller, err := e.verifySignature(r, sigV4Check{service: service, requiredHeaders: []string{"host", "x-amz-date"}, body: body})
	if err != nil {
		var ae *awsError
		if errors.As(err, &ae) {
			return AWSPrincipal{}, &AWSAuthError{StatusCode: ae.status, Code: ae.code, Message: ae.message}
		}
		return AWSPrincipal{}, err
	}
	p := caller.principal
	if p.RoleARN == "" {
		if _, _, _, ok := assumedRole(p.ARN); ok {
			p.RoleARN = principalARN(p)
		}
	}
	return p, nil
}
