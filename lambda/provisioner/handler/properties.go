package handler

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/assumable-identity/cdk-chainguard/chainguard/provision"
	"github.com/assumable-identity/cdk-chainguard/chainguard/trust"
	"github.com/assumable-identity/cdk-chainguard/chainguard/validate"
)

// Resource types the provisioner serves.
const (
	TypeGroup    = "Custom::ChainguardGroup"
	TypeIdentity = "Custom::ChainguardIdentity"
)

// Property names: the contract with the CDK constructs that write them.
const (
	PropProvisionerIdentity = "ProvisionerIdentity"
	PropIssuer              = "Issuer"
	PropAPIURL              = "ApiUrl"

	PropName        = "Name"
	PropDescription = "Description"
	PropParent      = "Parent"
	PropOwned       = "Owned"

	PropGroup               = "Group"
	PropRoles               = "Roles"
	PropAwsAccount          = "AwsAccount"
	PropAwsArn              = "AwsArn"
	PropAwsArnPattern       = "AwsArnPattern"
	PropAwsUserID           = "AwsUserId"
	PropAwsUserIDPattern    = "AwsUserIdPattern"
	PropAllowUnpinnedUserID = "AllowUnpinnedUserId"
)

// cfnProperties are added by CloudFormation itself, not by the constructs.
var cfnProperties = []string{"ServiceToken", "ServiceTimeout"}

var commonProperties = []string{PropProvisionerIdentity, PropIssuer, PropAPIURL}

var groupProperties = []string{PropName, PropDescription, PropParent, PropOwned}

var identityProperties = []string{
	PropName, PropDescription, PropGroup, PropRoles, PropAwsAccount,
	PropAwsArn, PropAwsArnPattern, PropAwsUserID, PropAwsUserIDPattern, PropAllowUnpinnedUserID,
}

// properties reads a custom resource's properties. CloudFormation passes
// every value as a string; anything else is a contract violation.
type properties map[string]any

// check rejects properties that are not part of the resource type's
// contract, so a misspelt name fails instead of being ignored.
func (p properties) check(resourceType string, known []string) error {
	allowed := slices.Concat(cfnProperties, commonProperties, known)
	for _, name := range slices.Sorted(maps.Keys(p)) {
		if !slices.Contains(allowed, name) {
			return fmt.Errorf("property %s is not part of the %s contract: known properties are %s",
				name, resourceType, strings.Join(slices.Concat(commonProperties, known), ", "))
		}
	}
	return nil
}

// optional returns the property's string value, or "" when it is absent.
func (p properties) optional(name string) (string, error) {
	v, ok := p[name]
	if !ok || v == nil {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("property %s is a %T, want a string: CloudFormation passes every property as a string", name, v)
	}
	return s, nil
}

// required returns the property's string value; it must be non-empty.
func (p properties) required(name, example string) (string, error) {
	s, err := p.optional(name)
	if err != nil {
		return "", err
	}
	if s == "" {
		return "", fmt.Errorf("property %s is missing: set it, e.g. %s", name, example)
	}
	return s, nil
}

// boolean reads "true" or "false" (absent: def).
func (p properties) boolean(name string, def bool) (bool, error) {
	s, err := p.optional(name)
	if err != nil {
		return false, err
	}
	switch s {
	case "":
		return def, nil
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("property %s is %q: want \"true\" or \"false\"", name, s)
}

// list reads a comma-separated list; blanks around items are ignored, empty
// items are an error. Absent or empty means an empty list.
func (p properties) list(name string) ([]string, error) {
	s, err := p.optional(name)
	if err != nil || strings.TrimSpace(s) == "" {
		return nil, err
	}
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, fmt.Errorf("property %s %q has an empty item: pass comma-separated values, e.g. \"viewer,registry.pull\"", name, s)
		}
		out = append(out, item)
	}
	return out, nil
}

// Target says where and as whom the provisioner works for one event: the
// event's ProvisionerIdentity, Issuer and ApiUrl.
type Target struct {
	Provisioner string // UIDP of the provisioner's own assumable identity
	Issuer      string
	APIURL      string
}

func parseTarget(p properties) (Target, error) {
	var t Target
	var err error
	if t.Provisioner, err = p.required(PropProvisionerIdentity, "the UIDP printed by the provisioner stack's one-time trust step"); err != nil {
		return Target{}, err
	}
	if err := validate.UIDP(PropProvisionerIdentity, t.Provisioner); err != nil {
		return Target{}, fmt.Errorf("property %w", err)
	}
	if t.Issuer, err = p.required(PropIssuer, "https://issuer.enforce.dev"); err != nil {
		return Target{}, err
	}
	if err := validate.ServiceURL(PropIssuer, t.Issuer); err != nil {
		return Target{}, fmt.Errorf("property %w", err)
	}
	if t.APIURL, err = p.required(PropAPIURL, "https://console-api.enforce.dev"); err != nil {
		return Target{}, err
	}
	if err := validate.ServiceURL(PropAPIURL, t.APIURL); err != nil {
		return Target{}, fmt.Errorf("property %w", err)
	}
	return t, nil
}

// groupProps are a Custom::ChainguardGroup's properties.
type groupProps struct {
	Spec  provision.GroupSpec
	Owned bool // delete the group on stack delete
}

// parseGroup reads the properties of a group to create or update, stamped
// for managedBy.
func parseGroup(p properties, managedBy string) (groupProps, error) {
	if err := p.check(TypeGroup, groupProperties); err != nil {
		return groupProps{}, err
	}
	var g groupProps
	var err error
	if g.Spec.Name, err = p.required(PropName, `"example-group"`); err != nil {
		return groupProps{}, err
	}
	if err := validate.Name(PropName, g.Spec.Name); err != nil {
		return groupProps{}, fmt.Errorf("property %w", err)
	}
	if g.Spec.Description, err = p.optional(PropDescription); err != nil {
		return groupProps{}, err
	}
	g.Spec.ManagedBy = managedBy
	if _, err := provision.StoredDescription(g.Spec.Description, managedBy); err != nil {
		return groupProps{}, fmt.Errorf("property %s: %w", PropDescription, err)
	}
	if g.Spec.Parent, err = p.required(PropParent, "the UIDP of the parent group"); err != nil {
		return groupProps{}, err
	}
	if err := validate.UIDP(PropParent, g.Spec.Parent); err != nil {
		return groupProps{}, fmt.Errorf("property %w", err)
	}
	if g.Owned, err = p.boolean(PropOwned, false); err != nil {
		return groupProps{}, err
	}
	return g, nil
}

// parseIdentity reads the properties of an identity to create or update,
// stamped for managedBy.
func parseIdentity(p properties, managedBy string) (provision.IdentitySpec, error) {
	if err := p.check(TypeIdentity, identityProperties); err != nil {
		return provision.IdentitySpec{}, err
	}
	var s provision.IdentitySpec
	var err error
	if s.Name, err = p.required(PropName, `"aws-auth-identity"`); err != nil {
		return provision.IdentitySpec{}, err
	}
	if err := validate.Name(PropName, s.Name); err != nil {
		return provision.IdentitySpec{}, fmt.Errorf("property %w", err)
	}
	if s.Description, err = p.optional(PropDescription); err != nil {
		return provision.IdentitySpec{}, err
	}
	s.ManagedBy = managedBy
	if _, err := provision.StoredDescription(s.Description, managedBy); err != nil {
		return provision.IdentitySpec{}, fmt.Errorf("property %s: %w", PropDescription, err)
	}
	if s.Group, err = p.required(PropGroup, "the UIDP of the group the identity lives in"); err != nil {
		return provision.IdentitySpec{}, err
	}
	if err := validate.UIDP(PropGroup, s.Group); err != nil {
		return provision.IdentitySpec{}, fmt.Errorf("property %w", err)
	}
	if s.Roles, err = p.list(PropRoles); err != nil {
		return provision.IdentitySpec{}, err
	}
	for _, r := range s.Roles {
		if err := validate.RoleName(r); err != nil {
			return provision.IdentitySpec{}, fmt.Errorf("property %s: %w", PropRoles, err)
		}
	}
	t := trust.AWS{}
	for _, f := range []struct {
		dst  *string
		name string
	}{
		{&t.Account, PropAwsAccount},
		{&t.ARN, PropAwsArn},
		{&t.ARNPattern, PropAwsArnPattern},
		{&t.UserID, PropAwsUserID},
		{&t.UserIDPattern, PropAwsUserIDPattern},
	} {
		if *f.dst, err = p.optional(f.name); err != nil {
			return provision.IdentitySpec{}, err
		}
	}
	if t.AllowUnpinnedUserID, err = p.boolean(PropAllowUnpinnedUserID, false); err != nil {
		return provision.IdentitySpec{}, err
	}
	if err := t.Validate(); err != nil {
		return provision.IdentitySpec{}, trustError(err)
	}
	s.Trust = t
	return s, nil
}

// trustField matches trust.AWS's field names, which its validation errors
// use, as whole words.
var trustField = regexp.MustCompile(`\b(ARNPattern|ARN|UserIDPattern|UserID|Account)\b`)

var trustProperty = map[string]string{
	"ARNPattern":    PropAwsArnPattern,
	"ARN":           PropAwsArn,
	"UserIDPattern": PropAwsUserIDPattern,
	"UserID":        PropAwsUserID,
	"Account":       PropAwsAccount,
}

// trustError renames the trust.AWS fields a validation error starts with
// ("ARN: ...", "UserID or UserIDPattern: ...") to the event's property names.
func trustError(err error) error {
	msg := err.Error()
	fields, rest, ok := strings.Cut(msg, ": ")
	if !ok {
		return fmt.Errorf("properties %s, %s, %s: %w", PropAwsAccount, PropAwsArn, PropAwsUserID, err)
	}
	return fmt.Errorf("property %s: %s", trustField.ReplaceAllStringFunc(fields, func(f string) string { return trustProperty[f] }), rest)
}
