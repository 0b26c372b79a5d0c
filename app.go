// Command cdk-chainguard is the CDK app (run by the CDK CLI through cdk.json):
// it reads the CDK context, validates it and synthesizes the provisioner
// stack and the aws-auth stack. See README.md for the context keys.
package main

import (
	"fmt"
	"os"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/jsii-runtime-go"

	"github.com/assumable-identity/cdk-chainguard/stacks"
)

func main() {
	err := run()
	jsii.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run() error {
	app := awscdk.NewApp(nil)
	if err := stacks.NewApp(app); err != nil {
		return err
	}
	return stacks.Synth(app)
}
