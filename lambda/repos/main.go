// Command repos is the reference workload: a Lambda function that acts as a
// Chainguard assumable identity with its own AWS role credentials (no
// Chainguard secret anywhere) and returns the registry repositories of a
// group. The logic and the environment contract are in package handler.
//
// A configuration error fails the function's init: it is logged and reported
// to the Lambda Runtime API, so the invoke's error names the variable.
//
// The handler is wrapped with chainguard/trustcheck, so that the stack's
// deploy-time trust check (a Custom::ChainguardTrustCheck the provisioner
// serves by invoking this function) is answered; every other payload goes
// to the handler untouched.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/assumable-identity/cdk-chainguard/chainguard/trustcheck"
	"github.com/assumable-identity/cdk-chainguard/lambda/repos/handler"
)

func main() {
	logger := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	h, awsCfg, err := setup(logger)
	if err != nil {
		logger.Error("start-up failed", "step", "init", "error", err.Error())
		if rerr := reportInitError(err); rerr != nil {
			logger.Error("report the start-up failure to the Lambda Runtime API", "error", rerr.Error())
		}
		os.Exit(1)
	}
	lambda.Start(trustcheck.Wrap(lambda.NewHandler(h.Handle), trustcheck.FromEnv(awsCfg)))
}

func setup(logger *slog.Logger) (*handler.Handler, aws.Config, error) {
	cfg, err := handler.ConfigFromEnv(os.LookupEnv)
	if err != nil {
		return nil, aws.Config{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, aws.Config{}, fmt.Errorf("load the AWS configuration: %w", err)
	}
	h, err := handler.New(cfg, awsCfg, logger)
	return h, awsCfg, err
}

// reportInitError tells the Lambda Runtime API why init failed, so the
// invoke's error carries the reason rather than "Runtime exited".
func reportInitError(cause error) error {
	api := os.Getenv("AWS_LAMBDA_RUNTIME_API")
	if api == "" {
		return fmt.Errorf("AWS_LAMBDA_RUNTIME_API is not set (not running in Lambda?)")
	}
	const errorType = "Runtime.InvalidConfiguration"
	body, err := json.Marshal(map[string]string{"errorMessage": cause.Error(), "errorType": errorType})
	if err != nil {
		return fmt.Errorf("encode the init error: %w", err)
	}
	req, err := http.NewRequest(http.MethodPost, "http://"+api+"/2018-06-01/runtime/init/error", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("build the init error request: %w", err)
	}
	req.Header.Set("Lambda-Runtime-Function-Error-Type", errorType)
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("post the init error: %w", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("post the init error: HTTP %d", resp.StatusCode)
	}
	return nil
}
