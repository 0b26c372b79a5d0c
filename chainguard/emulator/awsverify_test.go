package emulator_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator/emulatortest"
)

// TestVerifyAWSRequest checks that a stand-in of another AWS API can
// authenticate its callers with the emulator's SigV4 verification: a call
// of the real aws-sdk-go-v2 Lambda client (its path holds the escaped
// function ARN, its body the payload) verifies as the registered principal,
// and what AWS refuses is refused with AWS's code and status.
func TestVerifyAWSRequest(t *testing.T) {
	e := emulatortest.Start(t, emulator.Options{})
	p := emulator.AssumedRolePrincipal("111122223333", "provisioner", "fn")
	creds := e.RegisterAWSPrincipal(p)

	// given a Lambda endpoint that verifies its callers for service "lambda"
	var (
		mu   sync.Mutex
		got  emulator.AWSPrincipal
		errs []error
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		who, err := e.VerifyAWSRequest(r, "lambda", body)
		mu.Lock()
		got, errs = who, append(errs, err)
		mu.Unlock()
		if err != nil {
			w.Header().Set("X-Amzn-Errortype", "Refused")
			w.WriteHeader(http.StatusForbidden)
			return
		}
		_, _ = w.Write([]byte(`{}`))
	}))
	t.Cleanup(srv.Close)
	last := func() (emulator.AWSPrincipal, error) {
		mu.Lock()
		defer mu.Unlock()
		return got, errs[len(errs)-1]
	}
	client := func(c aws.Credentials) *lambda.Client {
		return lambda.New(lambda.Options{
			Region: "us-east-1", BaseEndpoint: aws.String(srv.URL),
			Credentials: credentials.StaticCredentialsProvider{Value: c},
		})
	}
	const fnARN = "arn:aws:lambda:us-east-1:111122223333:function:aws-auth"

	t.Run("the Lambda client's Invoke verifies as the registered principal", func(t *testing.T) {
		// when the real client invokes a function by ARN with a payload
		_, err := client(creds).Invoke(testCtx(t), &lambda.InvokeInput{FunctionName: aws.String(fnARN), Payload: []byte(`{"a":1}`)})

		// then the signature verifies, and the principal carries its role's ARN
		who, verr := last()
		if err != nil || verr != nil {
			t.Fatalf("Invoke = %v, verify = %v; want both nil", err, verr)
		}
		want := p
		want.RoleARN = "arn:aws:iam::111122223333:role/provisioner"
		if who != want {
			t.Errorf("principal = %+v, want %+v", who, want)
		}
	})

	t.Run("unknown credentials", func(t *testing.T) {
		other := aws.Credentials{AccessKeyID: "ASIAUNKNOWNUNKNOWN12", SecretAccessKey: "x", SessionToken: "y"}
		_, _ = client(other).Invoke(testCtx(t), &lambda.InvokeInput{FunctionName: aws.String(fnARN)})
		wantAuthError(t, last, http.StatusForbidden, "InvalidClientTokenId")
	})

	// sign sends a POST of body to the function's invocations path, signed
	// for service over signedBody.
	sign := func(t *testing.T, service string, body, signedBody []byte) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/2015-03-31/functions/"+strings.ReplaceAll(fnARN, ":", "%3A")+"/invocations", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(signedBody)
		if err := v4.NewSigner().SignHTTP(testCtx(t), creds, req, hex.EncodeToString(sum[:]), service, "us-east-1", time.Now()); err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
	}
	t.Run("signed by hand over the same body", func(t *testing.T) {
		sign(t, "lambda", []byte(`{"a":1}`), []byte(`{"a":1}`))
		if _, err := last(); err != nil {
			t.Fatalf("verify = %v, want nil", err)
		}
	})
	t.Run("body changed after signing", func(t *testing.T) {
		sign(t, "lambda", []byte(`{"a":2}`), []byte(`{"a":1}`))
		wantAuthError(t, last, http.StatusForbidden, "SignatureDoesNotMatch")
	})
	t.Run("signed for another service", func(t *testing.T) {
		sign(t, "sts", []byte(`{}`), []byte(`{}`))
		wantAuthError(t, last, http.StatusForbidden, "SignatureDoesNotMatch")
	})
	t.Run("not signed", func(t *testing.T) {
		resp, err := http.Post(srv.URL+"/2015-03-31/functions/aws-auth/invocations", "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		wantAuthError(t, last, http.StatusForbidden, "MissingAuthenticationToken")
	})
}

func wantAuthError(t *testing.T, last func() (emulator.AWSPrincipal, error), status int, code string) {
	t.Helper()
	_, err := last()
	var ae *emulator.AWSAuthError
	if !errors.As(err, &ae) || ae.StatusCode != status || ae.Code != code {
		t.Fatalf("verify = %v, want an AWSAuthError %d %s", err, status, code)
	}
}
