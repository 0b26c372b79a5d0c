package trust

import (
	"errors"
	"strings"
	"testing"

	iam "chainguard.dev/sdk/proto/platform/iam/v1"
	"google.golang.org/protobuf/proto"

	"github.com/assumable-identity/cdk-chainguard/chainguard/validate"
)

const (
	acct    = "111122223333"
	arn     = "arn:aws:sts::111122223333:assumed-role/aws-auth/my-function"
	userID  = "AROA1234567890ABCDEFG:my-function"
	arnPat  = "^arn:aws:sts::111122223333:assumed-role/aws-auth/.*$"
	userPat = "^AROA1234567890ABCDEFG:.*$"
)

func TestValidate(t *testing.T) {
	exact := AWS{Account: acct, ARN: arn, UserID: userID}
	with := func(f func(*AWS)) AWS {
		a := exact
		f(&a)
		return a
	}
	tests := []struct {
		name    string
		in      AWS
		wantErr string // substring; "" = valid
	}{
		{"exact", exact, ""},
		{"patterns", AWS{Account: acct, ARNPattern: arnPat, UserIDPattern: userPat}, ""},
		{"exact arn, user id pattern", with(func(a *AWS) { a.UserID, a.UserIDPattern = "", userPat }), ""},
		{"reference unpinned with opt-in", with(func(a *AWS) {
			a.UserID, a.UserIDPattern, a.AllowUnpinnedUserID = "", "^AROA(.*):my-function$", true
		}), ""},
		{"gov partition", AWS{Account: acct, ARN: "arn:aws-us-gov:sts::111122223333:assumed-role/r/s1", UserID: "AROA1234567890ABCDEFG:s1"}, ""},

		{"no account", with(func(a *AWS) { a.Account = "" }), `Account: AWS account ID is empty: expected exactly 12 digits, e.g. "111122223333"`},
		{"bad account", with(func(a *AWS) { a.Account = "1111-2222-3333" }), `Account: AWS account ID "1111-2222-3333" is not valid: write it without dashes: "111122223333"`},
		{"no arn", with(func(a *AWS) { a.ARN = "" }), `ARN or ARNPattern: neither is set, set exactly one: ARN for one principal, e.g. "arn:aws:sts::111122223333:assumed-role/my-role/my-function", or ARNPattern for an anchored regular expression, e.g. "^arn:aws:sts::111122223333:assumed-role/my-role/.*$"`},
		{"both arns", with(func(a *AWS) { a.ARNPattern = arnPat }), `ARN or ARNPattern: both are set, set exactly one`},
		{"bad arn", with(func(a *AWS) { a.ARN = "aws-auth" }), `ARN: assumed-role ARN "aws-auth" is not an ARN`},
		{"role arn", with(func(a *AWS) { a.ARN = "arn:aws:iam::111122223333:role/aws-auth" }), `ARN: assumed-role ARN "arn:aws:iam::111122223333:role/aws-auth" is the ARN of the IAM role itself`},
		{"arn other account", with(func(a *AWS) { a.ARN = "arn:aws:sts::444455556666:assumed-role/aws-auth/my-function" }), `ARN: "arn:aws:sts::444455556666:assumed-role/aws-auth/my-function" is in account 444455556666 but Account is 111122223333`},
		{"arn pattern any role", with(func(a *AWS) { a.ARN, a.ARNPattern = "", "^arn:aws:sts::111122223333:assumed-role/.*/my-function$" }), `ARNPattern: ARN pattern "^arn:aws:sts::111122223333:assumed-role/.*/my-function$" does not name a role literally: it admits role "x", e.g. "arn:aws:sts::111122223333:assumed-role/x/my-function", and so any role`},
		{"arn pattern two roles", with(func(a *AWS) {
			a.ARN, a.ARNPattern = "", "^arn:aws:sts::111122223333:assumed-role/(?:aws-auth|admin)/.*$"
		}), `ARNPattern: ARN pattern "^arn:aws:sts::111122223333:assumed-role/(?:aws-auth|admin)/.*$" admits role "admin"`},
		{"arn pattern other account", with(func(a *AWS) { a.ARN, a.ARNPattern = "", "^arn:aws:sts::444455556666:assumed-role/aws-auth/.*$" }), `in account 111122223333`},
		{"arn pattern unanchored", with(func(a *AWS) { a.ARN, a.ARNPattern = "", "arn:aws:sts::111122223333:assumed-role/aws-auth/" }), `ARNPattern: ARN pattern "arn:aws:sts::111122223333:assumed-role/aws-auth/" is not anchored at both ends`},
		{"arn pattern alternative hides another account", with(func(a *AWS) {
			a.ARN, a.ARNPattern = "", `^(?:arn:aws:sts::111122223333:assumed-role/aws-auth/.*|y?y?y?y?y?y?y?y?y?arn:aws:sts::444455556666:assumed-role/evil/.*)$`
		}), `ARNPattern: ARN pattern "^(?:arn:aws:sts::111122223333:assumed-role/aws-auth/.*|y?y?y?y?y?y?y?y?y?arn:aws:sts::444455556666:assumed-role/evil/.*)$" admits account 444455556666, e.g. "arn:aws:sts::444455556666:assumed-role/evil/": a pattern must match only account 111122223333`},
		{"arn pattern optional prefix hides another account", with(func(a *AWS) {
			a.ARN, a.ARNPattern = "", `^x?x?x?x?x?x?x?x?x?arn:aws:sts::(?:111122223333|444455556666):assumed-role/aws-auth/.*$`
		}), `ARNPattern: ARN pattern "^x?x?x?x?x?x?x?x?x?arn:aws:sts::(?:111122223333|444455556666):assumed-role/aws-auth/.*$" admits account 444455556666`},
		{"arn pattern fold case", with(func(a *AWS) { a.ARN, a.ARNPattern = "", `(?i)^arn:aws:sts::111122223333:assumed-role/aws-auth/.*$` }), `(drop the (?i) flag: ARNs are matched case-sensitively)`},
		{"arn pattern of the construct", with(func(a *AWS) {
			a.ARN, a.ARNPattern = "", `^arn:aws:sts::111122223333:assumed-role/example-role/(?:[0-9a-f]{32}|i-[0-9a-f]{17})$`
		}), ""},
		{"user id pattern of the construct", with(func(a *AWS) { a.UserID, a.UserIDPattern = "", `^AROAEXAMPLE0EXAMPLE01:(?:eks-mycluster-.+)$` }), ""},
		{"user id pattern without colon", with(func(a *AWS) { a.UserID, a.UserIDPattern = "", `^AROA1234567890ABCDEFGZ?.*$` }), `UserIDPattern: user ID pattern "^AROA1234567890ABCDEFGZ?.*$" does not require ":" right after the role unique ID AROA1234567890ABCDEFG`},
		{"no user id", with(func(a *AWS) { a.UserID = "" }), `UserID or UserIDPattern: neither is set, set exactly one: UserID for one principal, e.g. "AROA1234567890ABCDEFG:my-function"`},
		{"both user ids", with(func(a *AWS) { a.UserIDPattern = userPat }), `UserID or UserIDPattern: both are set, set exactly one`},
		{"bad user id", with(func(a *AWS) { a.UserID = "AROAEXAMPLE:my-function" }), `UserID: user ID "AROAEXAMPLE:my-function" does not start with a role unique ID`},
		{"user id session mismatch", with(func(a *AWS) { a.UserID = "AROA1234567890ABCDEFG:other-fn" }), `UserID: "AROA1234567890ABCDEFG:other-fn" has session name "other-fn" but ARN "arn:aws:sts::111122223333:assumed-role/aws-auth/my-function" has session name "my-function"`},
		{"reference unpinned without opt-in", with(func(a *AWS) { a.UserID, a.UserIDPattern = "", "^AROA(.*):my-function$" }), `UserIDPattern: user ID pattern "^AROA(.*):my-function$" does not pin a role unique ID`},
		{"user id pattern top alternation", with(func(a *AWS) {
			a.UserID, a.UserIDPattern, a.AllowUnpinnedUserID = "", "^AROA1234567890ABCDEFG:a$|.*", true
		}), `UserIDPattern: user ID pattern "^AROA1234567890ABCDEFG:a$|.*" is not anchored at both ends`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.in.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v\nwant one containing %q", err, tt.wantErr)
			}
			if !errors.Is(err, validate.ErrInvalid) {
				t.Errorf("error %q does not match validate.ErrInvalid", err)
			}
		})
	}
}

func TestProtoRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   AWS
		want *iam.Identity_AWSIdentity
	}{
		{"exact", AWS{Account: acct, ARN: arn, UserID: userID}, &iam.Identity_AWSIdentity{
			AwsAccount: acct,
			AwsArn:     &iam.Identity_AWSIdentity_Arn{Arn: arn},
			AwsUserId:  &iam.Identity_AWSIdentity_UserId{UserId: userID},
		}},
		{"patterns", AWS{Account: acct, ARNPattern: arnPat, UserIDPattern: userPat}, &iam.Identity_AWSIdentity{
			AwsAccount: acct,
			AwsArn:     &iam.Identity_AWSIdentity_ArnPattern{ArnPattern: arnPat},
			AwsUserId:  &iam.Identity_AWSIdentity_UserIdPattern{UserIdPattern: userPat},
		}},
		{"mixed", AWS{Account: acct, ARN: arn, UserIDPattern: userPat}, &iam.Identity_AWSIdentity{
			AwsAccount: acct,
			AwsArn:     &iam.Identity_AWSIdentity_Arn{Arn: arn},
			AwsUserId:  &iam.Identity_AWSIdentity_UserIdPattern{UserIdPattern: userPat},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.in.Proto()
			if !proto.Equal(p.AwsIdentity, tt.want) {
				t.Fatalf("Proto() = %v, want %v", p.AwsIdentity, tt.want)
			}
			// Through the wire format, as the provisioner sends it.
			b, err := proto.Marshal(&iam.Identity{Name: "x", Relationship: p})
			if err != nil {
				t.Fatal(err)
			}
			var back iam.Identity
			if err := proto.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if got := FromProto(back.GetAwsIdentity()); got != tt.in {
				t.Fatalf("FromProto(Proto()) = %+v, want %+v", got, tt.in)
			}
		})
	}
}

func TestFromProtoNil(t *testing.T) {
	if got := FromProto(nil); got != (AWS{}) {
		t.Fatalf("FromProto(nil) = %+v, want zero", got)
	}
}

func TestEqual(t *testing.T) {
	a := AWS{Account: acct, ARN: arn, UserIDPattern: "^AROA(.*):my-function$", AllowUnpinnedUserID: true}
	stored := FromProto(a.Proto().AwsIdentity)
	tests := []struct {
		name string
		b    AWS
		want bool
	}{
		{"same", a, true},
		{"stored copy loses the opt-in", stored, true},
		{"other account", func() AWS { b := a; b.Account = "444455556666"; return b }(), false},
		{"exact vs pattern", func() AWS { b := a; b.ARN, b.ARNPattern = "", arnPat; return b }(), false},
		{"other user id pattern", func() AWS { b := a; b.UserIDPattern = userPat; return b }(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := a.Equal(tt.b); got != tt.want {
				t.Errorf("Equal = %v, want %v", got, tt.want)
			}
			if got := tt.b.Equal(a); got != tt.want {
				t.Errorf("symmetric Equal = %v, want %v", got, tt.want)
			}
		})
	}
}
