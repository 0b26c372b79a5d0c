package handler

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
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

// Property names: the contract with the CDK constructs that write them. The
// cfn tags of Target, groupProperties and identityProperties spell the same
// names.
const (
	PropProvisionerIdentity = "ProvisionerIdentity"
	PropIssuer              = "Issuer"
	PropAPIURL              = "ApiUrl"

	PropName        = "Name"
	PropDescription = "Description"
	PropParent      = "Parent"
	PropOwned       = "Owned"

	PropGroup             = "Group"
	PropRoles             = "Roles"
	PropAwsAccount        = "AwsAccount"
	PropAwsPartition      = "AwsPartition"
	PropAwsRoleName       = "AwsRoleName"
	PropAwsRoleID         = "AwsRoleId"
	PropAwsSession        = "AwsSession"
	PropAwsSessionPattern = "AwsSessionPattern"
	PropTrust             = "Trust"
	PropAwsRolePath       = "AwsRolePath"
	PropAwsIssuer         = "AwsIssuer"
)

// Values of the Trust property.
const (
	TrustCallerIdentity = "CallerIdentity" // the default: aws_identity (trust.AWS)
	TrustWebIdentity    = "WebIdentity"    // claim_match (trust.WebIdentity)
)

// cfnProperties are added by CloudFormation itself, not by the constructs.
var cfnProperties = []string{"ServiceToken", "ServiceTimeout"}

// retiredIdentityProperties held the trust as free-form ARN and user ID
// patterns, before the provisioner built them from the structured trust.
var retiredIdentityProperties = []string{"AwsArn", "AwsArnPattern", "AwsUserId", "AwsUserIdPattern", "AllowUnpinnedUserId"}

// properties are a custom resource's properties as the event carries them.
// CloudFormation passes every value as a string; anything else is a
// contract violation.
type properties map[string]any

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

// decode sets the string fields of dst, a pointer to a struct, from the
// properties their cfn tags name (absent: ""). It ignores every other
// property, as Delete must: a stack can always be deleted.
func (p properties) decode(dst any) error {
	v := reflect.ValueOf(dst).Elem()
	for i := range v.NumField() {
		name := v.Type().Field(i).Tag.Get("cfn")
		if name == "" {
			continue
		}
		s, err := p.optional(name)
		if err != nil {
			return err
		}
		v.Field(i).SetString(s)
	}
	return nil
}

// decodeAll is decode for Create and Update: a property that is neither
// dst's, a Target's (except on TypeFederation, which calls AWS alone and
// takes no property) nor CloudFormation's own fails, so that a misspelt name
// is not ignored.
func (p properties) decodeAll(resourceType string, dst any) error {
	known := cfnTags(dst)
	if resourceType != TypeFederation {
		known = slices.Concat(cfnTags(Target{}), known)
	}
	for _, name := range slices.Sorted(maps.Keys(p)) {
		switch {
		case slices.Contains(known, name) || slices.Contains(cfnProperties, name):
		case resourceType == TypeIdentity && slices.Contains(retiredIdentityProperties, name):
			return fmt.Errorf("property %s is no longer part of the %s contract: give the trusted role as %s, %s, %s and %s (its unique ID, AROA...), and its sessions as %s (one session name) or %s (a regular expression for the session name alone); the provisioner builds the anchored ARN and user ID from them",
				name, resourceType, PropAwsAccount, PropAwsPartition, PropAwsRoleName, PropAwsRoleID, PropAwsSession, PropAwsSessionPattern)
		case len(known) == 0:
			return fmt.Errorf("property %s is not part of the %s contract: it takes no properties besides CloudFormation's %s", name, resourceType, strings.Join(cfnProperties, " and "))
		default:
			return fmt.Errorf("property %s is not part of the %s contract: known properties are %s", name, resourceType, strings.Join(known, ", "))
		}
	}
	return p.decode(dst)
}

// cfnTags returns the cfn tags of v's struct type (v may be a pointer), in
// field order.
func cfnTags(v any) []string {
	t := reflect.Indirect(reflect.ValueOf(v)).Type()
	var out []string
	for i := range t.NumField() {
		if name := t.Field(i).Tag.Get("cfn"); name != "" {
			out = append(out, name)
		}
	}
	return out
}

// required fails when the property name is empty, showing an example.
func required(name, v, example string) error {
	if v == "" {
		return fmt.Errorf("property %s is missing: set it, e.g. %s", name, example)
	}
	return nil
}

// Target says where and as whom the provisioner works for one event: the
// properties every event carries.
type Target struct {
	Provisioner string `cfn:"ProvisionerIdentity"` // UIDP of the provisioner's own assumable identity
	Issuer      string `cfn:"Issuer"`
	APIURL      string `cfn:"ApiUrl"`
}

// Validate reports the first invalid property of t.
func (t Target) Validate() error {
	for _, f := range []struct{ name, v, example string }{
		{PropProvisionerIdentity, t.Provisioner, "the UIDP printed by the provisioner stack's one-time trust step"},
		{PropIssuer, t.Issuer, "https://issuer.enforce.dev"},
		{PropAPIURL, t.APIURL, "https://console-api.enforce.dev"},
	} {
		if err := required(f.name, f.v, f.example); err != nil {
			return err
		}
	}
	if err := validate.UIDP(PropProvisionerIdentity, t.Provisioner); err != nil {
		return fmt.Errorf("property %w", err)
	}
	if err := validate.ServiceURL(PropIssuer, t.Issuer); err != nil {
		return fmt.Errorf("property %w", err)
	}
	if err := validate.ServiceURL(PropAPIURL, t.APIURL); err != nil {
		return fmt.Errorf("property %w", err)
	}
	return nil
}

// parseTarget reads an event's Target; other properties are ignored.
func parseTarget(p properties) (Target, error) {
	var t Target
	if err := p.decode(&t); err != nil {
		return Target{}, err
	}
	if err := t.Validate(); err != nil {
		return Target{}, err
	}
	return t, nil
}

// groupProperties are a Custom::ChainguardGroup's own properties.
type groupProperties struct {
	Name        string `cfn:"Name"`
	Description string `cfn:"Description"`
	Parent      string `cfn:"Parent"`
	Owned       string `cfn:"Owned"` // "true": delete the group on stack delete; "false" or absent: leave it
}

// Validate reports the first invalid property of g.
func (g groupProperties) Validate() error {
	if err := required(PropName, g.Name, `"example-group"`); err != nil {
		return err
	}
	if err := validate.Name(PropName, g.Name); err != nil {
		return fmt.Errorf("property %w", err)
	}
	if err := required(PropParent, g.Parent, "the UIDP of the parent group"); err != nil {
		return err
	}
	if err := validate.UIDP(PropParent, g.Parent); err != nil {
		return fmt.Errorf("property %w", err)
	}
	if g.Owned != "" && g.Owned != "true" && g.Owned != "false" {
		return fmt.Errorf("property %s is %q: want \"true\" or \"false\"", PropOwned, g.Owned)
	}
	return nil
}

// groupProps are a Custom::ChainguardGroup's properties, parsed.
type groupProps struct {
	Spec  provision.GroupSpec
	Owned bool // delete the group on stack delete
}

// parseGroup reads the properties of a group to create or update, stamped
// for managedBy.
func parseGroup(p properties, managedBy string) (groupProps, error) {
	var g groupProperties
	if err := p.decodeAll(TypeGroup, &g); err != nil {
		return groupProps{}, err
	}
	if err := g.Validate(); err != nil {
		return groupProps{}, err
	}
	spec := provision.GroupSpec{Name: g.Name, Description: g.Description, Parent: g.Parent, ManagedBy: managedBy}
	if _, err := provision.StoredDescription(spec.Description, managedBy); err != nil {
		return groupProps{}, fmt.Errorf("property %s: %w", PropDescription, err)
	}
	return groupProps{Spec: spec, Owned: g.Owned == "true"}, nil
}

// identityProperties are a Custom::ChainguardIdentity's own properties. The
// trust is structured: the provisioner builds the anchored aws_identity
// (trust.AWS) or the exact claim_match (trust.WebIdentity) from it, so no
// property can widen it beyond one role of one account.
type identityProperties struct {
	Name              string `cfn:"Name"`
	Description       string `cfn:"Description"`
	Group             string `cfn:"Group"`
	Roles             string `cfn:"Roles"` // comma-separated Chainguard role names
	Trust             string `cfn:"Trust"` // TrustCallerIdentity (also when absent) or TrustWebIdentity
	AwsAccount        string `cfn:"AwsAccount"`
	AwsPartition      string `cfn:"AwsPartition"`
	AwsRoleName       string `cfn:"AwsRoleName"`
	AwsRoleID         string `cfn:"AwsRoleId"`         // caller identity only
	AwsSession        string `cfn:"AwsSession"`        // caller identity only
	AwsSessionPattern string `cfn:"AwsSessionPattern"` // caller identity only
	AwsRolePath       string `cfn:"AwsRolePath"`       // web identity only; default "/"
	AwsIssuer         string `cfn:"AwsIssuer"`         // web identity only: the account's federation issuer
	// audience is not a property: it is the event's Issuer, the Chainguard
	// STS the workload exchanges its tokens at.
	audience string
}

// Validate reports the first invalid property of p.
func (p identityProperties) Validate() error {
	if err := required(PropName, p.Name, `"aws-auth-identity"`); err != nil {
		return err
	}
	if err := validate.Name(PropName, p.Name); err != nil {
		return fmt.Errorf("property %w", err)
	}
	if err := required(PropGroup, p.Group, "the UIDP of the group the identity lives in"); err != nil {
		return err
	}
	if err := validate.UIDP(PropGroup, p.Group); err != nil {
		return fmt.Errorf("property %w", err)
	}
	if _, err := roleList(p.Roles); err != nil {
		return err
	}
	tr, err := p.trust()
	if err != nil {
		return err
	}
	err = tr.Validate()
	var fe *trust.FieldError
	if !errors.As(err, &fe) {
		return err // nil: Validate's errors are all *trust.FieldError
	}
	names := make([]string, len(fe.Fields))
	for i, f := range fe.Fields {
		names[i] = trustProperty(f)
	}
	return fmt.Errorf("property %s: %w", strings.Join(names, " or "), fe.Err)
}

// trust returns the trust the properties describe, refusing properties of
// the other kind.
func (p identityProperties) trust() (trust.Relationship, error) {
	only := func(kind string, set map[string]string) error {
		for _, name := range slices.Sorted(maps.Keys(set)) {
			if set[name] != "" {
				return fmt.Errorf("property %s does not apply to %s %s: remove it (it belongs to the other trust kind)", name, PropTrust, kind)
			}
		}
		return nil
	}
	switch p.Trust {
	case "", TrustCallerIdentity:
		if err := only(TrustCallerIdentity, map[string]string{PropAwsRolePath: p.AwsRolePath, PropAwsIssuer: p.AwsIssuer}); err != nil {
			return nil, err
		}
		return trust.AWS{
			Account: p.AwsAccount, Partition: p.AwsPartition, RoleName: p.AwsRoleName, RoleID: p.AwsRoleID,
			Session: p.AwsSession, SessionPattern: p.AwsSessionPattern,
		}, nil
	case TrustWebIdentity:
		if err := only(TrustWebIdentity, map[string]string{PropAwsRoleID: p.AwsRoleID, PropAwsSession: p.AwsSession, PropAwsSessionPattern: p.AwsSessionPattern}); err != nil {
			return nil, fmt.Errorf("%w; the web-identity trust pins no role unique ID and no session: AWS's web identity tokens carry neither (their sub is the role ARN)", err)
		}
		if err := required(PropAwsIssuer, p.AwsIssuer, `the account's outbound identity federation issuer, "https://<uuid>.tokens.sts.global.api.aws"`); err != nil {
			return nil, err
		}
		return trust.WebIdentity{
			Account: p.AwsAccount, Partition: p.AwsPartition, RoleName: p.AwsRoleName,
			RolePath: orDefault(p.AwsRolePath, "/"), Issuer: p.AwsIssuer, Audience: p.audience,
		}, nil
	}
	return nil, fmt.Errorf("property %s is %q: want %q (a signed GetCallerIdentity request; the default) or %q (AWS outbound identity federation)", PropTrust, p.Trust, TrustCallerIdentity, TrustWebIdentity)
}

// trustProperty is the property a field of trust.AWS or trust.WebIdentity
// comes from: the cfn tag of identityProperties' field of the same name
// with the prefix Aws; the audience is the event's Issuer.
func trustProperty(field string) string {
	if field == "Audience" {
		return PropIssuer
	}
	if f, ok := reflect.TypeFor[identityProperties]().FieldByName("Aws" + field); ok {
		return f.Tag.Get("cfn")
	}
	return field
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// roleList splits the Roles property: comma-separated names, blanks around
// them ignored; absent or blank is no roles.
func roleList(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, fmt.Errorf("property %s %q has an empty item: pass comma-separated values, e.g. \"viewer,registry.pull\"", PropRoles, s)
		}
		if err := validate.RoleName(item); err != nil {
			return nil, fmt.Errorf("property %s: %w", PropRoles, err)
		}
		out = append(out, item)
	}
	return out, nil
}

// parseIdentity reads the properties of an identity to create or update,
// stamped for managedBy.
func parseIdentity(p properties, managedBy string) (provision.IdentitySpec, error) {
	var ip identityProperties
	if err := p.decodeAll(TypeIdentity, &ip); err != nil {
		return provision.IdentitySpec{}, err
	}
	ip.audience, _ = p.optional(PropIssuer) // a string: decodeAll checked every property
	if err := ip.Validate(); err != nil {
		return provision.IdentitySpec{}, err
	}
	roles, _ := roleList(ip.Roles) // checked by Validate
	trust, _ := ip.trust()         // checked by Validate
	spec := provision.IdentitySpec{
		Group: ip.Group, Name: ip.Name, Description: ip.Description, Roles: roles, Trust: trust, ManagedBy: managedBy,
	}
	if _, err := provision.StoredDescription(spec.Description, managedBy); err != nil {
		return provision.IdentitySpec{}, fmt.Errorf("property %s: %w", PropDescription, err)
	}
	return spec, nil
}
