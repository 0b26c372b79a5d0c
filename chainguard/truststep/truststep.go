// Package truststep is the one-time trust step of the provisioner stack, as
// a user performs it with chainctl: read the identity spec the stack prints
// (output TrustSpec, an aws_identity for the caller-identity trust or a
// claim_match for the web-identity trust) and the command beside it (output
// TrustCommand: the parent group and the role), check them, then create the
// identity under the parent group and bind the role on that group through
// the SDK's IAM client.
//
// The local run (package localrun) and the standalone emulator's control
// endpoint (chainguard/emulator/cmd/chainguard-emulator) both perform it
// with this package, so a stack output that one accepts the other accepts.
package truststep

import (
	"context"
	"fmt"
	"strings"
	"time"

	iam "chainguard.dev/sdk/proto/platform/iam/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/assumable-identity/cdk-chainguard/chainguard/validate"
)

// Output names of the provisioner stack that carry the one-time trust step,
// and those the trust step is checked against.
const (
	OutputTrustCommand       = "TrustCommand"
	OutputTrustSpec          = "TrustSpec"
	OutputProvisionerRoleArn = "ProvisionerRoleArn"
	OutputWebIdentityIssuer  = "WebIdentityIssuer"
)

// The trust step commands the provisioner stack prints: for the
// caller-identity trust (aws_identity) and for the web-identity trust
// (claim_match, `chainctl iam identities create NAME --identity-issuer=...
// --subject=...`, as in Chainguard's AWS guide aws-identity-oidc).
const (
	awsRoleCommand = "chainctl iam identities create aws role "
	claimCommand   = "chainctl iam identities create "
)

// rpcTimeout bounds every Chainguard RPC of the trust step.
const rpcTimeout = 10 * time.Second

// Request is the one-time trust step: the identity to create (the
// TrustSpec), the group to create it in and the role to bind on that group
// (the --parent and --role of TrustCommand).
type Request struct {
	Identity *iam.Identity
	Parent   string
	Role     string
}

// ParseSpec parses and checks an identity spec as the provisioner stack
// prints it in its TrustSpec output, on its own: a valid name and either
//   - an aws_identity with an exact account, assumed-role ARN and user ID
//     that name the same principal (account, session), or
//   - a claim_match with an exact issuer (an account's outbound identity
//     federation issuer), subject (an IAM role ARN) and audience (a
//     Chainguard issuer URL), and nothing else.
//
// Messages name the output (TrustSpec) and the offending field.
func ParseSpec(spec string) (*iam.Identity, error) {
	var id iam.Identity
	if err := protojson.Unmarshal([]byte(spec), &id); err != nil {
		return nil, fmt.Errorf("output %s is not a Chainguard identity spec: %w", OutputTrustSpec, err)
	}
	if err := validate.Name("name of "+OutputTrustSpec, id.GetName()); err != nil {
		return nil, err
	}
	if cm := id.GetClaimMatch(); cm != nil {
		if err := checkClaimMatch(cm); err != nil {
			return nil, err
		}
		return &id, nil
	}
	aws := id.GetAwsIdentity()
	if aws == nil {
		return nil, fmt.Errorf("output %s has neither an aws_identity nor a claim_match", OutputTrustSpec)
	}
	arn, err := validate.AssumedRoleARN(aws.GetArn())
	if err != nil {
		return nil, fmt.Errorf("output %s: arn: %w", OutputTrustSpec, err)
	}
	if err := validate.UserID(aws.GetUserId()); err != nil {
		return nil, fmt.Errorf("output %s: user_id: %w", OutputTrustSpec, err)
	}
	if aws.GetAwsAccount() != arn.Account {
		return nil, fmt.Errorf("output %s: aws_account %q is not the account of the arn %q", OutputTrustSpec, aws.GetAwsAccount(), arn.Account)
	}
	if session := strings.SplitN(aws.GetUserId(), ":", 2)[1]; session != arn.Session {
		return nil, fmt.Errorf("output %s: the user_id's session %q is not the arn's %q", OutputTrustSpec, session, arn.Session)
	}
	return &id, nil
}

// checkClaimMatch checks the claim_match of the web-identity trust: exact
// issuer, subject and audience, no patterns and no other claims.
func checkClaimMatch(cm *iam.Identity_ClaimMatch) error {
	if cm.GetIssuer() == "" || cm.GetSubject() == "" || cm.GetAudiencePattern() != "" || len(cm.GetClaims()) > 0 || len(cm.GetClaimPatterns()) > 0 {
		return fmt.Errorf("output %s: the claim_match %v is not an exact issuer, subject and audience", OutputTrustSpec, cm)
	}
	if err := validate.FederationIssuer(cm.GetIssuer()); err != nil {
		return fmt.Errorf("output %s: issuer: %w", OutputTrustSpec, err)
	}
	if _, err := validate.IAMRoleARN(cm.GetSubject()); err != nil {
		return fmt.Errorf("output %s: subject: %w", OutputTrustSpec, err)
	}
	return validate.ServiceURL("audience of "+OutputTrustSpec, cm.GetAudience())
}

// FromOutputs reads the trust step from the provisioner stack's outputs
// and checks that the command and the spec describe the same principal:
// for an aws_identity the account, partition, role name, role unique ID
// and identity name; for a claim_match the issuer (also the stack's WebIdentityIssuer
// output), the subject (also its ProvisionerRoleArn output) and the name,
// and that the spec asks for nothing the command cannot say (patterns,
// claims; the audience is the spec's, the command leaves it to
// Chainguard's default).
func FromOutputs(outputs map[string]string) (Request, error) {
	cmd, ok := outputs[OutputTrustCommand]
	if !ok {
		return Request{}, fmt.Errorf("the provisioner stack has no %s output", OutputTrustCommand)
	}
	spec, ok := outputs[OutputTrustSpec]
	if !ok {
		return Request{}, fmt.Errorf("the provisioner stack has no %s output", OutputTrustSpec)
	}
	id, err := ParseSpec(spec)
	if err != nil {
		return Request{}, err
	}
	if cm := id.GetClaimMatch(); cm != nil {
		req, flags, err := parseCommand(cmd, claimCommand, id)
		if err != nil {
			return Request{}, err
		}
		for _, c := range []check{
			{"the command's --identity-issuer", cm.GetIssuer(), flags["identity-issuer"]},
			{"output " + OutputWebIdentityIssuer, cm.GetIssuer(), outputs[OutputWebIdentityIssuer]},
			{"the command's --subject", cm.GetSubject(), flags["subject"]},
			{"output " + OutputProvisionerRoleArn, cm.GetSubject(), outputs[OutputProvisionerRoleArn]},
			{"the command's name", id.GetName(), flags["name"]},
		} {
			if c.spec != c.other {
				return Request{}, fmt.Errorf("output %s disagrees with %s: the spec says %q where %s is %q", OutputTrustSpec, c.what, c.spec, c.what, c.other)
			}
		}
		return req, nil
	}
	aws := id.GetAwsIdentity()
	req, flags, err := parseCommand(cmd, awsRoleCommand, id)
	if err != nil {
		return Request{}, err
	}
	arn, _ := validate.AssumedRoleARN(aws.GetArn()) // checked by ParseSpec
	for _, c := range []check{
		{"--aws-account-id", aws.GetAwsAccount(), flags["aws-account-id"]},
		{"--aws-partition", arn.Partition, flags["aws-partition"]},
		{"--aws-role-name", arn.Role, flags["aws-role-name"]},
		{"--aws-role-id", strings.SplitN(aws.GetUserId(), ":", 2)[0], flags["aws-role-id"]},
		{"name", id.GetName(), flags["name"]},
	} {
		if c.spec != c.other {
			return Request{}, fmt.Errorf("outputs %s and %s disagree: the spec says %q where the command's %s is %q",
				OutputTrustSpec, OutputTrustCommand, c.spec, c.what, c.other)
		}
	}
	return req, nil
}

// check is one value the spec and another source must agree on.
type check struct{ what, spec, other string }

// parseCommand parses the trust step command (prefix, then the identity's
// name and --flags) and reads its --parent and --role.
func parseCommand(cmd, prefix string, id *iam.Identity) (Request, map[string]string, error) {
	flags, err := commandFlags(cmd, prefix)
	if err != nil {
		return Request{}, nil, fmt.Errorf("output %s: %w", OutputTrustCommand, err)
	}
	req := Request{Identity: id, Parent: flags["parent"], Role: flags["role"]}
	if err := validate.UIDP("--parent of "+OutputTrustCommand, req.Parent); err != nil {
		return Request{}, nil, err
	}
	if req.Role == "" {
		return Request{}, nil, fmt.Errorf("output %s has no --role", OutputTrustCommand)
	}
	return req, flags, nil
}

// commandFlags parses `<prefix>NAME --k=v ... [-o id]` into its --flags (and
// "name").
func commandFlags(cmd, prefix string) (map[string]string, error) {
	rest, ok := strings.CutPrefix(cmd, prefix)
	if !ok {
		return nil, fmt.Errorf("%q does not start with %q", cmd, prefix)
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 || strings.HasPrefix(fields[0], "-") {
		return nil, fmt.Errorf("%q names no identity", cmd)
	}
	flags := map[string]string{"name": fields[0]}
	for i := 1; i < len(fields); i++ {
		f, ok := strings.CutPrefix(fields[i], "--")
		if !ok {
			if fields[i] == "-o" && i+1 < len(fields) {
				i++
				continue
			}
			return nil, fmt.Errorf("unexpected argument %q in %q", fields[i], cmd)
		}
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("flag --%s in %q has no =value", f, cmd)
		}
		flags[k] = v
	}
	return flags, nil
}

// Create performs the trust step as chainctl does, through the SDK's IAM
// client with the user's token: create the identity under the parent
// group, then bind the role (looked up by name) on that group. It returns
// the identity's UIDP. Errors wrap the gRPC status of the failed call.
func Create(ctx context.Context, apiURL, userToken string, req Request) (string, error) {
	dctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	clients, err := iam.NewClients(dctx, apiURL, userToken)
	if err != nil {
		return "", fmt.Errorf("connect to %s: %w", apiURL, err)
	}
	defer func() { _ = clients.Close() }()

	cctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	created, err := clients.Identities().Create(cctx, &iam.CreateIdentityRequest{ParentId: req.Parent, Identity: req.Identity})
	if err != nil {
		return "", fmt.Errorf("create identity %q in group %s: %w", req.Identity.GetName(), req.Parent, err)
	}
	lctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	roles, err := clients.Roles().List(lctx, &iam.RoleFilter{Name: req.Role})
	if err != nil {
		return "", fmt.Errorf("look up role %q: %w", req.Role, err)
	}
	if len(roles.GetItems()) != 1 {
		return "", fmt.Errorf("look up role %q: found %d roles, want 1", req.Role, len(roles.GetItems()))
	}
	bctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	if _, err := clients.RoleBindings().Create(bctx, &iam.CreateRoleBindingRequest{
		Parent:      req.Parent,
		RoleBinding: &iam.RoleBinding{Identity: created.GetId(), Role: roles.GetItems()[0].GetId()},
	}); err != nil {
		return "", fmt.Errorf("bind role %q to identity %s on group %s: %w", req.Role, created.GetId(), req.Parent, err)
	}
	return created.GetId(), nil
}
