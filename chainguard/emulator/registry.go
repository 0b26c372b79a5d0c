package emulator

import (
	"context"
	"sort"

	"chainguard.dev/sdk/proto/capabilities"
	registry "chainguard.dev/sdk/proto/platform/registry/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// registryService serves chainguard.platform.registry.Registry: ListRepos
// only; every other method is Unimplemented.
type registryService struct {
	registry.UnimplementedRegistryServer
	e *Emulator
}

// ListRepos returns the repos matching f that the caller's token may list
// (CAP_REPO_LIST on the repo's group or an ancestor, as of the token's
// exchange), sorted by ID; others are left out, never PermissionDenied.
func (s *registryService) ListRepos(ctx context.Context, f *registry.RepoFilter) (*registry.RepoList, error) {
	e := s.e
	if err := checkFilter(f.GetUidp()); err != nil {
		return nil, err
	}
	caller := callerOf(ctx)
	e.mu.Lock()
	defer e.mu.Unlock()
	out := &registry.RepoList{}
	for _, r := range e.repos {
		if (f.GetId() != "" && r.id != f.GetId()) || (f.GetName() != "" && r.name != f.GetName()) ||
			!matchFilter(f.GetUidp(), r.id) || !e.tokenHas(caller, r.id, capabilities.Capability_CAP_REPO_LIST) {
			continue
		}
		out.Items = append(out.Items, &registry.Repo{Id: r.id, Name: r.name, CreateTime: timestamppb.New(r.created)})
	}
	sort.Slice(out.Items, func(i, j int) bool { return out.Items[i].GetId() < out.Items[j].GetId() })
	return out, nil
}
