// Package repos lists the Chainguard registry repositories of a group.
//
// It is a package of its own because the registry v1 client pulls in a large
// dependency tree (go-git via apko) that the provisioner binary must not carry.
package repos

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	common "chainguard.dev/sdk/proto/platform/common/v1"
	registry "chainguard.dev/sdk/proto/platform/registry/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/assumable-identity/cdk-chainguard/chainguard/internal/rpcerr"
	"github.com/assumable-identity/cdk-chainguard/chainguard/validate/locator"
)

// DefaultTimeout bounds the listing when List is given a zero timeout.
const DefaultTimeout = 10 * time.Second

// Repo is one registry repository.
type Repo struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// List returns the repositories that are direct children of group, sorted by
// name, using accessToken (a Chainguard access token whose identity may list
// repos there: viewer, registry.pull or more on the group or an ancestor).
// The call is bounded by timeout (zero means DefaultTimeout) and by ctx.
func List(ctx context.Context, apiURL, accessToken, group string, timeout time.Duration) ([]Repo, error) {
	step := fmt.Sprintf("list repos of group %s at %s", group, apiURL)
	if err := locator.UIDP("group", group); err != nil {
		return nil, fmt.Errorf("%s: %w", step, err)
	}
	// The SDK panics on a URL without a scheme, and a token must not cross
	// the network in clear text.
	if err := locator.ServiceURL("API URL", apiURL); err != nil {
		return nil, fmt.Errorf("%s: %w", step, err)
	}
	switch {
	case accessToken == "":
		return nil, fmt.Errorf("%s: no access token: exchange one first (package token)", step)
	case timeout < 0:
		return nil, fmt.Errorf("%s: timeout %s is negative: use a positive duration such as 10s, or zero for the default %s", step, timeout, DefaultTimeout)
	case timeout == 0:
		timeout = DefaultTimeout
	}

	parent := ctx
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	clients, err := registry.NewClients(ctx, apiURL, accessToken)
	if err != nil {
		return nil, fmt.Errorf("%s: connect: %w", step, err)
	}
	defer clients.Close()

	list, err := clients.Registry().ListRepos(ctx, &registry.RepoFilter{
		Uidp: &common.UIDPFilter{ChildrenOf: group},
	})
	if err != nil {
		return nil, describe(step, timeout, rpcerr.CallerDeadlineFirst(parent, ctx), err)
	}
	out := make([]Repo, 0, len(list.GetItems()))
	for _, r := range list.GetItems() {
		out = append(out, Repo{ID: r.GetId(), Name: r.GetName()})
	}
	slices.SortFunc(out, func(a, b Repo) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// describe words a ListRepos failure with the service's reason and a hint.
// The result still matches the gRPC status (status.Code, errors.As) without
// repeating its text.
func describe(step string, timeout time.Duration, callerDeadline bool, err error) error {
	st, isStatus := status.FromError(err)
	switch {
	case errors.Is(err, context.DeadlineExceeded) || st.Code() == codes.DeadlineExceeded:
		if callerDeadline {
			return &listError{msg: step + ": the caller's deadline passed before the service answered", cause: err}
		}
		return &listError{msg: fmt.Sprintf("%s: no answer within %s: check the API URL and that the service is up", step, timeout), cause: err}
	case !isStatus:
		return fmt.Errorf("%s: %w", step, err)
	}
	hint := ""
	switch st.Code() {
	case codes.PermissionDenied:
		hint = " (the identity needs viewer, registry.pull or more on this group or an ancestor)"
	case codes.Unauthenticated:
		hint = " (the access token is missing, invalid or expired: exchange a new one)"
	case codes.InvalidArgument:
		hint = " (check the group UIDP)"
	}
	return &listError{msg: fmt.Sprintf("%s: %s: %s%s", step, rpcerr.CodeText(st.Code()), st.Message(), hint), cause: err}
}

// listError has its own message and unwraps to the gRPC error it describes.
type listError struct {
	msg   string
	cause error
}

func (e *listError) Error() string { return e.msg }
func (e *listError) Unwrap() error { return e.cause }
