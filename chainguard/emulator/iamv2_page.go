package emulator

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Pagination of IAM v2 List methods.
//
// Evidence, SDK v0.1.212 proto/chainguard/platform/iam/v2/*.proto, on every
// List*Request: page_size "Default: 50, Maximum: 200"; page_token "Opaque
// token with 3-day expiration"; order_by "Format: "field [asc|desc]" Default:
// "uid asc" Note: Changing order_by between pages invalidates the page
// token"; skip "Number of results to skip before returning ... Can be
// combined with page_token to skip from cursor position. Must be
// non-negative"; and on the responses next_page_token "Empty if no more
// results", skipped "Accumulates across paginated requests", total_count
// "Optional". The rest follows AIP-158 (Pagination), which these protos
// follow: a negative page_size is INVALID_ARGUMENT, a page_size above the
// maximum is coerced to it, a server may return fewer results than
// page_size (so a client must follow next_page_token until it is empty),
// and changing any parameter other than page_size between pages is
// INVALID_ARGUMENT. Readings the emulator chooses where the evidence is
// silent:
//   - Options.PageSize caps every page (default: no cap below the protos'
//     maximum), so tests can force several pages whatever page_size the
//     client sends (the SDK's ListXAll helpers send 50).
//   - The token is a cursor (the sort key of the last item returned), signed
//     with a key of this emulator: a token from another emulator, a forged
//     one, one from another method or filter, or one older than three days
//     is InvalidArgument. Objects created or deleted between pages neither
//     repeat nor shift the following items.
//   - order_by names one field, uid or one of the resource's others listed
//     in the error; several fields are InvalidArgument.
//   - total_count is left unset (it is optional).

const (
	defaultPageSize = 50
	maxPageSize     = 200
	pageTokenTTL    = 72 * time.Hour
)

// pageItem is one object of a List with the keys it can be ordered by.
type pageItem[T any] struct {
	uid  string
	keys map[string]string // order_by field -> sort key (besides uid)
	v    T
}

// pageCursor is the content of a page token.
type pageCursor struct {
	Query   string    `json:"q"` // digest of the method, filter and order_by
	Key     string    `json:"k"` // sort key of the last item returned
	UID     string    `json:"u"` // its uid, the tie-breaker
	Skipped int32     `json:"s"` // results skipped so far
	Issued  time.Time `json:"t"`
}

// listRequest is what the pager reads of a v2 List request.
type listRequest interface {
	proto.Message
	GetPageSize() int32
	GetPageToken() string
	GetOrderBy() string
	GetSkip() int32
}

// page returns the page that req asks for of views (already filtered by the
// caller's rights), as the items that item makes of them, with the next page
// token and the skipped count. orderKeys are the fields besides uid that
// order_by may name.
func page[V, T any](e *Emulator, method string, req listRequest, views []V, item func(V) (pageItem[T], error), orderKeys ...string) ([]T, string, int32, error) {
	items := make([]pageItem[T], len(views))
	for i, v := range views {
		it, err := item(v)
		if err != nil {
			return nil, "", 0, err
		}
		items[i] = it
	}
	size := req.GetPageSize()
	switch {
	case size < 0:
		return nil, "", 0, status.Errorf(codes.InvalidArgument, "page_size %d is negative", size)
	case size == 0:
		size = defaultPageSize
	case size > maxPageSize:
		size = maxPageSize
	}
	if e.pageSize > 0 && int32(e.pageSize) < size {
		size = int32(e.pageSize)
	}
	if req.GetSkip() < 0 {
		return nil, "", 0, status.Errorf(codes.InvalidArgument, "skip %d is negative", req.GetSkip())
	}
	field, desc, err := parseOrderBy(req.GetOrderBy(), orderKeys)
	if err != nil {
		return nil, "", 0, err
	}
	key := func(it pageItem[T]) string {
		if field == "uid" {
			return ""
		}
		return it.keys[field]
	}
	less := func(ak, au, bk, bu string) bool { // a before b in the requested order
		c := strings.Compare(ak, bk)
		if c == 0 {
			c = strings.Compare(au, bu)
		}
		if desc {
			return c > 0
		}
		return c < 0
	}
	slices.SortFunc(items, func(a, b pageItem[T]) int {
		switch {
		case less(key(a), a.uid, key(b), b.uid):
			return -1
		case less(key(b), b.uid, key(a), a.uid):
			return 1
		}
		return 0
	})

	query := queryDigest(method, req)
	var cur pageCursor
	if tok := req.GetPageToken(); tok != "" {
		if cur, err = e.readPageToken(tok); err != nil {
			return nil, "", 0, err
		}
		if cur.Query != query {
			return nil, "", 0, status.Error(codes.InvalidArgument, "page_token was issued for another method, filter or order_by: send the same request as for the first page, changing only page_size and page_token")
		}
		items = slices.DeleteFunc(items, func(it pageItem[T]) bool { return !less(cur.Key, cur.UID, key(it), it.uid) })
	}
	skip := min(int(req.GetSkip()), len(items))
	items = items[skip:]
	skipped := cur.Skipped + int32(skip)
	n := min(int(size), len(items))
	out := make([]T, n)
	for i, it := range items[:n] {
		out[i] = it.v
	}
	if n == len(items) {
		return out, "", skipped, nil
	}
	last := items[n-1]
	next, err := e.pageToken(pageCursor{Query: query, Key: key(last), UID: last.uid, Skipped: skipped, Issued: time.Now()})
	if err != nil {
		return nil, "", 0, err
	}
	return out, next, skipped, nil
}

// parseOrderBy reads "field [asc|desc]" (default "uid asc").
func parseOrderBy(s string, orderKeys []string) (string, bool, error) {
	allowed := append([]string{"uid"}, orderKeys...)
	words := strings.Fields(s)
	if len(words) == 0 {
		return "uid", false, nil
	}
	bad := func(why string) (string, bool, error) {
		return "", false, status.Errorf(codes.InvalidArgument, "order_by %q %s: use \"field [asc|desc]\" with one field of %q", s, why, allowed)
	}
	if strings.Contains(s, ",") || len(words) > 2 {
		return bad("names several fields")
	}
	if !slices.Contains(allowed, words[0]) {
		return bad("names a field the list cannot be ordered by")
	}
	if len(words) == 1 {
		return words[0], false, nil
	}
	switch strings.ToLower(words[1]) {
	case "asc":
		return words[0], false, nil
	case "desc":
		return words[0], true, nil
	}
	return bad("has a direction other than asc or desc")
}

// queryDigest identifies method and req without its page_size, page_token
// and skip (skip may change between pages: "Can be combined with page_token
// to skip from cursor position").
func queryDigest(method string, req proto.Message) string {
	c := proto.Clone(req).ProtoReflect()
	for _, name := range []protoreflect.Name{"page_size", "page_token", "skip"} {
		if f := c.Descriptor().Fields().ByName(name); f != nil {
			c.Clear(f)
		}
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(c.Interface())
	if err != nil { // a message the server just unmarshalled always marshals
		b = []byte(fmt.Sprint(c.Interface()))
	}
	sum := sha256.Sum256(append([]byte(method+"\x00"), b...))
	return b64.EncodeToString(sum[:])
}

// pageToken signs cur with the emulator's page key.
func (e *Emulator) pageToken(cur pageCursor) (string, error) {
	payload, err := json.Marshal(cur)
	if err != nil {
		return "", status.Errorf(codes.Internal, "emulator: encode page token: %v", err)
	}
	mac := hmac.New(sha256.New, e.pageKey)
	mac.Write(payload)
	return b64.EncodeToString(payload) + "." + b64.EncodeToString(mac.Sum(nil)), nil
}

// readPageToken verifies tok and returns its cursor.
func (e *Emulator) readPageToken(tok string) (pageCursor, error) {
	invalid := status.Error(codes.InvalidArgument, "page_token is not one this server issued: pass next_page_token from the previous response unchanged")
	p, m, ok := strings.Cut(tok, ".")
	if !ok {
		return pageCursor{}, invalid
	}
	payload, err1 := b64.DecodeString(p)
	sig, err2 := b64.DecodeString(m)
	if err1 != nil || err2 != nil {
		return pageCursor{}, invalid
	}
	mac := hmac.New(sha256.New, e.pageKey)
	mac.Write(payload)
	if !hmac.Equal(sig, mac.Sum(nil)) {
		return pageCursor{}, invalid
	}
	var cur pageCursor
	if err := json.Unmarshal(payload, &cur); err != nil {
		return pageCursor{}, invalid
	}
	if time.Since(cur.Issued) > pageTokenTTL {
		return pageCursor{}, status.Errorf(codes.InvalidArgument, "page_token expired (issued %s; page tokens last 3 days): list again from the first page", cur.Issued.UTC().Format(time.RFC3339))
	}
	return cur, nil
}

// timeKey is a sort key for t that orders as t does.
func timeKey(t time.Time) string { return fmt.Sprintf("%020d", t.UnixNano()) }
