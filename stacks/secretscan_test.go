package stacks

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// The secret scanner for synthesized CloudFormation templates (issue 4 §6:
// no token, credential or secret in any template or output). It walks the
// whole template (resources, outputs, parameters, metadata, conditions) and
// reports, by JSON path, every string that looks like a secret and every key
// whose name says it holds one. Findings never show the value itself.
//
// lambda/internal/functest has a scanner for function logs, but Go's
// internal rule keeps stacks from importing it, and its "any run of 43 token
// characters" rule is tuned to logs, not to templates full of asset hashes
// and logical IDs; this one is written for templates.

// secretPattern is a shape of secret found inside any string of a template.
type secretPattern struct {
	what string
	re   *regexp.Regexp
	// uidpOK: a match whose first group is 40 lowercase hex digits (a
	// Chainguard group UIDP or a SHA-1, which a template may hold) is fine.
	uidpOK bool
}

// secretPatterns are the shapes looked for in every string.
var secretPatterns = []secretPattern{
	{what: "an AWS access key ID", re: regexp.MustCompile(`\b(?:AKIA|ASIA)[A-Z0-9]{16}\b`)},
	{what: "a secret key (40 base64 characters after a key-ish name)", uidpOK: true, re: regexp.MustCompile(`(?i)(?:secret|key|token|passw(?:or)?d|credential)[\w-]*["']?\s*[:=]\s*["']?([A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|=?$)`)},
	{what: "a JWT-like token (three base64url segments)", re: regexp.MustCompile(`\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*|[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}`)},
	{what: "a bearer token", re: regexp.MustCompile(`(?i)\bbearer\s`)},
	{what: "a private key", re: regexp.MustCompile(`-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----`)},
	{what: "a secret dynamic reference", re: regexp.MustCompile(`\{\{resolve:(?:secretsmanager|ssm-secure):`)},
	{what: "a Secrets Manager resource", re: regexp.MustCompile(`^AWS::SecretsManager::`)},
}

// uidpLike is 40 lowercase hex digits: a Chainguard group UIDP or a SHA-1,
// not an AWS secret key (those mix cases).
var uidpLike = regexp.MustCompile(`^[0-9a-f]{40}$`)

// secretValue is the shape of a secret key held alone under a key-ish name,
// e.g. {"AWS_SECRET_ACCESS_KEY": "wJalr..."}.
var secretValue = regexp.MustCompile(`^[A-Za-z0-9/+]{40}$`)

// keyishName is a property or environment variable name that may hold a key.
var keyishName = regexp.MustCompile(`(?i)secret|key|token|passw(?:or)?d|credential`)

// secretName is a property or environment variable name that says it holds
// a secret.
var secretName = regexp.MustCompile(`(?i)secret|token|password|credential`)

// serviceToken is the one name secretName matches that holds no secret:
// a custom resource's ServiceToken is the ARN of its function, and the
// provisioner publishes it (output ServiceTokenParameter, an SSM parameter
// .../service-token). It is removed from a name before secretName is applied,
// so that ServiceTokenSecret is still reported. (ServiceTimeout, the other
// custom-resource setting, does not match secretName.)
var serviceToken = regexp.MustCompile(`(?i)service-?token`)

// namesSecret reports whether a property, environment variable, logical ID
// or output name says it holds a secret.
func namesSecret(name string) bool {
	return secretName.MatchString(serviceToken.ReplaceAllString(name, ""))
}

// scanTemplate returns a description of every secret-looking value or name
// in template (a template as JSON values), sorted; nil when it is clean.
func scanTemplate(template map[string]interface{}) []string {
	var found []string
	var walk func(path string, v interface{})
	walk = func(path string, v interface{}) {
		switch x := v.(type) {
		case string:
			for _, p := range secretPatterns {
				for _, loc := range p.re.FindAllStringSubmatchIndex(x, -1) {
					if p.uidpOK && uidpLike.MatchString(x[loc[2]:loc[3]]) {
						continue
					}
					found = append(found, fmt.Sprintf("%s: %s (%d characters at offset %d)", path, p.what, loc[1]-loc[0], loc[0]))
				}
			}
		case []interface{}:
			for i, e := range x {
				walk(fmt.Sprintf("%s[%d]", path, i), e)
			}
		case map[string]interface{}:
			if _, ok := x["Fn::Join"]; ok {
				// a secret split over the parts of a join is whole once joined
				walk(path+"(joined)", render(x))
			}
			for k, e := range x {
				p := path + "." + k
				if namesSecret(k) {
					found = append(found, fmt.Sprintf("%s: the name %q says it holds a secret", p, k))
				}
				if s, ok := e.(string); ok && keyishName.MatchString(k) && secretValue.MatchString(s) && !uidpLike.MatchString(s) {
					found = append(found, fmt.Sprintf("%s: a secret key (40 base64 characters) under the key-ish name %q", p, k))
				}
				walk(p, e)
			}
		}
	}
	walk("$", template)
	sort.Strings(found)
	return found
}

// findingsText formats findings for a test message.
func findingsText(found []string) string {
	return "\n\t" + strings.Join(found, "\n\t")
}
