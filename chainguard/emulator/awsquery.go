package emulator

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// The AWS Query API of the AWS stand-in.
//
// Besides the GetCallerIdentity tokens auth/aws.VerifyToken forwards
// (awssts.go), the stand-in's URL (AWSURL) answers AWS Query API calls sent
// straight to it, as https://sts.<region>.amazonaws.com and
// https://iam.amazonaws.com would: the real aws-sdk-go-v2 clients
// (service/sts v1.52.0, service/iam v1.65.0) reach it through their own
// endpoint override (Options.BaseEndpoint, or the environment variables
// AWS_ENDPOINT_URL_STS and AWS_ENDPOINT_URL_IAM). The protocol is the one
// those clients speak (smithy-go transport/http/protocol/awsquery): a POST of
// Content-Type application/x-www-form-urlencoded whose body holds Action,
// Version and the parameters (lists as Name.member.N, structures as
// Name.member.N.Field), answered with <ActionResponse><ActionResult>...
// in XML, and errors as <ErrorResponse><Error><Type/><Code/><Message/>
// </Error><RequestId/></ErrorResponse> with the HTTP status of the error's
// awsQueryError trait, so that the clients return their typed errors
// (*types.FeatureEnabledException, ...).
//
// One URL serves both services, so the service of a call is that of its
// Action, and the SigV4 credential scope must name that service (AWS answers a
// request signed for another service with SignatureDoesNotMatch "Credential
// should be scoped to correct service"). The signature is checked by the same
// code as the tokens' (verifySignature), over the form body's SHA-256.
//
// Region of the credential scope. STS: any region name (but the region of
// the endpoint when the Host is a regional one, sts.<region>.amazonaws.com);
// it is the source_region of the web identity tokens. IAM: also any region
// name, although the real iam.amazonaws.com wants us-east-1 (aws
// partition): the SDK signs us-east-1 on its own IAM endpoint, but under an
// endpoint override it signs the client's region (service/iam v1.65.0
// endpoints.go: the custom endpoint rule sets no signing region, the
// iam.amazonaws.com rule sets us-east-1), so insisting on us-east-1 here
// would refuse requests that reach the real service correctly signed.
//
// Authorization. Every SigV4-verified principal may call every action served:
// the stand-in has no IAM policies (what a role may do is the CDK tests'
// concern); FailNextAWS injects the AccessDenied a missing policy would cause.
//
// Counting and faults. A verified call (signature and regional scope
// checked) counts as "<service>:<Action>" for Calls, and then takes the
// faults injected for that name (FailNextAWS, HangNext, SetLatency) before
// it is served.

// awsQueryAction is one action the Query API serves.
type awsQueryAction struct {
	service string // the SigV4 service name: "sts" or "iam"
	version string // the API version the SDK sends
	// params are the parameter names the action takes besides Action and
	// Version, as regular expressions over the form keys.
	params []*regexp.Regexp
	// serve answers a verified call: a result element (nil: none, as
	// DisableOutboundWebIdentityFederation) or an error.
	serve func(e *Emulator, call *awsQueryCall) (any, error)
}

// awsQueryCall is a verified Query API call.
type awsQueryCall struct {
	action string
	form   url.Values
	caller sigV4Caller
	host   string // the request's Host header
}

const (
	stsAPIVersion = "2011-06-15"
	iamAPIVersion = "2010-05-08"
	// maxQueryBody bounds the form body read (the largest request the
	// served actions take, 10 audiences of 1000 characters and 50 tags, is
	// far below).
	maxQueryBody = 1 << 20
)

// awsQueryActions are the actions served, by name.
var awsQueryActions = map[string]awsQueryAction{
	"GetCallerIdentity": {service: "sts", version: stsAPIVersion, serve: (*Emulator).queryGetCallerIdentity},
	"GetWebIdentityToken": {service: "sts", version: stsAPIVersion, serve: (*Emulator).queryGetWebIdentityToken, params: []*regexp.Regexp{
		regexp.MustCompile(`^Audience(\.member\.[1-9][0-9]*)?$`),
		regexp.MustCompile(`^SigningAlgorithm$`),
		regexp.MustCompile(`^DurationSeconds$`),
		regexp.MustCompile(`^Tags(\.member\.[1-9][0-9]*\.(Key|Value))?$`),
	}},
	"EnableOutboundWebIdentityFederation":  {service: "iam", version: iamAPIVersion, serve: (*Emulator).queryEnableFederation},
	"GetOutboundWebIdentityFederationInfo": {service: "iam", version: iamAPIVersion, serve: (*Emulator).queryGetFederationInfo},
	"DisableOutboundWebIdentityFederation": {service: "iam", version: iamAPIVersion, serve: (*Emulator).queryDisableFederation},
}

// xmlNamespaces are the response namespaces of the services (the sample
// responses of the STS and IAM API references).
var xmlNamespaces = map[string]string{
	"sts": "https://sts.amazonaws.com/doc/2011-06-15/",
	"iam": "https://iam.amazonaws.com/doc/2010-05-08/",
}

// serveAWSQuery answers an AWS Query API call.
func (e *Emulator) serveAWSQuery(w http.ResponseWriter, r *http.Request) {
	reqID := newUUID()
	service := "sts" // the namespace of errors found before the action is known
	result, action, err := e.awsQuery(r, &service)
	if err != nil {
		var ae *awsError
		if !errors.As(err, &ae) {
			ae = &awsError{status: http.StatusInternalServerError, code: "InternalFailure", message: err.Error()}
		}
		e.log.Info("AWS stand-in rejected a Query API call", "action", action, "code", ae.code, "reason", ae.message)
		writeQueryError(w, service, reqID, ae)
		return
	}
	e.log.Info("AWS stand-in answered a Query API call", "action", action)
	writeQueryResult(w, service, action, reqID, result)
}

// awsQuery parses, authenticates and serves r. It sets *service as soon as
// the action is known.
func (e *Emulator) awsQuery(r *http.Request, service *string) (any, string, error) {
	if r.Method != http.MethodPost {
		return nil, "", senderError(http.StatusBadRequest, "MissingAction",
			"the Query API takes a POST whose form-encoded body holds the Action (got %s)", r.Method)
	}
	if ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || ct != "application/x-www-form-urlencoded" {
		return nil, "", senderError(http.StatusBadRequest, "MissingAction",
			"the Query API takes a body of Content-Type application/x-www-form-urlencoded (got %q)", r.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxQueryBody+1))
	if err != nil {
		return nil, "", senderError(http.StatusBadRequest, "InvalidRequest", "read the request body: %v", err)
	}
	if len(body) > maxQueryBody {
		return nil, "", senderError(http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", "the request body exceeds %d bytes", maxQueryBody)
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		// Common Errors: MalformedQueryString, HTTP 404.
		return nil, "", senderError(http.StatusNotFound, "MalformedQueryString", "the request body is not a valid query string: %v", err)
	}
	name := form.Get("Action")
	if name == "" {
		return nil, "", senderError(http.StatusBadRequest, "MissingAction", "Request is missing Action")
	}
	act, ok := awsQueryActions[name]
	if !ok {
		return nil, name, senderError(http.StatusBadRequest, "InvalidAction", "Could not find operation %s for version %s", name, form.Get("Version"))
	}
	*service = act.service
	if v := form.Get("Version"); v != act.version {
		return nil, name, senderError(http.StatusBadRequest, "InvalidAction", "Could not find operation %s for version %s", name, v)
	}
	for key, vs := range form {
		if len(vs) != 1 {
			return nil, name, senderError(http.StatusBadRequest, "InvalidParameterValue", "parameter %s is given %d times", key, len(vs))
		}
		if key == "Action" || key == "Version" || matchesAny(act.params, key) {
			continue
		}
		// The evidence is silent on unknown parameters; the stricter
		// reading refuses them (a newer SDK's parameter, such as
		// SubjectMode, would otherwise be silently ignored).
		return nil, name, senderError(http.StatusBadRequest, "InvalidParameterValue",
			"%s is not a parameter of %s %s (as of aws-sdk-go-v2 service/%s, the API the stand-in serves)", key, name, act.version, act.service)
	}
	caller, err := e.verifySignature(r, sigV4Check{service: act.service, requiredHeaders: []string{"host", "x-amz-date"}, body: body})
	if err != nil {
		return nil, name, err
	}
	// A request addressed to a regional endpoint (a Host the router or a
	// test set) must be signed for that endpoint's region, as the real
	// regional endpoints require.
	if m := regionalHost.FindStringSubmatch(strings.ToLower(r.Host)); m != nil && m[1] == act.service && m[2] != caller.region {
		return nil, name, senderError(http.StatusForbidden, "SignatureDoesNotMatch", "Credential should be scoped to a valid region, not '%s'. ", caller.region)
	}
	if err := e.beforeAWSCall(r.Context(), act.service+":"+name); err != nil {
		return nil, name, err
	}
	result, err := act.serve(e, &awsQueryCall{action: name, form: form, caller: caller, host: r.Host})
	return result, name, err
}

// regionalHost is the host of a regional endpoint: service, region.
var regionalHost = regexp.MustCompile(`^([a-z0-9]+)\.([a-z0-9-]+)\.amazonaws\.com$`)

func matchesAny(res []*regexp.Regexp, s string) bool {
	for _, re := range res {
		if re.MatchString(s) {
			return true
		}
	}
	return false
}

// queryList reads the list parameter name (name.member.1 ... name.member.N,
// or the bare name with an empty value for an empty list, as the SDK sends
// one) of form. Members must be numbered 1 to N without gaps.
func queryList(form url.Values, name string) (values []string, present bool, err error) {
	prefix := name + ".member."
	byIndex := map[int]string{}
	for key := range form {
		rest, ok := strings.CutPrefix(key, prefix)
		if !ok || strings.Contains(rest, ".") {
			continue
		}
		i, err := strconv.Atoi(rest)
		if err != nil || i < 1 {
			return nil, true, senderError(http.StatusBadRequest, "InvalidParameterValue", "%s is not a list member", key)
		}
		byIndex[i] = form.Get(key)
	}
	if _, ok := form[name]; ok {
		if len(byIndex) > 0 || form.Get(name) != "" {
			return nil, true, senderError(http.StatusBadRequest, "InvalidParameterValue", "%s is a list: send %s.member.N", name, name)
		}
		return []string{}, true, nil
	}
	if len(byIndex) == 0 {
		return nil, false, nil
	}
	values = make([]string, len(byIndex))
	for i, v := range byIndex {
		if i > len(byIndex) {
			return nil, true, senderError(http.StatusBadRequest, "InvalidParameterValue", "%s members must be numbered 1 to %d without gaps", name, len(byIndex))
		}
		values[i-1] = v
	}
	return values, true, nil
}

// queryTag is one member of a Tags list.
type queryTag struct{ Key, Value string }

// queryTags reads the Tags list (Tags.member.N.Key, Tags.member.N.Value).
func queryTags(form url.Values) ([]queryTag, error) {
	byIndex := map[int]*queryTag{}
	for key := range form {
		rest, ok := strings.CutPrefix(key, "Tags.member.")
		if !ok {
			continue
		}
		idx, field, _ := strings.Cut(rest, ".")
		i, err := strconv.Atoi(idx)
		if err != nil || i < 1 {
			return nil, senderError(http.StatusBadRequest, "InvalidParameterValue", "%s is not a tag list member", key)
		}
		t := byIndex[i]
		if t == nil {
			t = &queryTag{}
			byIndex[i] = t
		}
		switch field {
		case "Key":
			t.Key = form.Get(key)
		case "Value":
			t.Value = form.Get(key)
		}
	}
	if _, ok := form["Tags"]; ok && (len(byIndex) > 0 || form.Get("Tags") != "") {
		return nil, senderError(http.StatusBadRequest, "InvalidParameterValue", "Tags is a list: send Tags.member.N.Key and Tags.member.N.Value")
	}
	idx := make([]int, 0, len(byIndex))
	for i := range byIndex {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	tags := make([]queryTag, 0, len(idx))
	for n, i := range idx {
		if i != n+1 {
			return nil, senderError(http.StatusBadRequest, "InvalidParameterValue", "Tags members must be numbered 1 to %d without gaps", len(idx))
		}
		if _, ok := form[fmt.Sprintf("Tags.member.%d.Key", i)]; !ok {
			return nil, validationError("Value null at 'tags.%d.member.key' failed to satisfy constraint: Member must not be null", i)
		}
		if _, ok := form[fmt.Sprintf("Tags.member.%d.Value", i)]; !ok {
			return nil, validationError("Value null at 'tags.%d.member.value' failed to satisfy constraint: Member must not be null", i)
		}
		tags = append(tags, *byIndex[i])
	}
	return tags, nil
}

// validationError is the ValidationError (HTTP 400, Common Errors: "The input
// fails to satisfy the constraints specified by an AWS service") of one
// failed constraint, worded as AWS words them.
func validationError(format string, args ...any) *awsError {
	return senderError(http.StatusBadRequest, "ValidationError", "1 validation error detected: "+format, args...)
}

// queryResponse is the XML envelope of a successful answer.
type queryResponse struct {
	XMLName  xml.Name
	Xmlns    string `xml:"xmlns,attr"`
	Result   any    `xml:",omitempty"`
	Metadata struct {
		RequestID string `xml:"RequestId"`
	} `xml:"ResponseMetadata"`
}

// queryErrorResponse is the XML envelope of an error.
type queryErrorResponse struct {
	XMLName xml.Name `xml:"ErrorResponse"`
	Xmlns   string   `xml:"xmlns,attr"`
	Error   struct {
		Type    string
		Code    string
		Message string
	}
	RequestID string `xml:"RequestId"`
}

func writeQueryResult(w http.ResponseWriter, service, action, reqID string, result any) {
	resp := queryResponse{XMLName: xml.Name{Local: action + "Response"}, Xmlns: xmlNamespaces[service], Result: result}
	resp.Metadata.RequestID = reqID
	writeXML(w, http.StatusOK, reqID, resp)
}

func writeQueryError(w http.ResponseWriter, service, reqID string, ae *awsError) {
	resp := queryErrorResponse{Xmlns: xmlNamespaces[service], RequestID: reqID}
	resp.Error.Type = "Sender"
	if ae.status >= 500 {
		resp.Error.Type = "Receiver"
	}
	resp.Error.Code, resp.Error.Message = ae.code, ae.message
	writeXML(w, ae.status, reqID, resp)
}

func writeXML(w http.ResponseWriter, status int, reqID string, v any) {
	body, err := xml.Marshal(v)
	if err != nil {
		http.Error(w, "marshal the response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("X-Amzn-Requestid", reqID)
	w.WriteHeader(status)
	_, _ = w.Write([]byte(xml.Header))
	_, _ = w.Write(body)
}

// getCallerIdentityResult is the GetCallerIdentity result (STS API reference).
type getCallerIdentityResult struct {
	XMLName xml.Name `xml:"GetCallerIdentityResult"`
	Arn     string
	UserID  string `xml:"UserId"`
	Account string
}

// queryGetCallerIdentity answers GetCallerIdentity through the Query API, as
// the legacy token path answers it (awssts.go).
func (e *Emulator) queryGetCallerIdentity(call *awsQueryCall) (any, error) {
	p := call.caller.principal
	return &getCallerIdentityResult{Arn: p.ARN, UserID: p.UserID, Account: p.Account}, nil
}
