package stacks

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/assumable-identity/cdk-chainguard/chainguard/validate"
)

// The provisioner stores a Description followed by a space and
// validate.OwnershipMarker of the owner
// "<account>/<region>/<stack name>/<stack ID>/<logical ID>"
// (lambda/provisioner/handler managedBy), and Chainguard stores at most
// validate.MaxDescriptionLen characters. The owner's length is known at
// synth time up to the parts CloudFormation fills in: the account ID is
// always 12 digits and the stack ID a UUID; the stack name and the logical
// ID are the template's; the region is the stack's when it is concrete, else
// at most maxRegionLen. Whatever is a deploy-time value counts at its
// maximum.
const (
	accountIDLen = 12
	stackUUIDLen = len("00000000-0000-0000-0000-000000000000")
	// maxRegionLen is the longest AWS region name ("us-isof-south-1"
	// among the regions aws-cdk-lib's RegionInfo knows; a test keeps it
	// true): the worst case for an environment-agnostic stack.
	maxRegionLen = len("us-isof-south-1")
	// maxStackNameLen is CloudFormation's limit on stack names: the worst
	// case for a stack whose name is a deploy-time value (a nested stack).
	maxStackNameLen = 128
	// maxLogicalIDLen is CloudFormation's limit on logical IDs.
	maxLogicalIDLen = 255
)

// descriptionFits is a synth-time validation: the description of the
// Chainguard custom resource res leaves room for the ownership marker. It
// runs when the app is synthesized, not when the construct is built, so
// that it sees the final logical ID (after any OverrideLogicalId).
type descriptionFits struct {
	res         awscdk.CfnElement
	description string
}

// checkDescriptionFits makes synth fail when description (valid on its
// own) cannot take the ownership marker in res's stack. A description that
// is invalid on its own or a deploy-time value is not checked here.
func checkDescriptionFits(scope constructs.Construct, res awscdk.CustomResource, description string) {
	if unresolved(description) || validate.Description(description) != nil {
		return
	}
	cfn, ok := res.Node().DefaultChild().(awscdk.CfnElement)
	if !ok {
		return
	}
	scope.Node().AddValidation(&descriptionFits{res: cfn, description: description})
}

// Validate implements constructs.IValidation.
func (d *descriptionFits) Validate() *[]*string {
	stack := d.res.Stack()
	var where []string
	logicalIDLen := maxLogicalIDLen
	if id, ok := stack.Resolve(d.res.LogicalId()).(string); ok {
		logicalIDLen = len(id)
		where = append(where, "logical ID "+id)
	}
	stackNameLen := maxStackNameLen
	if name := *stack.StackName(); !unresolved(name) {
		stackNameLen = len(name)
		where = append(where, "stack "+name)
	}
	regionLen := maxRegionLen
	if region := *stack.Region(); !unresolved(region) {
		regionLen = len(region)
		where = append(where, "region "+region)
	} else {
		where = append(where, fmt.Sprintf("any region (up to %d characters: the stack's region is known only at deploy time)", maxRegionLen))
	}
	owner := strings.Join([]string{
		strings.Repeat("0", accountIDLen), strings.Repeat("r", regionLen), strings.Repeat("s", stackNameLen),
		strings.Repeat("u", stackUUIDLen), strings.Repeat("l", logicalIDLen),
	}, "/")
	marker := utf8.RuneCountInString(" " + validate.OwnershipMarker(owner))
	n, allowed := utf8.RuneCountInString(d.description), max(validate.MaxDescriptionLen-marker, 0)
	if n <= allowed {
		return &[]*string{}
	}
	return jsii.Strings(fmt.Sprintf("Description: description is %d characters long, but the provisioner appends the ownership marker \" [managed by CloudFormation: <account>/<region>/<stack name>/<stack ID>/<logical ID>]\", "+
		"which takes up to %d characters here (%s), and Chainguard stores at most %d in all: shorten the description to at most %d characters (or shorten the stack name or construct ID)",
		n, marker, strings.Join(where, ", "), validate.MaxDescriptionLen, allowed))
}
