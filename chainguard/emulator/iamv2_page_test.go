package emulator_test

import (
	"fmt"
	"slices"
	"sort"
	"testing"

	iamv2 "chainguard.dev/sdk/proto/chainguard/platform/iam/v2"
	common "chainguard.dev/sdk/proto/platform/common/v1"
	"google.golang.org/grpc/codes"

	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator"
	"github.com/assumable-identity/cdk-chainguard/chainguard/emulator/emulatortest"
)

// TestV2Pagination checks v2 List pagination with Options.PageSize 2: the
// SDK's ListXAll helpers see every object, each page holds at most two,
// order_by, skip, and the refusals of bad page parameters.
func TestV2Pagination(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{PageSize: 2})
	ctx := testCtx(t)
	v2 := emulatortest.IAMv2(t, env.Emulator, env.MintToken(env.Provisioner))
	var want []string // identity UIDs in env.Group
	for _, n := range []string{"echo", "alpha", "delta", "bravo", "charlie"} {
		want = append(want, env.SeedIdentity(env.Group, n, "", env.WorkloadPrincipal.ExactTrust(), map[string][]string{env.Group: {"viewer"}}))
	}
	sort.Strings(want)
	inGroup := &common.UIDPFilter{ChildrenOf: env.Group}

	t.Run("SDK helpers see everything", func(t *testing.T) {
		ids, err := v2.ListIdentitiesAll(ctx, &iamv2.ListIdentitiesRequest{Uidp: inGroup})
		checkErr(t, err, codes.OK)
		if got := uids(ids); !slices.Equal(got, want) {
			t.Errorf("ListIdentitiesAll = %v, want %v (uid asc)", got, want)
		}
		groups, err := v2.ListGroupsAll(ctx, &iamv2.ListGroupsRequest{})
		checkErr(t, err, codes.OK)
		if len(groups) != 2 {
			t.Errorf("ListGroupsAll = %d groups, want 2", len(groups))
		}
		roles, err := v2.ListRolesAll(ctx, &iamv2.ListRolesRequest{})
		checkErr(t, err, codes.OK)
		if len(roles) != len(env.State().Roles) {
			t.Errorf("ListRolesAll = %d roles, want %d", len(roles), len(env.State().Roles))
		}
		bindings, err := v2.ListRoleBindingsAll(ctx, &iamv2.ListRoleBindingsRequest{Group: env.Group})
		checkErr(t, err, codes.OK)
		if len(bindings) != len(want) {
			t.Errorf("ListRoleBindingsAll = %d bindings, want %d", len(bindings), len(want))
		}
	})

	// pages lists req page by page and returns the UIDs of each page.
	pages := func(t *testing.T, req *iamv2.ListIdentitiesRequest) [][]string {
		t.Helper()
		var out [][]string
		for range 10 {
			resp, err := v2.IdentitiesService().ListIdentities(ctx, req)
			checkErr(t, err, codes.OK)
			out = append(out, uids(resp.GetIdentities()))
			if resp.GetNextPageToken() == "" {
				return out
			}
			req.PageToken = resp.GetNextPageToken()
		}
		t.Fatalf("more than 10 pages: %v", out)
		return nil
	}

	t.Run("PageSize caps pages whatever page_size asks", func(t *testing.T) {
		for _, size := range []int32{0, 50, 1000} {
			got := pages(t, &iamv2.ListIdentitiesRequest{Uidp: inGroup, PageSize: size})
			if len(got) != 3 || len(got[0]) != 2 || len(got[1]) != 2 || len(got[2]) != 1 || !slices.Equal(slices.Concat(got...), want) {
				t.Errorf("page_size %d: pages %v, want 2+2+1 of %v", size, got, want)
			}
		}
		got := pages(t, &iamv2.ListIdentitiesRequest{Uidp: inGroup, PageSize: 1})
		if len(got) != 5 {
			t.Errorf("page_size 1: %d pages, want 5", len(got))
		}
	})

	t.Run("order_by name desc", func(t *testing.T) {
		got := pages(t, &iamv2.ListIdentitiesRequest{Uidp: inGroup, OrderBy: "name desc"})
		var names []string
		ids, err := v2.ListIdentitiesAll(ctx, &iamv2.ListIdentitiesRequest{Uidp: inGroup, OrderBy: "name desc"})
		checkErr(t, err, codes.OK)
		for _, id := range ids {
			names = append(names, id.GetName())
		}
		if !slices.Equal(names, []string{"echo", "delta", "charlie", "bravo", "alpha"}) || len(slices.Concat(got...)) != 5 {
			t.Errorf("names by name desc: %v (pages %v)", names, got)
		}
	})

	t.Run("skip accumulates", func(t *testing.T) {
		resp, err := v2.IdentitiesService().ListIdentities(ctx, &iamv2.ListIdentitiesRequest{Uidp: inGroup, Skip: 1})
		checkErr(t, err, codes.OK)
		if got := uids(resp.GetIdentities()); !slices.Equal(got, want[1:3]) || resp.GetSkipped() != 1 {
			t.Fatalf("skip 1: %v skipped %d, want %v skipped 1", got, resp.GetSkipped(), want[1:3])
		}
		resp, err = v2.IdentitiesService().ListIdentities(ctx, &iamv2.ListIdentitiesRequest{Uidp: inGroup, Skip: 1, PageToken: resp.GetNextPageToken()})
		checkErr(t, err, codes.OK)
		if got := uids(resp.GetIdentities()); !slices.Equal(got, want[4:]) || resp.GetSkipped() != 2 || resp.GetNextPageToken() != "" {
			t.Errorf("skip 1 again from the cursor: %v skipped %d, want %v skipped 2 and no next page", got, resp.GetSkipped(), want[4:])
		}
	})

	t.Run("objects deleted between pages shift nothing", func(t *testing.T) {
		first, err := v2.RoleBindingsService().ListRoleBindings(ctx, &iamv2.ListRoleBindingsRequest{Group: env.Group})
		checkErr(t, err, codes.OK)
		all, err := v2.ListRoleBindingsAll(ctx, &iamv2.ListRoleBindingsRequest{Group: env.Group})
		checkErr(t, err, codes.OK)
		_, err = v2.RoleBindingsService().DeleteRoleBinding(ctx, &iamv2.DeleteRoleBindingRequest{Uid: first.GetRoleBindings()[0].GetUid()})
		checkErr(t, err, codes.OK)
		second, err := v2.RoleBindingsService().ListRoleBindings(ctx, &iamv2.ListRoleBindingsRequest{Group: env.Group, PageToken: first.GetNextPageToken()})
		checkErr(t, err, codes.OK)
		if got := second.GetRoleBindings(); len(got) != 2 || got[0].GetUid() != all[2].GetUid() {
			t.Errorf("second page after deleting an item of the first: %v, want it to start at %s", got, all[2].GetUid())
		}
	})

	first, err := v2.IdentitiesService().ListIdentities(ctx, &iamv2.ListIdentitiesRequest{Uidp: inGroup})
	checkErr(t, err, codes.OK)
	other := emulatortest.NewEnv(t, emulator.Options{PageSize: 2})
	for _, n := range []string{"more", "most"} {
		other.SeedIdentity(other.Group, n, "", other.WorkloadPrincipal.ExactTrust(), nil)
	}
	foreign, err := emulatortest.IAMv2(t, other.Emulator, other.MintToken(other.Provisioner)).IdentitiesService().ListIdentities(ctx, &iamv2.ListIdentitiesRequest{Uidp: &common.UIDPFilter{DescendantsOf: other.Root}})
	checkErr(t, err, codes.OK)
	if foreign.GetNextPageToken() == "" {
		t.Fatal("no next page in the other emulator")
	}
	tok := first.GetNextPageToken()
	tests := []struct {
		name string
		req  *iamv2.ListIdentitiesRequest
		msg  string
	}{
		{"negative page_size", &iamv2.ListIdentitiesRequest{PageSize: -1}, "page_size"},
		{"negative skip", &iamv2.ListIdentitiesRequest{Skip: -1}, "skip"},
		{"order_by an unknown field", &iamv2.ListIdentitiesRequest{OrderBy: "email"}, "order_by"},
		{"order_by two fields", &iamv2.ListIdentitiesRequest{OrderBy: "name, uid"}, "several"},
		{"order_by a bad direction", &iamv2.ListIdentitiesRequest{OrderBy: "name up"}, "direction"},
		{"forged page_token", &iamv2.ListIdentitiesRequest{Uidp: inGroup, PageToken: "eyJrIjoiIn0.AAAA"}, "page_token"},
		{"garbage page_token", &iamv2.ListIdentitiesRequest{Uidp: inGroup, PageToken: "not a token"}, "page_token"},
		{"page_token with another filter", &iamv2.ListIdentitiesRequest{Uidp: &common.UIDPFilter{DescendantsOf: env.Root}, PageToken: tok}, "another method, filter or order_by"},
		{"page_token with another order_by", &iamv2.ListIdentitiesRequest{Uidp: inGroup, OrderBy: "uid desc", PageToken: tok}, "another method, filter or order_by"},
		{"page_token of another emulator", &iamv2.ListIdentitiesRequest{Uidp: &common.UIDPFilter{DescendantsOf: other.Root}, PageToken: foreign.GetNextPageToken()}, "not one this server issued"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v2.IdentitiesService().ListIdentities(ctx, tt.req)
			checkErr(t, err, codes.InvalidArgument, tt.msg)
		})
	}
	t.Run("page_token of another method", func(t *testing.T) {
		_, err := v2.GroupsService().ListGroups(ctx, &iamv2.ListGroupsRequest{PageToken: tok})
		checkErr(t, err, codes.InvalidArgument, "another method")
	})
	t.Run("page_size may change between pages", func(t *testing.T) {
		_, err := v2.IdentitiesService().ListIdentities(ctx, &iamv2.ListIdentitiesRequest{Uidp: inGroup, PageSize: 7, PageToken: tok})
		checkErr(t, err, codes.OK)
	})
}

// TestV2DefaultPageSize checks the protos' default (50) and maximum (200)
// page sizes when Options.PageSize is zero.
func TestV2DefaultPageSize(t *testing.T) {
	env := emulatortest.NewEnv(t, emulator.Options{})
	ctx := testCtx(t)
	v2 := emulatortest.IAMv2(t, env.Emulator, env.MintToken(env.Provisioner))
	for i := range 205 {
		env.SeedIdentity(env.Group, fmt.Sprintf("id-%03d", i), "", env.WorkloadPrincipal.ExactTrust(), nil)
	}
	for _, tt := range []struct{ size, want int32 }{{0, 50}, {10, 10}, {200, 200}, {500, 200}} {
		resp, err := v2.IdentitiesService().ListIdentities(ctx, &iamv2.ListIdentitiesRequest{PageSize: tt.size, Uidp: &common.UIDPFilter{ChildrenOf: env.Group}})
		checkErr(t, err, codes.OK)
		if got := int32(len(resp.GetIdentities())); got != tt.want || resp.GetNextPageToken() == "" || resp.TotalCount != nil {
			t.Errorf("page_size %d: %d items (next %q, total_count %v), want %d, a next page and no total_count", tt.size, got, resp.GetNextPageToken(), resp.TotalCount, tt.want)
		}
	}
	if e, err := emulator.Start(emulator.Options{PageSize: 201}); err == nil {
		_ = e.Close()
		t.Error("Start accepted PageSize 201")
	}
}

// uids returns the uid of each item.
func uids[T interface{ GetUid() string }](items []T) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.GetUid()
	}
	return out
}
