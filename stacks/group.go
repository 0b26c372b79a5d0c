package stacks

import (
	"strconv"

	"github.com/aws/constructs-go/constructs/v10"

	"github.com/assumable-identity/cdk-chainguard/chainguard/validate"
)

// GroupResourceType is the custom-resource type of a Chainguard group.
const GroupResourceType = "Custom::ChainguardGroup"

// GroupProps configures NewGroup.
type GroupProps struct {
	// Parent is the UIDP of the group to create the group in. Required.
	Parent string
	// Name of the group, e.g. "example-group". Required.
	Name string
	// Description of the group. Default: names the construct path.
	Description string
	// Retain keeps the group in Chainguard when the resource is deleted
	// (Owned "false"). By default the stack owns the group and deletes it on
	// `cdk destroy` (the provisioner refuses if it still holds objects the
	// stack did not create).
	Retain bool
	// Provisioner settings; may be nil when an earlier Chainguard construct of
	// the stack set them.
	Provisioner *ProvisionerSettings
}

// Group is a Chainguard group managed by the stack.
type Group interface {
	constructs.Construct
	// GroupId is the group's UIDP (a deploy-time token).
	GroupId() *string
}

type group struct {
	constructs.Construct
	id *string
}

// GroupId implements Group.
func (g *group) GroupId() *string { return g.id }

// NewGroup creates a Chainguard group (Custom::ChainguardGroup) under
// props.Parent through the stack's provisioner.
func NewGroup(scope constructs.Construct, id string, props *GroupProps) Group {
	var gp GroupProps
	if props != nil {
		gp = *props
	}
	this := constructs.NewConstruct(scope, &id)
	p := newProblems(this)
	w := wiringFor(this, gp.Provisioner, p)
	description := orDefault(gp.Description, "Managed by CDK: "+*this.Node().Path())
	p.add("Parent", check(gp.Parent, func(v string) error { return validate.UIDP("parent group", v) }))
	p.add("Name", check(gp.Name, func(v string) error { return validate.Name("group name", v) }))
	p.add("Description", check(description, validate.Description))

	res := newChainguardResource(this, "Resource", GroupResourceType, w, map[string]interface{}{
		"Name":        gp.Name,
		"Description": description,
		"Parent":      gp.Parent,
		"Owned":       strconv.FormatBool(!gp.Retain),
	})
	checkDescriptionFits(this, res, description)
	return &group{Construct: this, id: res.Ref()}
}

// ensure *group satisfies Group at compile time.
var _ Group = (*group)(nil)
