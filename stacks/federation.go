package stacks

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
)

// OutboundWebIdentityFederationResourceType is the custom-resource type
// that turns on the account's AWS outbound identity federation.
const OutboundWebIdentityFederationResourceType = "Custom::AwsOutboundWebIdentityFederation"

// outboundFederationActions are the IAM actions the provisioner needs to
// read and turn on the account's outbound identity federation, and the only
// ones its role gets for it. Neither supports resource-level permissions
// (AWS Service Authorization Reference, IAM: no resource type for
// GetOutboundWebIdentityFederationInfo or
// EnableOutboundWebIdentityFederation), hence Resource "*".
// iam:DisableOutboundWebIdentityFederation is deliberately absent.
// outboundFederationNagReason says why the statement names Resource "*"
// (cdk-nag AwsSolutions-IAM5).
const outboundFederationNagReason = "iam:GetOutboundWebIdentityFederationInfo and iam:EnableOutboundWebIdentityFederation support no resource-level permissions: " +
	"the AWS Service Authorization Reference (https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsidentityandaccessmanagementiam.html) " +
	"lists no resource type for them (they act on the account's own setting), so Resource must be \"*\"."

var outboundFederationActions = []string{
	"iam:GetOutboundWebIdentityFederationInfo",
	"iam:EnableOutboundWebIdentityFederation",
}

// OutboundWebIdentityFederationProps configures
// NewOutboundWebIdentityFederation.
type OutboundWebIdentityFederationProps struct {
	// Provisioner is the provisioner function (NewProvisionerStack's): it
	// serves the custom resource and its role gets the two IAM actions.
	// Required.
	Provisioner awslambda.IFunction
}

// OutboundWebIdentityFederation is the account's AWS outbound identity
// federation, turned on.
type OutboundWebIdentityFederation interface {
	constructs.Construct
	// IssuerIdentifier is the federation's issuer URL, e.g.
	// https://<uuid>.tokens.sts.global.api.aws (a deploy-time value): the
	// iss of every web identity token of the account.
	IssuerIdentifier() *string
}

type outboundFederation struct {
	constructs.Construct
	issuer *string
}

// IssuerIdentifier implements OutboundWebIdentityFederation.
func (f *outboundFederation) IssuerIdentifier() *string { return f.issuer }

// NewOutboundWebIdentityFederation makes sure the account's AWS outbound
// identity federation is on, an account-wide setting that
// sts:GetWebIdentityToken needs and for which no CloudFormation resource
// type exists. It is a Custom::AwsOutboundWebIdentityFederation resource
// (no properties but ServiceToken and ServiceTimeout) served by the Go
// provisioner function itself, no Node.js provider. On Create and Update
// the provisioner reads the federation's state and enables it only if it
// is off (an "already enabled" answer means someone else enabled it in
// between, which is fine), and returns its IssuerIdentifier attribute; the
// physical ID is the provisioner's fixed "outbound-web-identity-federation".
//
// It never turns the federation off. Deleting the resource (or the stack)
// answers SUCCESS and leaves the federation on, because other workloads of
// the account may depend on it; turn it off yourself (IAM > Account
// settings, or `aws iam disable-outbound-web-identity-federation`) once
// nothing needs it. Accordingly the provisioner's role gets exactly
// iam:GetOutboundWebIdentityFederationInfo and
// iam:EnableOutboundWebIdentityFederation on "*" (the actions support no
// resource-level permissions), in a policy of its own that the resource
// waits for; no disable permission.
func NewOutboundWebIdentityFederation(scope constructs.Construct, id string, props *OutboundWebIdentityFederationProps) OutboundWebIdentityFederation {
	var fp OutboundWebIdentityFederationProps
	if props != nil {
		fp = *props
	}
	this := constructs.NewConstruct(scope, &id)
	p := newProblems(this)
	if fp.Provisioner == nil {
		p.addf("Provisioner", "no provisioner function: set Provisioner to the function of the provisioner stack, which serves %s", OutboundWebIdentityFederationResourceType)
		return &outboundFederation{Construct: this, issuer: jsii.String("")}
	}
	policy := newGrantPolicy(this, "Policy", fp.Provisioner, awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Effect:    awsiam.Effect_ALLOW,
		Actions:   jsii.Strings(outboundFederationActions...),
		Resources: jsii.Strings("*"),
	}), outboundFederationNagReason, p, "Provisioner")
	res := awscdk.NewCustomResource(this, jsii.String("Resource"), &awscdk.CustomResourceProps{
		ServiceToken:   fp.Provisioner.FunctionArn(),
		ResourceType:   jsii.String(OutboundWebIdentityFederationResourceType),
		ServiceTimeout: awscdk.Duration_Seconds(jsii.Number(CustomResourceServiceTimeout)),
		// Delete is sent and answered SUCCESS without touching the
		// federation: see above.
		RemovalPolicy: awscdk.RemovalPolicy_DESTROY,
	})
	if policy != nil {
		res.Node().AddDependency(policy)
	}
	return &outboundFederation{Construct: this, issuer: res.GetAttString(jsii.String("IssuerIdentifier"))}
}
