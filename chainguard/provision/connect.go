package provision

import (
	"context"
	"fmt"

	iam "chainguard.dev/sdk/proto/platform/iam/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Connector connects a Provisioner to the Chainguard IAM API.
type Connector interface {
	// Connect returns IAM clients that act with a token obtained now (for
	// the provisioner, a fresh exchange of its AWS credentials). The
	// Provisioner calls it again before each retry after PermissionDenied,
	// and closes every client it got when it is closed. An error whose
	// status.Code is NotFound or PermissionDenied means "refused" (the
	// identity is new and not yet known to the STS) and is retried within
	// the PermissionDenied budget; any other error is final.
	Connect(ctx context.Context) (iam.Clients, error)
}

// ConnectFunc adapts a function to Connector.
type ConnectFunc func(ctx context.Context) (iam.Clients, error)

// Connect calls f.
func (f ConnectFunc) Connect(ctx context.Context) (iam.Clients, error) { return f(ctx) }

// Static returns a Connector that connects to apiURL with accessToken, an
// already obtained token: reconnecting does not refresh it.
func Static(apiURL, accessToken string) Connector {
	return ConnectFunc(func(ctx context.Context) (iam.Clients, error) {
		c, err := iam.NewClients(ctx, apiURL, accessToken)
		if err != nil {
			return nil, fmt.Errorf("connect to the Chainguard IAM API at %s: %w", apiURL, err)
		}
		return c, nil
	})
}

// refused reports whether a Connect error is a refusal that may be
// propagation (see Connector).
func refused(err error) bool {
	switch status.Code(err) {
	case codes.NotFound, codes.PermissionDenied:
		return true
	}
	return false
}

// Connect connects the Provisioner unless it already is. A refused connect
// is retried within the PermissionDenied budget (see Connector); the error
// then says how.
func (p *Provisioner) Connect(ctx context.Context) error {
	p.mu.Lock()
	connected := p.current != nil
	p.mu.Unlock()
	if connected {
		return nil
	}
	r := &retries{}
	err := p.retryDenied(ctx, r, refused, false, func() error { return p.reconnect(ctx) })
	if err == nil {
		return nil
	}
	return r.annotate(err, identityPropagationNote)
}

// reconnect replaces the clients calls go through with new ones (a fresh
// token). The old ones stay open for calls still using them, until Close.
func (p *Provisioner) reconnect(ctx context.Context) error {
	c, err := p.conn.Connect(ctx)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.current = c
	p.opened = append(p.opened, c)
	return nil
}

// clients returns the clients calls go through, connecting first if need
// be.
func (p *Provisioner) clients(ctx context.Context) (iam.Clients, error) {
	if err := p.Connect(ctx); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.current == nil {
		return nil, fmt.Errorf("the Chainguard IAM connection is closed")
	}
	return p.current, nil
}
