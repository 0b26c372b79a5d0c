package provision

import (
	"context"
	"fmt"
	"net/url"
	"sync/atomic"

	"chainguard.dev/sdk/auth"
	clients "chainguard.dev/sdk/proto/chainguard/platform/clients/v2"
	iam "chainguard.dev/sdk/proto/chainguard/platform/iam/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Connector connects a Provisioner to the Chainguard IAM API (IAM v2).
type Connector interface {
	// Connect returns IAM v2 clients that act with a token obtained now (for
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
		return NewClients(ctx, apiURL, accessToken)
	})
}

// UserAgent is the user agent the provisioner's IAM clients send.
const UserAgent = "cdk-chainguard-provisioner"

// NewClients returns IAM v2 clients that call the Chainguard API at apiURL
// (https://console-api.enforce.dev, the same URL the v1 clients and the
// vendor's Terraform provider use for v2; http://127.0.0.1:PORT for the
// local emulator) with accessToken, dialed by the SDK's own v2 constructor
// (proto/chainguard/platform/clients/v2 NewClients: TLS for https,
// plaintext for http, the token as per-RPC credentials), over one
// connection that their Close closes. No RPC is made here.
func NewClients(ctx context.Context, apiURL, accessToken string) (iam.Clients, error) {
	// go-grpc-kit panics on a URL without a scheme: refuse it first.
	if u, err := url.Parse(apiURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("connect to the Chainguard IAM API: %q is not an http:// or https:// URL (for example https://console-api.enforce.dev)", apiURL)
	}
	c, err := clients.NewClients(ctx, apiURL, UserAgent, auth.NewFromToken(ctx, accessToken, false), grpc.WithChainUnaryInterceptor(countRPC))
	if err != nil {
		return nil, fmt.Errorf("connect to the Chainguard IAM API at %s: %w", apiURL, err)
	}
	return ownedConn{Clients: c.IAM(), close: c.Close}, nil
}

// rpcCounter is the context key under which a Provisioner passes its RPC
// counter (an *atomic.Int64) to the clients NewClients made, which add one
// for every RPC they send: each page of a list counts.
type rpcCounter struct{}

// countRPC counts the RPC in the counter ctx carries, if any.
func countRPC(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if n, ok := ctx.Value(rpcCounter{}).(*atomic.Int64); ok {
		n.Add(1)
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// ownedConn is IAM v2 clients that own their connection (the SDK's IAM
// clients leave closing it to the caller).
type ownedConn struct {
	iam.Clients
	close func() error
}

// Close closes the connection.
func (c ownedConn) Close() error { return c.close() }

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
