package handler

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-lambda-go/cfn"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/smithy-go"
)

// TypeFederation is the custom resource that makes sure AWS outbound
// identity federation is on in the provisioner's account (the web-identity
// trust). No CloudFormation resource type exists for this account setting.
const TypeFederation = "Custom::AwsOutboundWebIdentityFederation"

// federationPhysicalID is the physical ID of TypeFederation: the setting is
// one per account, and the ID stays the same on every Update.
const federationPhysicalID = "outbound-web-identity-federation"

// FederationAPI is the part of the AWS SDK's IAM client (*iam.Client of
// aws-sdk-go-v2/service/iam) that TypeFederation calls: exactly the two
// actions the provisioner role is granted in the web-identity mode.
type FederationAPI interface {
	GetOutboundWebIdentityFederationInfo(ctx context.Context, in *iam.GetOutboundWebIdentityFederationInfoInput, optFns ...func(*iam.Options)) (*iam.GetOutboundWebIdentityFederationInfoOutput, error)
	EnableOutboundWebIdentityFederation(ctx context.Context, in *iam.EnableOutboundWebIdentityFederationInput, optFns ...func(*iam.Options)) (*iam.EnableOutboundWebIdentityFederationOutput, error)
}

// federation serves TypeFederation. Create and Update read the account's
// federation state and enable it only when it is off; Data holds the
// account's IssuerIdentifier. Delete never disables it: other workloads of
// the account may present its tokens elsewhere, and a stack cannot know.
//
// "Off" is either answer AWS may give: GetOutboundWebIdentityFederationInfo
// failing with FeatureDisabled (HTTP 404), or succeeding with
// JwtVendingEnabled false (its documentation says the response carries "the
// current enabled/disabled status"). Enable failing with FeatureEnabled
// (HTTP 409: "You cannot enable the feature multiple times") means someone
// enabled it meanwhile: the state is read again.
func (h *Handler) federation(ctx context.Context, ev cfn.Event, st *steps) (string, map[string]any, error) {
	if ev.RequestType == cfn.RequestDelete {
		st.log.Info("outbound identity federation left enabled: other workloads of the account may depend on it; disable it by hand if nothing does (aws iam disable-outbound-web-identity-federation)")
		return ev.PhysicalResourceID, nil, nil
	}
	if err := properties(ev.ResourceProperties).decodeAll(TypeFederation, &struct{}{}); err != nil {
		return "", nil, err
	}
	if h.cfg.Federation == nil {
		return "", nil, errors.New("the provisioner has no IAM client for outbound identity federation: it runs without an AWS configuration")
	}
	st.begin("read the account's outbound identity federation state")
	issuer, on, err := federationState(ctx, h.cfg.Federation)
	if err != nil {
		return "", nil, err
	}
	if !on {
		st.begin("enable outbound identity federation for the account")
		out, err := h.cfg.Federation.EnableOutboundWebIdentityFederation(ctx, &iam.EnableOutboundWebIdentityFederationInput{})
		var enabled *iamtypes.FeatureEnabledException
		switch {
		case errors.As(err, &enabled):
			st.log.Info("outbound identity federation was enabled meanwhile by someone else")
			if issuer, on, err = federationState(ctx, h.cfg.Federation); err == nil && !on {
				err = errors.New("IAM said outbound identity federation is enabled (FeatureEnabled), then reported it disabled")
			}
			if err != nil {
				return "", nil, err
			}
		case err != nil:
			return "", nil, iamError("enable outbound identity federation (iam:EnableOutboundWebIdentityFederation)", err)
		default:
			issuer = aws.ToString(out.IssuerIdentifier)
			st.log.Info("outbound identity federation enabled for the account", "issuer", issuer)
		}
	} else {
		st.log.Info("outbound identity federation already enabled: left as it is", "issuer", issuer)
	}
	if issuer == "" {
		return "", nil, errors.New("IAM reported outbound identity federation enabled but no IssuerIdentifier")
	}
	return federationPhysicalID, map[string]any{"IssuerIdentifier": issuer}, nil
}

// federationState reads the account's issuer and whether tokens are vended.
func federationState(ctx context.Context, api FederationAPI) (issuer string, on bool, err error) {
	out, err := api.GetOutboundWebIdentityFederationInfo(ctx, &iam.GetOutboundWebIdentityFederationInfoInput{})
	var disabled *iamtypes.FeatureDisabledException
	switch {
	case errors.As(err, &disabled):
		return "", false, nil
	case err != nil:
		return "", false, iamError("read the outbound identity federation state (iam:GetOutboundWebIdentityFederationInfo)", err)
	}
	return aws.ToString(out.IssuerIdentifier), out.JwtVendingEnabled, nil
}

// iamError names the step and, for a refusal, what to grant.
func iamError(step string, err error) error {
	var api smithy.APIError
	if errors.As(err, &api) && (api.ErrorCode() == "AccessDenied" || api.ErrorCode() == "AccessDeniedException") {
		return fmt.Errorf("%s: AWS refused: the provisioner role needs iam:GetOutboundWebIdentityFederationInfo and iam:EnableOutboundWebIdentityFederation (the provisioner stack grants both with -c trust=webIdentity): %w", step, err)
	}
	return fmt.Errorf("%s: %w", step, err)
}
