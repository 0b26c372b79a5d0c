package stacks

import (
	"fmt"
	"strings"

	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
)

// problems collects the synth-time validation failures of one construct.
// Registered with node.AddValidation, it makes `cdk synth` fail with one line
// per problem, which CDK prefixes with the construct path:
//
//	[ChainguardAwsAuth/Identity] Group: group "abc" is not a Chainguard UIDP: ...
//
// Every value is known when the construct is built, so the validation is
// registered only when there is a problem: a valid construct costs synth no
// callback into Go.
type problems struct {
	owner constructs.IConstruct
	msgs  []string
}

// newProblems returns an empty problem list for c.
func newProblems(c constructs.IConstruct) *problems {
	return &problems{owner: c}
}

// add records err (if any) against the property prop.
func (p *problems) add(prop string, err error) {
	if err != nil {
		p.record(prop + ": " + err.Error())
	}
}

// addf records a problem against the property prop.
func (p *problems) addf(prop, format string, args ...any) {
	p.record(prop + ": " + fmt.Sprintf(format, args...))
}

func (p *problems) record(msg string) {
	if len(p.msgs) == 0 {
		p.owner.Node().AddValidation(p)
	}
	p.msgs = append(p.msgs, msg)
}

// Validate implements constructs.IValidation.
func (p *problems) Validate() *[]*string {
	return jsii.Strings(p.msgs...)
}

// unresolved reports whether s holds a CDK string token (a value known only
// at deploy time, such as a generated role name): such values are checked by
// construction, not by the validators. CDK encodes string tokens as
// "${Token[...]}"; testing for the marker avoids a call into jsii per value.
func unresolved(s string) bool {
	return strings.Contains(s, "${Token[")
}

// check runs fn on v unless v is a deploy-time token.
func check(v string, fn func(string) error) error {
	if unresolved(v) {
		return nil
	}
	return fn(v)
}

// orDefault returns v, or def when v is empty.
func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
