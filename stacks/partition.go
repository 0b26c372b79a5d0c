package stacks

import (
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/regioninfo"
	"github.com/aws/jsii-runtime-go"
)

// Chainguard assumable identities work only in the aws partition. A
// workload (and the provisioner) proves its AWS identity with a
// GetCallerIdentity request that the Chainguard SDK always signs for
// sts.amazonaws.com in us-east-1 (chainguard.dev/sdk auth/aws generate.go),
// and Chainguard verifies it against that host only (auth/aws
// verify_options.go, defaultExpectedSTSHost). That endpoint does not know
// the credentials of aws-cn or aws-us-gov (or the isolated partitions), so
// a deploy there would create the stack and fail at the first exchange.

// partitionRuleID is the ID (and logical ID) of the rule that refuses a
// partition other than aws at deploy time.
const partitionRuleID = "ChainguardPartition"

// partitionReason says why only the aws partition works.
const partitionReason = "Chainguard assumable identities work only in the aws partition: the Chainguard SDK signs the AWS token for sts.amazonaws.com in us-east-1 (chainguard.dev/sdk auth/aws) and Chainguard verifies it only against that endpoint, which does not accept the credentials of another partition (aws-cn, aws-us-gov, ...)"

// requireAWSPartition makes stack refuse any partition but aws, as early as
// the partition is known.
//
// When the stack's region is concrete, its partition is looked up
// (regionPartition) and any but aws fails synth ("Env", naming the region
// and the partition).
//
// When the region is a deploy-time value (an environment-agnostic stack) or
// a region whose partition cannot be told, the template gets a
// CloudFormation rule asserting AWS::Partition = aws. CloudFormation
// evaluates rules on every create and update before it touches any
// resource, and refuses the operation with the assertion's description
// (see "Rules" and "Rule functions" in the CloudFormation template
// reference; pseudo parameters work in assertions, e.g.
// !Equals [!Ref AWS::Region, us-west-2] in mozilla/security
// operations/cloudformation-templates/infosec_dev_s3_buckets_us-west-2.yml).
// It is the safest choice: nothing is created, so nothing is left to roll
// back or delete. The alternatives are worse: a Condition on the resources
// would skip them silently and report success with nothing made; a failing
// custom resource would fail only after the role and function exist and
// then roll them back.
//
// It is called once per stack (from the provisioner stack, and from the
// provisioner wiring that every Chainguard construct of a stack shares);
// the rule is added at most once.
func requireAWSPartition(stack awscdk.Stack) {
	if stack.Node().TryFindChild(jsii.String(partitionRuleID)) != nil {
		return
	}
	if region := *stack.Region(); !unresolved(region) {
		switch partition := regionPartition(region); partition {
		case "aws":
			return
		case "":
			// Unknown region: guard at deploy time.
		default:
			newProblems(stack).addf("Env", "region %s is in the AWS partition %s: %s; deploy to a region of the aws partition (e.g. us-east-1)", region, partition, partitionReason)
			return
		}
	}
	awscdk.NewCfnRule(stack, jsii.String(partitionRuleID), &awscdk.CfnRuleProps{
		Assertions: &[]*awscdk.CfnRuleAssertion{{
			Assert:            awscdk.Fn_ConditionEquals(awscdk.Aws_PARTITION(), jsii.String("aws")),
			AssertDescription: jsii.String(partitionReason + ". Deploy this stack to a region of the aws partition (e.g. us-east-1)."),
		}},
	})
}

// regionPartition returns the partition of region: what aws-cdk-lib's
// RegionInfo knows, else what the region's prefix says (the prefixes of
// aws-cdk-lib's region-info partitionInformation), else "" (not known: a
// new region CDK has not heard of).
func regionPartition(region string) string {
	if p := regioninfo.RegionInfo_Get(jsii.String(region)).Partition(); p != nil && *p != "" {
		return *p
	}
	for _, pp := range []struct{ prefix, partition string }{
		{"cn-", "aws-cn"},
		{"us-gov-", "aws-us-gov"},
		{"us-iso-", "aws-iso"},
		{"us-isob-", "aws-iso-b"},
		{"us-isof-", "aws-iso-f"},
		{"eu-isoe-", "aws-iso-e"},
		{"eusc-", "aws-eusc"},
	} {
		if strings.HasPrefix(region, pp.prefix) {
			return pp.partition
		}
	}
	return ""
}
