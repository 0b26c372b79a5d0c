package localrun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/cfn"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/provision"
	"github.com/assumable-identity/cdk-chainguard/lambda/provisioner/handler"
	"github.com/assumable-identity/cdk-chainguard/localrun/template"
	"github.com/assumable-identity/cdk-chainguard/stacks"
)

// The deploy-time trust check in the local run.
//
// The aws-auth stack's Custom::ChainguardTrustCheck is served by the
// provisioner bootstrap, which invokes the repos function through the local
// Lambda API (lambdaapi.go) with the real aws-sdk-go-v2 Lambda client,
// signed with the provisioner role's credentials and allowed by the
// function's AWS::Lambda::Permission; the repos function (wrapped with
// chainguard/trustcheck) exchanges its own credentials for a token at the
// emulator, naming its principal through the AWS stand-in
// (AWS_ENDPOINT_URL_STS), and lists the group's repos. The run reports how
// long each deploy's check took (the Create on the first deploy, the Update
// when the roles change): with the propagation delay, the first attempts
// meet an identity or binding the STS does not know yet, and a later one
// passes.
//
// After the normal lifecycle the run deletes the aws-auth stack and deploys
// it again with a wrong trust: the same template, the same function, with
// only the identity's trusted principal changed (caller identity: the
// session AwsSession "not-<function>"; web identity: the role path
// AwsRolePath "/not-<function>/", so the trusted subject is another role
// ARN). No app setting makes that variant (the trusted session is always
// the function's name), so the run patches the synthesized template, as a
// hand-edited template would be. The provisioner gets a
// PROVISIONER_TRUST_CHECK_BUDGET of the propagation delay + 18 s for that
// deploy (28 s with the default delay): the check gives up at its first
// attempt after the new identity propagated (the attempts come 2, 4, 8 and
// then 16 s apart, and one needs 2 s), 14 s into it with the default delay,
// instead of after a minute, and that last attempt is refused for the trust
// itself (the emulator's "may not assume identity"), not for the
// propagation, as every attempt within a 5 s budget would be. The Create of the check must fail with a reason naming what
// the identity trusts and what the function ran as, and the stack must roll
// back (cloud.deploy: every resource deleted in reverse order, the failed
// check included) to exactly what the emulator held before.

// wrongTrustBudgetMargin is what the wrong-trust deploy's check budget adds
// to the propagation delay: room for one attempt after it, which comes at
// most the provisioner's longest backoff later and needs 2 s.
const wrongTrustBudgetMargin = provision.DefaultPropagationMaxBackoff + 2*time.Second

// Outputs of the provisioner stack the trust check steps read.
const outputProvisionerFunctionName = "ProvisionerFunctionName"

// wrongTrust is what the wrong-trust deploy needs and checks.
type wrongTrust struct {
	stack     *template.Stack // the aws-auth stack as last deployed
	fn, arn   string          // the repos function's name and ARN
	principal Principal       // the repos function's principal
	before    emulator.State  // after the aws-auth stack's delete
}

// reportCheck records and prints the trust check among the events of a
// deploy of the identity stacks, and the invocations it made.
func (r *runner) reportCheck(events []sentEvent, invocations int) error {
	r.lastCheck = CheckTiming{}
	n := 0
	for _, e := range events {
		if e.typ != stacks.TrustCheckResourceType || e.request == cfn.RequestDelete {
			continue
		}
		if e.failed {
			return fmt.Errorf("the trust check %s of stack %s failed, but the deploy did not", e.logicalID, e.stack)
		}
		r.lastCheck.Duration += e.duration
		n++
	}
	if n == 0 {
		fmt.Fprintf(r.out, "     trust check: not run (nothing it proves changed)\n")
		return nil
	}
	r.lastCheck.Invocations = invocations
	fmt.Fprintf(r.out, "     trust check: passed in %s (%d invocations of the function): the time it added to the deploy\n",
		r.lastCheck.Duration.Round(time.Millisecond), invocations)
	return nil
}

// awsAuthStack is the aws-auth stack of the assembly: the one with the
// IdentityId output.
func (r *runner) awsAuthStack() (*template.Stack, error) {
	return r.stackWithOutput(outputIdentityID, "the aws-auth stack")
}

// deleteAwsAuth deletes the aws-auth stack alone (`cdk destroy
// ChainguardAwsAuth`), keeping the provisioner stack, and records what the
// emulator holds then.
func (r *runner) deleteAwsAuth(ctx context.Context) error {
	s, err := r.awsAuthStack()
	if err != nil {
		return err
	}
	fn, err := r.reposFunction()
	if err != nil {
		return err
	}
	r.wrongTrust = wrongTrust{stack: s, fn: fn.name, arn: fn.arn, principal: fn.principal}
	if err := r.cloud.deleteStack(ctx, s.Name); err != nil {
		return err
	}
	st := r.emu.State()
	if _, ok := findIdentity(st, r.res.Identity); ok {
		return fmt.Errorf("identity %s is still there after the delete of stack %s", r.res.Identity, s.Name)
	}
	r.wrongTrust.before = st
	return nil
}

// wrongTrustVariant returns the aws-auth stack with the identity trusting
// another principal than the repos function's, and what the check's reason
// must then say.
func (r *runner) wrongTrustVariant() (*template.Stack, []string, error) {
	w := r.wrongTrust
	raw, err := json.Marshal(w.stack.Template)
	if err != nil {
		return nil, nil, err
	}
	t, err := template.ParseTemplate(raw)
	if err != nil {
		return nil, nil, err
	}
	var ids []string
	for id, res := range t.Resources {
		if res.Type == stacks.IdentityResourceType {
			ids = append(ids, id)
		}
	}
	if len(ids) != 1 {
		return nil, nil, fmt.Errorf("stack %s has %d resources of type %s, want 1", w.stack.Name, len(ids), stacks.IdentityResourceType)
	}
	props := t.Resources[ids[0]].Properties
	p, wrong := w.principal, "not-"+w.fn
	var want []string
	if r.web {
		path := "/"
		if v, ok := props["AwsRolePath"]; ok {
			s, _ := v.(string)
			if !strings.HasPrefix(s, "/") || !strings.HasSuffix(s, "/") {
				return nil, nil, fmt.Errorf("identity %s has AwsRolePath %v, want a literal IAM path", ids[0], v)
			}
			path = s
		}
		newPath := "/" + wrong + path
		props["AwsRolePath"] = newPath
		sub := strings.Replace(p.RoleARN, ":role"+path, ":role"+newPath, 1)
		if sub == p.RoleARN {
			return nil, nil, fmt.Errorf("the repos function's role %s does not have the identity's path %s", p.RoleARN, path)
		}
		fmt.Fprintf(r.out, "     the identity trusts the web identity tokens of role %s instead of %s (AwsRolePath %s)\n", sub, p.RoleARN, newPath)
		want = []string{"sub " + sub, "the function ran as a web identity token with iss " + r.res.FederationIssuer + " and sub " + p.RoleARN}
	} else {
		if s, _ := props["AwsSession"].(string); s != w.fn {
			return nil, nil, fmt.Errorf("identity %s trusts session %v, want the function's name %s", ids[0], props["AwsSession"], w.fn)
		}
		props["AwsSession"] = wrong
		trusted := strings.TrimSuffix(p.ARN, "/"+w.fn) + "/" + wrong
		fmt.Fprintf(r.out, "     the identity trusts %s instead of %s (AwsSession %s)\n", trusted, p.ARN, wrong)
		want = []string{"trusts " + trusted, "the function ran as " + p.ARN}
	}
	// Refused for the trust itself, not for the propagation.
	want = append(want, "may not assume identity")
	v := *w.stack
	v.Template = t
	return &v, want, nil
}

// deployWrongTrust deploys the wrong-trust variant of the aws-auth stack:
// its trust check must fail naming both principals, and the stack must
// roll back.
func (r *runner) deployWrongTrust(ctx context.Context) error {
	variant, want, err := r.wrongTrustVariant()
	if err != nil {
		return err
	}
	prov, ok := r.fns.byName(r.provOutputs[outputProvisionerFunctionName])
	if !ok {
		return fmt.Errorf("the provisioner stack's %s output names %q, which is not a function of the deployment",
			outputProvisionerFunctionName, r.provOutputs[outputProvisionerFunctionName])
	}
	budget := r.emu.PropagationDelay() + wrongTrustBudgetMargin
	if err := r.fns.setEnv(prov.arn, handler.EnvTrustCheckBudget+"="+budget.String()); err != nil {
		return err
	}
	defer func() { _ = r.fns.setEnv(prov.arn) }()
	fmt.Fprintf(r.out, "     provisioner %s=%s (the propagation delay + %s)\n", handler.EnvTrustCheckBudget, budget, wrongTrustBudgetMargin)

	start := time.Now()
	_, err = r.cloud.deploy(ctx, variant)
	var cf *createFailedError
	switch {
	case err == nil:
		return errors.New("the deploy with a wrong trust succeeded: its trust check let it through")
	case !errors.As(err, &cf):
		return fmt.Errorf("the deploy with a wrong trust failed before any resource: %w", err)
	case cf.typ != stacks.TrustCheckResourceType:
		return fmt.Errorf("the deploy with a wrong trust failed at %s (%s), want at the trust check: %w", cf.logicalID, cf.typ, err)
	case cf.rollbackErr != nil:
		return fmt.Errorf("the deploy with a wrong trust failed at the trust check, but its rollback failed: %w", err)
	}
	var fe *failedError
	if !errors.As(cf.err, &fe) {
		return fmt.Errorf("the trust check did not answer FAILED: %w", cf.err)
	}
	for _, s := range want {
		if !strings.Contains(fe.reason, s) {
			return fmt.Errorf("the trust check's reason lacks %q: %s", s, fe.reason)
		}
	}
	r.res.WrongTrustReason = fe.reason
	fmt.Fprintf(r.out, "     CREATE_FAILED %s (%s): %s\n", cf.logicalID, cf.typ, fe.reason)
	fmt.Fprintf(r.out, "     ROLLBACK_COMPLETE after %s: deleted %s\n", time.Since(start).Round(time.Millisecond), strings.Join(cf.rolledBack, ", "))

	// The stack is gone, and so are its function and the function's permission.
	if _, ok := r.cloud.deployed[variant.Name]; ok {
		return fmt.Errorf("stack %s is still deployed after its rollback", variant.Name)
	}
	if _, ok := r.fns.lookup(r.wrongTrust.arn); ok {
		return fmt.Errorf("function %s is still there after the rollback", r.wrongTrust.arn)
	}
	if n := r.fns.statements(r.wrongTrust.arn); n != 0 {
		return fmt.Errorf("function %s still has %d permission statements after the rollback", r.wrongTrust.arn, n)
	}
	return nil
}

// checkRollback checks the emulator holds exactly what it held before the
// wrong-trust deploy: the identity, its binding and (created-group mode)
// the group it created are gone.
func (r *runner) checkRollback(context.Context) error {
	if diff := diffState(r.wrongTrust.before, r.emu.State()); diff != "" {
		return fmt.Errorf("after the rollback the emulator does not hold what it held before the wrong-trust deploy: %s", diff)
	}
	return nil
}
