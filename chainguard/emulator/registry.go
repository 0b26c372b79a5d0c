package emulator

import (
	"context"

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
	e, caller, q := s.e, callerOf(ctx), listQuery{uidp: f.GetUidp(), id: f.GetId(), name: f.GetName()}
	items, err := list(e, q, e.repos, func(id string, r *repo) bool {
		return q.matches(id, r.name) && e.tokenHas(caller, id, capabilities.Capability_CAP_REPO_LIST)
	}, func(r *repo) *registry.Repo {
		return &registry.Repo{Id: r.id, Name: r.name, CreateTime: timestamppb.New(r.created)}
	})
	if err != nil {
		return nil, err
	}
	return &registry.RepoList{Items: items}, nil
}
