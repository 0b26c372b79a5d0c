// Package stacks holds the CDK side of the project: the constructs and
// stacks that make AWS IAM roles assumable as Chainguard identities.
//
//   - [NewProvisionerStack]: the provisioner, deployed once per account and
//     region (like `cdk bootstrap`). Its role and function create the
//     Chainguard objects of every identity stack; its outputs print the
//     one-time trust step; its service token is published as an SSM
//     parameter ([DefaultServiceTokenParameter]).
//   - [NewAssumableIdentity]: makes any awsiam.IRole assumable through a
//     Custom::ChainguardIdentity resource. Identities in one stack share one
//     provisioner wiring ([ProvisionerSettings]).
//   - [NewGroup]: a Chainguard group created (and, by default, deleted) by
//     the stack, through a Custom::ChainguardGroup resource.
//   - [NewAwsAuthStack]: the reference setup: a Go Lambda function that lists
//     the repos of a group as its own Chainguard identity.
//   - [NewApp]: reads the CDK context, validates it and builds the app.
//
// Custom-resource property contract (the handler in lambda/provisioner reads
// it): PascalCase names, every value a string, lists comma-separated.
// Custom::ChainguardGroup: Name, Description, Parent, Owned ("true"/"false").
// Custom::ChainguardIdentity: Name, Description, Group, Roles, and the
// trusted role as AwsAccount, AwsPartition, AwsRoleName, AwsRoleId and
// AwsSession or AwsSessionPattern (the provisioner builds the anchored ARN
// and user ID from them). Both carry ProvisionerIdentity, Issuer and ApiUrl.
// The physical ID of each resource is the Chainguard UIDP.
//
// Bad values fail `cdk synth` through CDK validation: the message names the
// construct path, the property and the fix. That includes what the
// provisioner would refuse at deploy time: names outside 3 to 63
// characters, a Description too long to take the provisioner's ownership
// marker, and a region outside the aws partition (the only one Chainguard's
// AWS token works in; an environment-agnostic stack gets a CloudFormation
// rule that refuses other partitions before any resource is created). Go code is bundled locally
// (linux/arm64, no Docker) by internal/lambdabuild.
package stacks
