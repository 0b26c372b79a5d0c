package localrun

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator/emulatortest"
	"github.com/assumable-identity/cdk-chainguard/internal/lambdabuild"
	"github.com/assumable-identity/cdk-chainguard/internal/rie"
)

// TestLambdaAPI drives the local Lambda API with the real aws-sdk-go-v2
// Lambda client, signed with credentials the emulator registered for role
// sessions: Invoke runs the function under its RIE for a caller whose role
// the function's resource-based policy names, and answers everything else
// as Lambda does.
func TestLambdaAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a bootstrap and the RIE: skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bootstrap, err := lambdabuild.Build(ctx, lambdabuild.Options{Package: "./internal/rie/testdata/fn", OutDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	riePath, err := rie.Binary(ctx, "")
	if err != nil {
		t.Fatal(err)
	}

	// given the emulator, and a function of role "fn-role" deployed as "fn"
	emu := emulatortest.Start(t, emulator.Options{})
	register := func(p Principal) (aws.Credentials, error) {
		return emu.RegisterAWSPrincipal(emulator.AWSPrincipal{Account: p.Account, ARN: p.ARN, UserID: p.UserID, RoleARN: p.RoleARN}), nil
	}
	principal := func(role, path, session string) Principal {
		return Principal{
			Account: localAccount,
			ARN:     "arn:aws:sts::" + localAccount + ":assumed-role/" + role + "/" + session,
			UserID:  roleID("S", role) + ":" + session,
			RoleARN: "arn:aws:iam::" + localAccount + ":role" + path + role,
		}
	}
	fs := newFunctions(t.TempDir(), t.TempDir(), riePath, register, nil, testWriter{t})
	t.Cleanup(fs.stopAll)
	fnARN := functionARN(localEnv(), "fn")
	fs.byARN[fnARN] = &function{name: "fn", arn: fnARN, bootstrap: bootstrap, timeout: 3 * time.Second, principal: principal("fn-role", "/", "fn")}
	ln, url, err := listenLocal("the Lambda API")
	if err != nil {
		t.Fatal(err)
	}
	api := serveLambdaAPI(ln, url, fs, emu.VerifyAWSRequest)
	t.Cleanup(api.close)

	// and two callers: the provisioner's role (with a path) and another role
	prov := principal("prov-role", "/service/", "prov")
	other := principal("other-role", "/", "other")
	client := func(p Principal) *lambda.Client {
		creds, _ := register(p)
		return lambda.New(lambda.Options{
			Region: localRegion, BaseEndpoint: aws.String(api.url),
			Credentials: credentials.StaticCredentialsProvider{Value: creds},
		})
	}
	provClient, otherClient := client(prov), client(other)
	invoke := func(c *lambda.Client, fn, payload string) (*lambda.InvokeOutput, error) {
		return c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(fn), Payload: []byte(payload)})
	}
	wantCode := func(t *testing.T, err error, code string) {
		t.Helper()
		var api smithy.APIError
		if !errors.As(err, &api) || api.ErrorCode() != code {
			t.Fatalf("Invoke error = %v, want %s", err, code)
		}
	}
	echo := `{"action":"echo","value":"hi"}`

	t.Run("no permission: AccessDeniedException", func(t *testing.T) {
		_, err := invoke(provClient, fnARN, echo)
		wantCode(t, err, "AccessDeniedException")
		if !strings.Contains(err.Error(), "User: "+prov.ARN+" is not authorized to perform: lambda:InvokeFunction on resource: "+fnARN) {
			t.Errorf("message = %v, want Lambda's, naming the caller and the function", err)
		}
	})

	// when the function's policy lets the provisioner's role invoke it, as
	// the trust check's AWS::Lambda::Permission does
	if err := fs.addPermission("stmt", permission{function: fnARN, principal: prov.RoleARN, action: "lambda:InvokeFunction"}); err != nil {
		t.Fatal(err)
	}

	t.Run("the permitted role invokes by ARN and by name", func(t *testing.T) {
		for _, fn := range []string{fnARN, "fn"} {
			out, err := invoke(provClient, fn, echo)
			if err != nil || out.StatusCode != 200 || out.FunctionError != nil || string(out.Payload) != `{"value":"hi"}` {
				t.Fatalf("Invoke(%s) = %+v, %v; want 200 {\"value\":\"hi\"}", fn, out, err)
			}
		}
	})
	t.Run("another role: AccessDeniedException", func(t *testing.T) {
		_, err := invoke(otherClient, fnARN, echo)
		wantCode(t, err, "AccessDeniedException")
	})
	t.Run("an account principal admits no caller", func(t *testing.T) {
		if err := fs.addPermission("account", permission{function: fnARN, principal: localAccount, action: "lambda:InvokeFunction"}); err != nil {
			t.Fatal(err)
		}
		defer fs.removePermission("account")
		_, err := invoke(otherClient, fnARN, echo)
		wantCode(t, err, "AccessDeniedException")
	})
	t.Run("unknown function: ResourceNotFoundException", func(t *testing.T) {
		_, err := invoke(provClient, functionARN(localEnv(), "nope"), echo)
		var nf *lambdatypes.ResourceNotFoundException
		if !errors.As(err, &nf) || !strings.Contains(aws.ToString(nf.Message), "Function not found: ") || aws.ToString(nf.Type) != "User" {
			t.Fatalf("Invoke error = %v, want a typed ResourceNotFoundException with Lambda's message", err)
		}
	})
	t.Run("function error: 200 with X-Amz-Function-Error and the error payload", func(t *testing.T) {
		out, err := invoke(provClient, fnARN, `{"action":"error"}`)
		if err != nil || aws.ToString(out.FunctionError) != "Unhandled" {
			t.Fatalf("Invoke = %+v, %v; want a function error", out, err)
		}
		var p struct{ ErrorType, ErrorMessage string }
		if json.Unmarshal(out.Payload, &p) != nil || p.ErrorMessage != "asked to fail" || p.ErrorType == "" {
			t.Fatalf("payload = %s, want Lambda's error payload", out.Payload)
		}
	})
	t.Run("signed with a wrong secret: InvalidSignatureException", func(t *testing.T) {
		creds, _ := register(prov)
		creds.SecretAccessKey = "wrong" + creds.SecretAccessKey[5:]
		c := lambda.New(lambda.Options{Region: localRegion, BaseEndpoint: aws.String(api.url), Credentials: credentials.StaticCredentialsProvider{Value: creds}})
		_, err := invoke(c, fnARN, echo)
		wantCode(t, err, "InvalidSignatureException")
	})
	t.Run("unknown credentials: UnrecognizedClientException", func(t *testing.T) {
		c := lambda.New(lambda.Options{Region: localRegion, BaseEndpoint: aws.String(api.url),
			Credentials: credentials.StaticCredentialsProvider{Value: aws.Credentials{AccessKeyID: "ASIAUNKNOWNUNKNOWN12", SecretAccessKey: "x", SessionToken: "y"}}})
		_, err := invoke(c, fnARN, echo)
		wantCode(t, err, "UnrecognizedClientException")
	})
	t.Run("concurrent invocations of two functions", func(t *testing.T) {
		// as the provisioner invokes a function while the deploy loop waits
		// on the provisioner: the lock is not held during an invocation
		fn2 := functionARN(localEnv(), "fn2")
		fs.mu.Lock()
		fs.byARN[fn2] = &function{name: "fn2", arn: fn2, bootstrap: bootstrap, timeout: 3 * time.Second, principal: principal("fn-role", "/", "fn2")}
		fs.mu.Unlock()
		if err := fs.addPermission("stmt2", permission{function: "fn2", principal: prov.RoleARN, action: "lambda:InvokeFunction"}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, fn := range []string{fnARN, fn2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = invoke(provClient, fn, `{"action":"sleep","value":"1s"}`)
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 1900*time.Millisecond {
			t.Errorf("two 1s invocations took %s, want them to overlap", d)
		}
	})
	t.Run("permission removed", func(t *testing.T) {
		fs.removePermission("stmt")
		_, err := invoke(provClient, fnARN, echo)
		wantCode(t, err, "AccessDeniedException")
	})
	if n := api.invocations.Load(); n != 5 {
		t.Errorf("invocations = %d, want 5 (only the permitted ones reach a function)", n)
	}
}
