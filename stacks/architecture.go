package stacks

import (
	"fmt"

	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
)

// Architecture is the instruction set the app's Lambda functions run on, as
// Lambda names it. The zero value means ArchitectureARM64.
type Architecture string

// Lambda architectures, as the CDK context key "architecture"
// (CtxArchitecture) names them.
const (
	// ArchitectureARM64, the default: Graviton; the bootstraps are built
	// with GOARCH=arm64.
	ArchitectureARM64 Architecture = "arm64"
	// ArchitectureX86_64: for accounts, regions or CloudFormation engines
	// (emulators included) that run only x86_64 functions; the bootstraps
	// are built with GOARCH=amd64.
	ArchitectureX86_64 Architecture = "x86_64"
)

// orDefault returns a, or ArchitectureARM64 for the zero value.
func (a Architecture) orDefault() Architecture {
	if a == "" {
		return ArchitectureARM64
	}
	return a
}

// validate checks that a (after orDefault) is a Lambda architecture.
func (a Architecture) validate() error {
	switch a.orDefault() {
	case ArchitectureARM64, ArchitectureX86_64:
		return nil
	}
	hint := ""
	switch a {
	case "amd64", "x86-64", "x64":
		hint = fmt.Sprintf(" (Lambda's name for it is %q)", ArchitectureX86_64)
	case "aarch64":
		hint = fmt.Sprintf(" (Lambda's name for it is %q)", ArchitectureARM64)
	}
	return fmt.Errorf("%q is not a Lambda architecture: use %q (the default) or %q%s",
		string(a), ArchitectureARM64, ArchitectureX86_64, hint)
}

// goarch returns the GOARCH that builds for a (after orDefault); a must be
// valid.
func (a Architecture) goarch() string {
	if a.orDefault() == ArchitectureX86_64 {
		return "amd64"
	}
	return "arm64"
}

// lambda returns the CDK architecture of a (after orDefault); a must be
// valid.
func (a Architecture) lambda() awslambda.Architecture {
	if a.orDefault() == ArchitectureX86_64 {
		return awslambda.Architecture_X86_64()
	}
	return awslambda.Architecture_ARM_64()
}

// checkedArchitecture returns a (after orDefault) and records a problem
// against prop when it is not a Lambda architecture; the stack is then built
// for ArchitectureARM64, so that synth reports every problem at once.
func checkedArchitecture(p *problems, prop string, a Architecture) Architecture {
	if err := a.validate(); err != nil {
		p.add(prop, err)
		return ArchitectureARM64
	}
	return a.orDefault()
}
