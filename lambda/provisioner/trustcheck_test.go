package main_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/cfn"
	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/internal/rie"
	"github.com/assumable-identity/cdk-chainguard/lambda/internal/functest"
	"github.com/assumable-identity/cdk-chainguard/lambda/provisioner/handler"
)

// Custom::ChainguardTrustCheck end to end: the provisioner bootstrap, with
// the real aws-sdk-go-v2 Lambda client (AWS_ENDPOINT_URL_LAMBDA), invokes
// workload bootstraps (the repos function, wrapped with trustcheck; the
// hello-world function, not wrapped) running under the RIE, through a local
// stand-in for Lambda's Invoke API.

// lambdaAPI serves Lambda's Invoke (POST
// /2015-03-31/functions/{FunctionName}/invocations) for the functions it
// knows by ARN, as Lambda answers it: 200 with the function's answer, or
// with X-Amz-Function-Error and the error payload when the function
// failed. Only the caller signing with allowed's access key may invoke (a
// resource-based permission for the provisioner role): others get
// AccessDeniedException.
type lambdaAPI struct {
	srv     *httptest.Server
	allowed string
	calls   atomic.Int32

	mu  sync.Mutex
	fns map[string]*rie.Emulator
}

func newLambdaAPI(t *testing.T, allowed aws.Credentials) *lambdaAPI {
	l := &lambdaAPI{allowed: allowed.AccessKeyID, fns: map[string]*rie.Emulator{}}
	l.srv = httptest.NewServer(http.HandlerFunc(l.serve))
	t.Cleanup(l.srv.Close)
	return l
}

// add deploys f as arn.
func (l *lambdaAPI) add(arn string, f *rie.Emulator) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fns[arn] = f
}

func (l *lambdaAPI) serve(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, code, msg string) {
		w.Header().Set("X-Amzn-Errortype", code)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = fmt.Fprintf(w, `{"Type":"User","message":%q}`, msg)
	}
	const prefix, suffix = "/2015-03-31/functions/", "/invocations"
	raw := r.URL.EscapedPath()
	if r.Method != http.MethodPost || !strings.HasPrefix(raw, prefix) || !strings.HasSuffix(raw, suffix) {
		fail(http.StatusNotFound, "UnknownOperationException", "only Invoke is served")
		return
	}
	name, err := url.PathUnescape(strings.TrimSuffix(strings.TrimPrefix(raw, prefix), suffix))
	if err != nil {
		fail(http.StatusBadRequest, "InvalidParameterValueException", "bad function name")
		return
	}
	if !strings.Contains(r.Header.Get("Authorization"), "Credential="+l.allowed+"/") {
		fail(http.StatusForbidden, "AccessDeniedException", "User is not authorized to perform: lambda:InvokeFunction on resource: "+name)
		return
	}
	if t := r.Header.Get("X-Amz-Invocation-Type"); t != "" && t != "RequestResponse" {
		fail(http.StatusBadRequest, "InvalidParameterValueException", "invocation type "+t+" is not served")
		return
	}
	l.mu.Lock()
	f, ok := l.fns[name]
	l.mu.Unlock()
	if !ok {
		fail(http.StatusNotFound, "ResourceNotFoundException", "Function not found: "+name)
		return
	}
	l.calls.Add(1)
	payload, err := io.ReadAll(r.Body)
	if err != nil {
		fail(http.StatusBadRequest, "InvalidRequestContentException", err.Error())
		return
	}
	out, err := f.Invoke(r.Context(), payload)
	var fe *rie.FunctionError
	var ie *rie.InvokeError
	switch {
	case errors.As(err, &fe), errors.As(err, &ie):
		w.Header().Set("X-Amz-Function-Error", "Unhandled")
	case err != nil:
		fail(http.StatusInternalServerError, "ServiceException", err.Error())
		return
	}
	w.Header().Set("X-Amz-Executed-Version", "$LATEST")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
}

// functionARN is the ARN the stand-in deploys a function under.
func functionARN(name string) string {
	return "arn:aws:lambda:us-east-1:111122223333:function:" + name
}

// startWorkload runs bootstrap under the RIE as the workload principal,
// configured as ConfigureFunction configures it for identity, and deploys
// it in api as name.
func (e *env) startWorkload(t *testing.T, api *lambdaAPI, name, bootstrap, identity string) {
	t.Helper()
	f := functest.Start(t, functest.Binaries{Bootstrap: bootstrap, RIE: bin.RIE}, rie.Options{
		FunctionName: e.WorkloadPrincipal.ARN[strings.LastIndex(e.WorkloadPrincipal.ARN, "/")+1:],
		Timeout:      30 * time.Second,
		Env: append(functest.AWSEnv(e.WorkloadCredentials),
			"CHAINGUARD_IDENTITY="+identity,
			"CHAINGUARD_GROUP="+e.Group,
			"CHAINGUARD_ISSUER="+e.IssuerURL(),
			"CHAINGUARD_API="+e.APIURL(),
			// GetCallerIdentity, which names the function's principal.
			"AWS_ENDPOINT_URL_STS="+e.AWSURL(),
		),
	}, secretsOf(e.WorkloadCredentials)...)
	api.add(functionARN(name), f)
}

func (e *env) checkProps(fn, identity string) map[string]any {
	p := e.common()
	p["FunctionName"], p["Identity"], p["Group"], p["ListRepos"], p["Fingerprint"] = functionARN(fn), identity, e.Group, "true", "v1"
	return p
}

func TestTrustCheckRealBootstraps(t *testing.T) {
	// given the provisioner bootstrap, allowed to invoke the functions of a local Lambda
	e := newEnv(t)
	api := newLambdaAPI(t, e.ProvisionerCredentials)
	prov := e.startAs(t, e.ProvisionerPrincipal, e.ProvisionerCredentials, "AWS_ENDPOINT_URL_LAMBDA="+api.srv.URL)
	// and the repos bootstrap, whose identity trusts it, bound as viewer
	good := e.SeedIdentity(e.Group, "aws-auth-identity", "the repos function", e.WorkloadPrincipal.ExactTrust(), map[string][]string{e.Group: {"viewer"}})
	e.startWorkload(t, api, "aws-auth", workloads.repos, good)
	// and the same bootstrap acting as an identity that trusts another role's session
	other := emulator.AssumedRolePrincipal(e.WorkloadPrincipal.Account, "role-a", "aws-auth")
	wrong := e.SeedIdentity(e.Group, "wrong-trust", "trusts role-a", other.ExactTrust(), map[string][]string{e.Group: {"viewer"}})
	e.startWorkload(t, api, "aws-auth-wrong-trust", workloads.repos, wrong)
	// and the hello-world bootstrap, not wrapped
	e.startWorkload(t, api, "hello", workloads.hello, good)

	t.Run("passes", func(t *testing.T) {
		// when the check of the repos function is created
		r := e.send(t, prov, e.event(cfn.RequestCreate, handler.TypeTrustCheck, "", e.checkProps("aws-auth", good), nil))

		// then it succeeds, naming the principal the function presented
		wantSuccess(t, r, map[string]any{"Principal": e.WorkloadPrincipal.ARN + " (user ID " + e.WorkloadPrincipal.UserID + ")"})
		if r.PhysicalResourceID != "trust-check:"+good {
			t.Errorf("physical ID = %q, want trust-check:%s", r.PhysicalResourceID, good)
		}
	})

	t.Run("wrong trust", func(t *testing.T) {
		// when the check of the function acting as the identity that trusts role-a is created
		r := e.send(t, prov, e.event(cfn.RequestCreate, handler.TypeTrustCheck, "", e.checkProps("aws-auth-wrong-trust", wrong), nil))

		// then it fails before the provisioner's deadline, naming both principals
		wantFailed(t, r, "trust-check:"+wrong,
			"Identity "+wrong+" trusts "+other.ARN+" (user ID "+other.UserID+")",
			"the function ran as "+e.WorkloadPrincipal.ARN+" (user ID "+e.WorkloadPrincipal.UserID+")")
	})

	t.Run("unwrapped function", func(t *testing.T) {
		// when the check of the hello-world function is created
		start := time.Now()
		r := e.send(t, prov, e.event(cfn.RequestCreate, handler.TypeTrustCheck, "", e.checkProps("hello", good), nil))

		// then it fails within seconds, saying how to wrap the handler
		wantFailed(t, r, "trust-check:"+good, "did not answer the trust check (it answered a JSON string): wrap its handler with trustcheck.Wrap: "+handler.WrapHint)
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("answered after %s, want within seconds", d)
		}
	})

	t.Run("delete and unchanged update", func(t *testing.T) {
		// when the check is updated without a change, and deleted
		before := api.calls.Load()
		props := e.checkProps("aws-auth", good)
		r := e.send(t, prov, e.event(cfn.RequestUpdate, handler.TypeTrustCheck, "trust-check:"+good, props, props))
		wantSuccess(t, r, nil)
		r = e.send(t, prov, e.event(cfn.RequestDelete, handler.TypeTrustCheck, "trust-check:"+good, props, nil))
		wantSuccess(t, r, nil)

		// then nothing was invoked
		if n := api.calls.Load() - before; n != 0 {
			t.Errorf("invocations = %d, want 0", n)
		}
	})

	t.Run("other payloads reach the function's own handler", func(t *testing.T) {
		// when the repos function is invoked as usual
		api.mu.Lock()
		f := api.fns[functionARN("aws-auth")]
		api.mu.Unlock()
		out, err := f.Invoke(t.Context(), []byte(`{}`))

		// then it lists the group's repos
		if err != nil || !strings.Contains(string(out), `"count":3`) {
			t.Fatalf("invoke = %s, %v; want the group's 3 repos", out, err)
		}
	})
}
