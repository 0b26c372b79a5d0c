package validate

import (
	"fmt"
	"regexp"
	"strings"
)

// Partitions are the AWS partitions an ARN may name.
var partitions = []string{"aws", "aws-cn", "aws-us-gov"}

var roleIDRE = regexp.MustCompile(`^AROA[A-Z0-9]{17}$`)

// AssumedRole is the parsed ARN of an assumed-role session, as AWS STS
// GetCallerIdentity reports a caller that runs on role credentials.
type AssumedRole struct {
	Partition string // aws, aws-cn or aws-us-gov
	Account   string // 12-digit account ID
	Role      string // IAM role name (assumed-role ARNs carry no role path)
	Session   string // role session name; for a Lambda function, its name
}

// String returns the ARN.
func (a AssumedRole) String() string {
	return fmt.Sprintf("arn:%s:sts::%s:assumed-role/%s/%s", a.Partition, a.Account, a.Role, a.Session)
}

// arnParts is an ARN split into its six colon-separated fields.
type arnParts struct {
	partition, service, region, account, resource string
}

// splitARN splits v into ARN fields, or explains why it is not an ARN.
// what names the value in messages and example is a valid one.
func splitARN(what, v, example string) (arnParts, error) {
	if v == "" {
		return arnParts{}, invalidf("%s is empty: expected e.g. %q", what, example)
	}
	f := strings.SplitN(v, ":", 6)
	if len(f) != 6 || f[0] != "arn" {
		return arnParts{}, invalidf("%s %q is not an ARN: expected the form %q", what, v, example)
	}
	p := arnParts{partition: f[1], service: f[2], region: f[3], account: f[4], resource: f[5]}
	if !isPartition(p.partition) {
		return p, invalidf("%s %q names partition %q: expected one of %s, e.g. %q", what, v, p.partition, strings.Join(partitions, ", "), example)
	}
	if p.region != "" {
		return p, invalidf("%s %q names region %q: IAM and STS ARNs have no region (\"::\" between service and account), e.g. %q", what, v, p.region, example)
	}
	if err := AWSAccount(p.account); err != nil {
		return p, invalidf("%s %q: %v", what, v, err)
	}
	return p, nil
}

func isPartition(p string) bool {
	for _, q := range partitions {
		if p == q {
			return true
		}
	}
	return false
}

// AssumedRoleARN parses and checks the ARN of an assumed-role session:
// arn:<aws|aws-cn|aws-us-gov>:sts::<12 digits>:assumed-role/<role>/<session>.
func AssumedRoleARN(v string) (AssumedRole, error) {
	const what = "assumed-role ARN"
	const example = "arn:aws:sts::" + exampleAccount + ":assumed-role/" + exampleRole + "/" + exampleSession
	p, err := splitARN(what, v, example)
	if err != nil {
		return AssumedRole{}, err
	}
	if p.service == "iam" && strings.HasPrefix(p.resource, "role/") {
		return AssumedRole{}, invalidf("%s %q is the ARN of the IAM role itself, but AWS reports a caller by its session ARN arn:%s:sts::%s:assumed-role/ROLE/SESSION (for a Lambda function, SESSION is the function name), e.g. %q", what, v, p.partition, p.account, example)
	}
	if p.service != "sts" {
		return AssumedRole{}, invalidf("%s %q names service %q: assumed-role ARNs belong to \"sts\", e.g. %q", what, v, p.service, example)
	}
	rest, ok := strings.CutPrefix(p.resource, "assumed-role/")
	if !ok {
		return AssumedRole{}, invalidf("%s %q: the resource %q does not start with \"assumed-role/\": expected \"assumed-role/ROLE/SESSION\", e.g. %q", what, v, p.resource, example)
	}
	role, session, ok := strings.Cut(rest, "/")
	if !ok {
		return AssumedRole{}, invalidf("%s %q has no session name: expected \"assumed-role/ROLE/SESSION\", e.g. %q", what, v, example)
	}
	if err := IAMRoleName(role); err != nil {
		return AssumedRole{}, invalidf("%s %q: %v", what, v, err)
	}
	if err := SessionName(session); err != nil {
		return AssumedRole{}, invalidf("%s %q: %v", what, v, err)
	}
	return AssumedRole{Partition: p.partition, Account: p.account, Role: role, Session: session}, nil
}

// RoleID checks an IAM role's unique ID: AROA followed by 17 uppercase
// letters or digits, as `aws iam get-role --query Role.RoleId` prints it.
func RoleID(v string) error {
	if roleIDRE.MatchString(v) {
		return nil
	}
	const want = `expected AROA followed by 17 uppercase letters or digits (from "` + exampleGetRoleID + `"), e.g. "` + exampleRoleID + `"`
	switch {
	case v == "":
		return invalidf("role unique ID is empty: %s", want)
	case strings.HasPrefix(v, "AIDA"):
		return invalidf("role unique ID %q is the unique ID of an IAM user (AIDA...): only IAM roles (AROA...) are supported, %s", v, want)
	}
	return invalidf("role unique ID %q is not valid: %s", v, want)
}

// UserID checks the user ID AWS reports for an assumed-role session: the
// role's unique ID (AROA followed by 17 uppercase letters or digits), a
// colon, and the session name.
func UserID(v string) error {
	const want = `expected the role's unique ID (AROA followed by 17 uppercase letters or digits, from "` + exampleGetRoleID + `"), ":" and the session name, e.g. "` + exampleRoleID + `:` + exampleSession + `"`
	if v == "" {
		return invalidf("user ID is empty: %s", want)
	}
	id, session, ok := strings.Cut(v, ":")
	if !ok {
		if roleIDRE.MatchString(v) {
			return invalidf("user ID %q has no session name: append \":\" and the session name (for a Lambda function, its name), e.g. %q", v, v+":"+exampleSession)
		}
		return invalidf("user ID %q is not valid: %s", v, want)
	}
	if !roleIDRE.MatchString(id) {
		if strings.HasPrefix(id, "AIDA") {
			return invalidf("user ID %q starts with the unique ID of an IAM user (AIDA...): only IAM roles (AROA...) are supported, %s", v, want)
		}
		return invalidf("user ID %q does not start with a role unique ID: %q is not AROA followed by 17 uppercase letters or digits; %s", v, id, want)
	}
	if err := SessionName(session); err != nil {
		return invalidf("user ID %q: %v", v, err)
	}
	return nil
}

// Role is a parsed IAM role ARN.
type Role struct {
	Partition string // aws, aws-cn or aws-us-gov
	Account   string // 12-digit account ID
	Path      string // IAM path, "/" or "/.../"
	Name      string // IAM role name
}

// String returns the ARN.
func (r Role) String() string {
	return fmt.Sprintf("arn:%s:iam::%s:role%s%s", r.Partition, r.Account, r.Path, r.Name)
}

// IAMRoleARN parses and checks the ARN of an IAM role, path included:
// arn:<aws|aws-cn|aws-us-gov>:iam::<12 digits>:role<path><name>, as
// "aws iam get-role --query Role.Arn" (or Fn::GetAtt Role.Arn) gives it.
func IAMRoleARN(v string) (Role, error) {
	const what = "IAM role ARN"
	const example = "arn:aws:iam::" + exampleAccount + ":role/service-role/" + exampleRole
	p, err := splitARN(what, v, example)
	if err != nil {
		return Role{}, err
	}
	if p.service == "sts" && strings.HasPrefix(p.resource, "assumed-role/") {
		return Role{}, invalidf("%s %q is the ARN of a session of the role (assumed-role), not of the role: expected arn:%s:iam::%s:role/PATH/ROLE (\"aws iam get-role --role-name ROLE --query Role.Arn\"), e.g. %q", what, v, p.partition, p.account, example)
	}
	if p.service != "iam" {
		return Role{}, invalidf("%s %q names service %q: role ARNs belong to \"iam\", e.g. %q", what, v, p.service, example)
	}
	rest, ok := strings.CutPrefix(p.resource, "role/")
	if !ok {
		return Role{}, invalidf("%s %q: the resource %q does not start with \"role/\": expected \"role/ROLE\" or \"role/PATH/ROLE\", e.g. %q", what, v, p.resource, example)
	}
	i := strings.LastIndex(rest, "/")
	path, name := "/"+rest[:i+1], rest[i+1:]
	if err := IAMRolePath(path); err != nil {
		return Role{}, invalidf("%s %q: %v", what, v, err)
	}
	if err := IAMRoleName(name); err != nil {
		return Role{}, invalidf("%s %q: %v", what, v, err)
	}
	return Role{Partition: p.partition, Account: p.account, Path: path, Name: name}, nil
}
