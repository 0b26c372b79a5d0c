package stacks

import (
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/regioninfo"
	"github.com/aws/jsii-runtime-go"

	"github.com/assumable-identity/cdk-chainguard/chainguard/provision"
	"github.com/assumable-identity/cdk-chainguard/chainguard/validate"
)

func TestDescriptionLeavesRoomForOwnershipMarker(t *testing.T) {
	tests := []struct {
		name string
		env  *awscdk.Environment
		// region is the region the marker is measured with: the stack's,
		// or a stand-in as long as the longest region name.
		region string
		// build adds a group or an identity with description to stack.
		build func(stack awscdk.Stack, description string)
		typ   string
	}{
		{
			name:   "identity, environment-agnostic stack",
			region: strings.Repeat("r", maxRegionLen),
			build: func(s awscdk.Stack, description string) {
				p := validIdentity(lambdaRole(s))
				p.Description = description
				NewAssumableIdentity(s, "Identity", p)
			},
			typ: IdentityResourceType,
		},
		{
			name:   "identity, stack in us-east-1",
			env:    &awscdk.Environment{Account: jsii.String(testAccount), Region: jsii.String("us-east-1")},
			region: "us-east-1",
			build: func(s awscdk.Stack, description string) {
				p := validIdentity(lambdaRole(s))
				p.Description = description
				NewAssumableIdentity(s, "Identity", p)
			},
			typ: IdentityResourceType,
		},
		{
			name:   "group with a long construct ID, stack in ap-southeast-2",
			env:    &awscdk.Environment{Region: jsii.String("ap-southeast-2")},
			region: "ap-southeast-2",
			build: func(s awscdk.Stack, description string) {
				NewGroup(s, strings.Repeat("G", 80), &GroupProps{Parent: testGroup, Name: "group", Description: description, Provisioner: testSettings()})
			},
			typ: GroupResourceType,
		},
	}
	const stackName = "ChainguardMarkerStack"
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synth := func(description string) (string, error) {
				t.Helper()
				app := newTestApp(t, false, nil)
				stack := awscdk.NewStack(app, jsii.String(stackName), &awscdk.StackProps{Env: tt.env})
				must(t, "build", func() { tt.build(stack, description) })
				if err := Synth(app); err != nil {
					return "", err
				}
				id, _ := docOf(t, templateOf(t, stack)).one(t, tt.typ)
				return id, nil
			}
			// given the resource's logical ID and the longest description the provisioner would store with the marker of a stack of this name in this region
			logicalID, err := synth("short")
			if err != nil {
				t.Fatalf("synth with a short description: %v", err)
			}
			managedBy := strings.Join([]string{testAccount, tt.region, stackName, "01234567-89ab-cdef-0123-456789abcdef", logicalID}, "/")
			longest := 0
			for n := 1; n <= validate.MaxDescriptionLen; n++ {
				if _, err := provision.StoredDescription(strings.Repeat("d", n), managedBy); err != nil {
					break
				}
				longest = n
			}

			// when the construct gets a description of that length, and one character more
			_, errFits := synth(strings.Repeat("d", longest))
			_, errLong := synth(strings.Repeat("d", longest+1))

			// then the first synthesizes and the second fails, saying how long the description may be
			if errFits != nil {
				t.Errorf("description of %d characters: synth failed: %v", longest, errFits)
			}
			want := fmt.Sprintf("Description: description is %d characters long, but the provisioner appends the ownership marker", longest+1)
			if errLong == nil || !strings.Contains(errLong.Error(), want) || !strings.Contains(errLong.Error(), fmt.Sprintf("shorten the description to at most %d characters", longest)) {
				t.Errorf("description of %d characters: synth error = %v, want one containing %q and the limit %d", longest+1, errLong, want, longest)
			}
		})
	}
}

func TestMaxRegionLenCoversEveryKnownRegion(t *testing.T) {
	// given every region aws-cdk-lib knows
	var longest string
	for _, r := range *regioninfo.RegionInfo_Regions() {
		if n := *r.Name(); len(n) > len(longest) {
			longest = n
		}
	}

	// then the worst case of the ownership marker check is the longest of them
	if len(longest) != maxRegionLen {
		t.Errorf("longest known region %q has %d characters, maxRegionLen = %d", longest, len(longest), maxRegionLen)
	}
}
