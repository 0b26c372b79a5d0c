// Package stacks holds the CDK side of the project: the constructs and
// stacks that make AWS IAM roles assumable as Chainguard identities.
//
//   - [NewProvisionerStack]: the provisioner, deployed once per account and
//     region (like `cdk bootstrap`). Its role and function create the
//     Chainguard objects of every identity stack; its outputs print the
//     one-time trust step; its service token and its role's ARN are
//     published as SSM parameters ([DefaultServiceTokenParameter],
//     [DefaultRoleArnParameter]).
//   - [NewAssumableIdentity]: makes any awsiam.IRole assumable through a
//     Custom::ChainguardIdentity resource. Identities in one stack share one
//     provisioner wiring ([ProvisionerSettings]). Its [Trust] picks the
//     trust mode: [ExactSession] or [SessionPattern] (caller identity: a
//     signed GetCallerIdentity request, pinned to the role's unique ID) or
//     [WebIdentity] (AWS outbound identity federation: a JWT from
//     sts:GetWebIdentityToken whose subject is the role's ARN). With
//     Check, ConfigureFunction also adds a deploy-time trust check of the
//     function (Custom::ChainguardTrustCheck, served by the provisioner,
//     which invokes the function: its handler must be wrapped with
//     chainguard/trustcheck.Wrap).
//   - [NewOutboundWebIdentityFederation]: turns the account's outbound
//     identity federation on (never off) through a
//     Custom::AwsOutboundWebIdentityFederation resource served by the
//     provisioner; the provisioner stack adds it in web-identity mode.
//   - [NewGroup]: a Chainguard group created (and, by default, deleted) by
//     the stack, through a Custom::ChainguardGroup resource.
//   - [NewAwsAuthStack]: the reference setup: a Go Lambda function that lists
//     the repos of a group as its own Chainguard identity.
//   - [NewApp]: reads the CDK context, validates it and builds the app.
//
// Custom-resource property contract (the handler in lambda/provisioner reads
// it): PascalCase names, every value a string, lists comma-separated.
// Custom::ChainguardGroup: Name, Description, Parent, Owned ("true"/"false").
// Custom::ChainguardIdentity: Name, Description, Group, Roles, Trust, and
// the trusted role as AwsAccount, AwsPartition, AwsRoleName and, for
// Trust=CallerIdentity, AwsRoleId and AwsSession or AwsSessionPattern (the
// provisioner builds the anchored ARN and user ID from them), for
// Trust=WebIdentity, AwsRolePath and AwsIssuer (the provisioner builds the
// claim_match: issuer, subject = the role's ARN, audience = its Chainguard
// issuer). Both carry ProvisionerIdentity, Issuer and ApiUrl. The physical
// ID of each resource is the Chainguard UIDP.
// Custom::AwsOutboundWebIdentityFederation has no properties; its
// attribute IssuerIdentifier is the account's federation issuer.
// Custom::ChainguardTrustCheck: FunctionName (the function's ARN),
// Identity, Group, ListRepos ("true" when the roles may list repos) and
// Fingerprint (what the check proves, as deployed: CloudFormation sends an
// Update, which runs the check again, when it changes); its physical ID is
// "trust-check:<identity UIDP>", its attribute Principal what the function
// presented.
//
// Bad values fail `cdk synth` through CDK validation: the message names the
// construct path, the property and the fix. That includes what the
// provisioner would refuse at deploy time: names outside 3 to 63
// characters, a Description too long to take the provisioner's ownership
// marker, and a region outside the aws partition (the only one Chainguard's
// AWS token works in; an environment-agnostic stack gets a CloudFormation
// rule that refuses other partitions before any resource is created).
//
// Go code is bundled locally (no Docker) by internal/lambdabuild, for the
// functions' [Architecture]: arm64 by default (GOARCH=arm64), or x86_64
// (GOARCH=amd64) for accounts and CloudFormation engines that need it. The
// context key "architecture" ([CtxArchitecture]) and the stacks'
// Architecture props choose it; any other value fails synth.
package stacks
