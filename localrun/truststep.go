package localrun

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	iam "chainguard.dev/sdk/proto/platform/iam/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/assumable-identity/cdk-chainguard/chainguard/validate"
)

// Output names of the provisioner stack that carry the one-time trust step,
// and the role whose principal it trusts.
const (
	outputTrustCommand       = "TrustCommand"
	outputTrustSpec          = "TrustSpec"
	outputProvisionerRoleArn = "ProvisionerRoleArn"
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

// trustRequest is the one-time trust step as printed by the provisioner
// stack: the identity spec (TrustSpec) and where and with which role to
// create it (the --parent and --role flags of TrustCommand).
type trustRequest struct {
	identity *iam.Identity
	parent   string
	role     string
}

// parseTrustStep reads the trust step from the provisioner stack's outputs
// and checks that the command and the spec describe the same principal:
// an aws_identity (caller-identity trust) or a claim_match (web-identity
// trust).
func parseTrustStep(outputs map[string]string) (trustRequest, error) {
	cmd, ok := outputs[outputTrustCommand]
	if !ok {
		return trustRequest{}, fmt.Errorf("the provisioner stack has no %s output", outputTrustCommand)
	}
	spec, ok := outputs[outputTrustSpec]
	if !ok {
		return trustRequest{}, fmt.Errorf("the provisioner stack has no %s output", outputTrustSpec)
	}
	var id iam.Identity
	if err := protojson.Unmarshal([]byte(spec), &id); err != nil {
		return trustRequest{}, fmt.Errorf("output %s is not a Chainguard identity spec: %w", outputTrustSpec, err)
	}
	if cm := id.GetClaimMatch(); cm != nil {
		return parseClaimMatchStep(outputs, cmd, &id, cm)
	}
	aws := id.GetAwsIdentity()
	if aws == nil {
		return trustRequest{}, fmt.Errorf("output %s has neither an aws_identity nor a claim_match", outputTrustSpec)
	}
	req, flags, err := parseCommand(cmd, awsRoleCommand, &id)
	if err != nil {
		return trustRequest{}, err
	}
	// The command and the spec must describe the same principal.
	arn, err := validate.AssumedRoleARN(aws.GetArn())
	if err != nil {
		return trustRequest{}, fmt.Errorf("output %s: %w", outputTrustSpec, err)
	}
	if err := validate.UserID(aws.GetUserId()); err != nil {
		return trustRequest{}, fmt.Errorf("output %s: %w", outputTrustSpec, err)
	}
	checks := []struct{ flag, spec, cmd string }{
		{"--aws-account-id", aws.GetAwsAccount(), flags["aws-account-id"]},
		{"--aws-account-id", arn.Account, flags["aws-account-id"]},
		{"--aws-role-name", arn.Role, flags["aws-role-name"]},
		{"--aws-role-id", strings.SplitN(aws.GetUserId(), ":", 2)[0], flags["aws-role-id"]},
		{"name", id.GetName(), flags["name"]},
	}
	for _, c := range checks {
		if c.spec != c.cmd {
			return trustRequest{}, fmt.Errorf("outputs %s and %s disagree: the spec says %q where the command's %s is %q",
				outputTrustSpec, outputTrustCommand, c.spec, c.flag, c.cmd)
		}
	}
	if session := strings.SplitN(aws.GetUserId(), ":", 2)[1]; session != arn.Session {
		return trustRequest{}, fmt.Errorf("output %s: the user_id's session %q is not the arn's %q", outputTrustSpec, session, arn.Session)
	}
	return req, nil
}

// parseClaimMatchStep checks the web-identity trust step: the command's
// --identity-issuer and --subject are the spec's exact issuer and subject,
// the issuer is the stack's WebIdentityIssuer output and the subject its
// ProvisionerRoleArn, and the spec asks for nothing the command cannot say
// (patterns, claims). The audience is the spec's (the command leaves it to
// Chainguard's default).
func parseClaimMatchStep(outputs map[string]string, cmd string, id *iam.Identity, cm *iam.Identity_ClaimMatch) (trustRequest, error) {
	if cm.GetIssuer() == "" || cm.GetSubject() == "" || cm.GetAudiencePattern() != "" || len(cm.GetClaims()) > 0 || len(cm.GetClaimPatterns()) > 0 {
		return trustRequest{}, fmt.Errorf("output %s: the claim_match %v is not an exact issuer, subject and audience", outputTrustSpec, cm)
	}
	if err := validate.FederationIssuer(cm.GetIssuer()); err != nil {
		return trustRequest{}, fmt.Errorf("output %s: %w", outputTrustSpec, err)
	}
	if !iamRoleARN.MatchString(cm.GetSubject()) {
		return trustRequest{}, fmt.Errorf("output %s: subject %q is not an IAM role ARN (arn:PARTITION:iam::ACCOUNT:role/PATH/NAME)", outputTrustSpec, cm.GetSubject())
	}
	if err := validate.ServiceURL("audience of "+outputTrustSpec, cm.GetAudience()); err != nil {
		return trustRequest{}, err
	}
	req, flags, err := parseCommand(cmd, claimCommand, id)
	if err != nil {
		return trustRequest{}, err
	}
	checks := []struct{ what, spec, other string }{
		{"the command's --identity-issuer", cm.GetIssuer(), flags["identity-issuer"]},
		{"output " + outputWebIdentityIssuer, cm.GetIssuer(), outputs[outputWebIdentityIssuer]},
		{"the command's --subject", cm.GetSubject(), flags["subject"]},
		{"output " + outputProvisionerRoleArn, cm.GetSubject(), outputs[outputProvisionerRoleArn]},
		{"the command's name", id.GetName(), flags["name"]},
	}
	for _, c := range checks {
		if c.spec != c.other {
			return trustRequest{}, fmt.Errorf("output %s disagrees with %s: the spec says %q where %s is %q",
				outputTrustSpec, c.what, c.spec, c.what, c.other)
		}
	}
	return req, nil
}

// iamRoleARN is an IAM role ARN, path included.
var iamRoleARN = regexp.MustCompile(`^arn:[a-z-]+:iam::[0-9]{12}:role/(?:[\x21-\x7E]*/)?[\w+=,.@-]{1,64}$`)

// parseCommand parses the trust step command (prefix, then the identity's
// name and --flags) and reads its --parent and --role.
func parseCommand(cmd, prefix string, id *iam.Identity) (trustRequest, map[string]string, error) {
	flags, err := commandFlags(cmd, prefix)
	if err != nil {
		return trustRequest{}, nil, fmt.Errorf("output %s: %w", outputTrustCommand, err)
	}
	req := trustRequest{identity: id, parent: flags["parent"], role: flags["role"]}
	if err := validate.UIDP("--parent of "+outputTrustCommand, req.parent); err != nil {
		return trustRequest{}, nil, err
	}
	if req.role == "" {
		return trustRequest{}, nil, fmt.Errorf("output %s has no --role", outputTrustCommand)
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

// createTrustedIdentity performs the trust step as chainctl does, through
// the SDK's IAM client with the user's token: create the identity under
// the parent group, then bind the role (looked up by name) on that group.
// It returns the identity's UIDP.
func createTrustedIdentity(ctx context.Context, apiURL, userToken string, req trustRequest) (string, error) {
	dctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	clients, err := iam.NewClients(dctx, apiURL, userToken)
	if err != nil {
		return "", fmt.Errorf("connect to %s: %w", apiURL, err)
	}
	defer func() { _ = clients.Close() }()

	cctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	created, err := clients.Identities().Create(cctx, &iam.CreateIdentityRequest{ParentId: req.parent, Identity: req.identity})
	if err != nil {
		return "", fmt.Errorf("create identity %q in group %s: %w", req.identity.GetName(), req.parent, err)
	}
	lctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	roles, err := clients.Roles().List(lctx, &iam.RoleFilter{Name: req.role})
	if err != nil {
		return "", fmt.Errorf("look up role %q: %w", req.role, err)
	}
	if len(roles.GetItems()) != 1 {
		return "", fmt.Errorf("look up role %q: found %d roles, want 1", req.role, len(roles.GetItems()))
	}
	bctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	if _, err := clients.RoleBindings().Create(bctx, &iam.CreateRoleBindingRequest{
		Parent:      req.parent,
		RoleBinding: &iam.RoleBinding{Identity: created.GetId(), Role: roles.GetItems()[0].GetId()},
	}); err != nil {
		return "", fmt.Errorf("bind role %q to identity %s on group %s: %w", req.role, created.GetId(), req.parent, err)
	}
	return created.GetId(), nil
}
