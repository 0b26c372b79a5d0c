// Command provisioner is the CloudFormation custom resource handler that
// creates, updates and deletes Chainguard groups and assumable identities,
// and runs the deploy-time trust checks of workload functions (it invokes
// them).
// It acts as its own Chainguard assumable identity with the function's AWS
// role credentials; no Chainguard secret is stored anywhere. The property
// contract and the behaviour are documented in package handler.
//
// It always starts: a configuration problem fails every event with a reason
// instead of leaving CloudFormation without an answer.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	lambdasvc "github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/assumable-identity/cdk-chainguard/chainguard/token"
	"github.com/assumable-identity/cdk-chainguard/lambda/provisioner/handler"
)

func main() {
	logger := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	cfg := handler.Config{Logger: logger}
	margin, marginErr := handler.MarginFromEnv(os.LookupEnv)
	cfg.Margin = margin
	budget, budgetErr := handler.TrustCheckBudgetFromEnv(os.LookupEnv)
	cfg.TrustCheckBudget = budget
	trust, trustErr := token.ParseTrust(os.Getenv(handler.EnvTrust))
	if trustErr != nil {
		trustErr = fmt.Errorf("%s: %w", handler.EnvTrust, trustErr)
	}
	cfg.Trust = trust

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	awsCfg, awsErr := config.LoadDefaultConfig(ctx)
	cancel()
	if awsErr != nil {
		awsErr = fmt.Errorf("load the AWS configuration: %w", awsErr)
	} else {
		cfg.Credentials = awsCfg.Credentials
		cfg.STS = sts.NewFromConfig(awsCfg)
		cfg.Federation = iam.NewFromConfig(awsCfg)
		cfg.Lambda = lambdasvc.NewFromConfig(awsCfg)
	}

	setupErr := errors.Join(marginErr, budgetErr, trustErr, awsErr)
	if setupErr != nil {
		logger.Error("start-up failed: every event will fail", "step", "init", "error", setupErr.Error())
	}
	lambda.Start(handler.Wrap(handler.New(cfg, setupErr).Handle, handler.ResponseClient(), logger, cfg.Margin))
}
