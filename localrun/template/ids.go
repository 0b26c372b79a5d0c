package template

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// Env is the deterministic local AWS environment templates are resolved in.
type Env struct {
	Account   string // AWS::AccountId
	Region    string // AWS::Region
	Partition string // AWS::Partition
	URLSuffix string // AWS::URLSuffix
}

// Default values of the local environment.
const (
	DefaultAccount   = "111122223333"
	DefaultRegion    = "us-east-1"
	DefaultPartition = "aws"
	DefaultURLSuffix = "amazonaws.com"
)

// DefaultEnv is the environment of a local run: account 111122223333 in
// us-east-1 of the aws partition.
func DefaultEnv() Env {
	return Env{Account: DefaultAccount, Region: DefaultRegion, Partition: DefaultPartition, URLSuffix: DefaultURLSuffix}
}

func (e Env) withDefaults() Env {
	d := DefaultEnv()
	if e.Account == "" {
		e.Account = d.Account
	}
	if e.Region == "" {
		e.Region = d.Region
	}
	if e.Partition == "" {
		e.Partition = d.Partition
	}
	if e.URLSuffix == "" {
		e.URLSuffix = d.URLSuffix
	}
	return e
}

// alphabet of the characters AWS uses in unique IDs and generated names.
const upperAlnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// code returns n characters of [A-Z0-9] derived from the parts.
func code(n int, parts ...string) string {
	var b strings.Builder
	seed := strings.Join(parts, "\x00")
	for i := 0; b.Len() < n; i++ {
		sum := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%d", seed, i)))
		for _, c := range sum {
			if b.Len() == n {
				break
			}
			b.WriteByte(upperAlnum[int(c)%len(upperAlnum)])
		}
	}
	return b.String()
}

// RoleID is the local unique ID of an IAM role: "AROA" followed by 17
// characters of [A-Z0-9] derived from the stack name and the role's logical
// ID, as stable across runs as the names are.
func RoleID(stackName, logicalID string) string {
	return "AROA" + code(17, "role-id", stackName, logicalID)
}

// PhysicalName is the name CloudFormation would generate for a resource
// whose name property is not set: "<stack>-<logical ID>-<suffix>", cut to
// maxLen characters, with a deterministic 12-character suffix.
func PhysicalName(stackName, logicalID string, maxLen int) string {
	suffix := code(12, "name", stackName, logicalID)
	prefix := stackName + "-" + logicalID
	if keep := maxLen - len(suffix) - 1; len(prefix) > keep {
		prefix = prefix[:max(keep, 0)]
	}
	return prefix + "-" + suffix
}

// stackID is the local AWS::StackId of a stack.
func stackID(env Env, stackName string) string {
	sum := sha256.Sum256([]byte("stack-id\x00" + stackName))
	h := hex.EncodeToString(sum[:16])
	return fmt.Sprintf("arn:%s:cloudformation:%s:%s:stack/%s/%s-%s-%s-%s-%s",
		env.Partition, env.Region, env.Account, stackName, h[0:8], h[8:12], h[12:16], h[16:20], h[20:32])
}
